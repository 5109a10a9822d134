"""The runtime package on its own: `pip install` of the project, with no extras, into a fresh
virtual environment gives onnxruntime and numpy (what they pull in pinned by the onnx layer's
lock) and nothing of AWS, Powertools, scikit-learn, pandas or pydantic; and in that environment
`python -m sklambda.score` answers as the scoring core does, importing none of them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path
from typing import Any

import pytest

from sklambda.model import load
from sklambda.scoring import score_records

from support import BIRD, PENGUINS_DIR, REPO

LAYER_LOCK = REPO / "layers" / "onnx" / "requirements.txt"
NOT_WANTED = {
    "boto3",
    "botocore",
    "aws-lambda-powertools",
    "scikit-learn",
    "scipy",
    "pandas",
    "joblib",
    "pydantic",
}
NOT_IMPORTED = (
    "boto3",
    "botocore",
    "aws_lambda_powertools",
    "sklearn",
    "scipy",
    "pandas",
    "pydantic",
)


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        found = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line.strip())
        if found:
            pins[found[1].lower().replace("_", "-")] = found[2]
    return pins


def test_the_declared_dependencies_are_the_onnx_layers_pins() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = _pins(LAYER_LOCK)
    assert declared, "the runtime package declares what it needs"
    for requirement in declared:
        name, version = requirement.split("==")
        assert pins[name.lower()] == version, requirement


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the project installed as a user would install it."""
    root = tmp_path_factory.mktemp("runtime-venv")
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(REPO),
            "-c",
            str(LAYER_LOCK),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=root,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return python


def test_pip_install_gives_onnxruntime_and_numpy_and_nothing_of_aws_or_scikit_learn(
    runtime_venv: Path,
) -> None:
    listed = subprocess.run(
        [str(runtime_venv), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    installed = {
        p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(listed.stdout)
    }
    pins = _pins(LAYER_LOCK)
    for name in ("sklambda", "numpy", "onnxruntime"):
        assert name in installed, installed
    for name in ("numpy", "onnxruntime", "protobuf", "flatbuffers", "packaging"):
        assert installed[name] == pins[name], (name, installed[name])
    assert not NOT_WANTED & installed.keys(), NOT_WANTED & installed.keys()


def test_the_installed_scorer_answers_as_the_core_and_imports_nothing_it_does_not_need(
    runtime_venv: Path, tmp_path: Path
) -> None:
    rows: list[dict[str, Any]] = [BIRD, {**BIRD, "island": "Anvers"}, {**BIRD, "sex": 3}]
    done = subprocess.run(
        [str(runtime_venv), "-X", "importtime", "-m", "sklambda.score", str(PENGUINS_DIR)],
        input="".join(json.dumps(r) + "\n" for r in rows),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,  # not the repository: the installed package, not src/
    )
    assert done.returncode == 0, done.stderr[-3000:]
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert {"sklambda.model", "sklambda.scoring", "onnxruntime"} <= imported
    top = {name.split(".")[0] for name in imported}
    assert not set(NOT_IMPORTED) & top, set(NOT_IMPORTED) & top
    # Then each line is the core's answer for its row
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    scored = score_records(load(PENGUINS_DIR), rows)
    predictions = iter(scored.predictions())
    assert len(answers) == len(rows)
    for number, answer in enumerate(answers):
        assert answer["row"] == number + 1  # the line number
        if number in scored.rows:
            want = next(predictions)
            assert answer["label"] == want["label"]
            assert answer["probabilities"] == pytest.approx(want["probabilities"], abs=1e-12)
        else:
            reasons = [e.reason for e in scored.errors if e.row == number]
            assert [e["reason"] for e in answer["errors"]] == reasons
    # and the package is the installed one
    where = subprocess.run(
        [str(runtime_venv), "-c", "import sklambda; print(sklambda.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert "site-packages" in where.stdout and sys.prefix not in where.stdout
