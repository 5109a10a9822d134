"""The committed example artifact agrees with its training code, its data and its card."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sklambda.manifest import Manifest, read_manifest
from sklambda.model import SklearnBackend, load
from sklambda.typed import as_dict
from sklambda_tools.card import render_card
from sklambda_tools.evaluate import read_gate
from sklambda_tools.examples import penguins
from sklambda_tools.package import build, frame_to_records

from support import PENGUINS_DIR, REPO

STALE = "models/penguins is stale: run `make model` and commit the result"


@pytest.fixture(scope="module")
def splits() -> penguins.Splits:
    return penguins.split(penguins.load_frame())


def facts(manifest: Manifest) -> dict[str, Any]:
    """A manifest without its creation time, the pickle's hash and the probe file's (its
    answers are compared with ``rounded``)."""
    data = as_dict(manifest)
    del data["created"], data["artifacts"]["model.joblib"], data["artifacts"]["probes.json"]
    runtime = data["runtime"]
    runtime["reason"] = re.sub(r"difference \S+,", "difference (ulps),", runtime["reason"])
    for parity in (runtime["onnx"]["parity"], runtime["edge"]["parity"]):
        parity["max_abs_proba_diff"] = parity["max_abs_proba_diff"] < 1e-12  # ulps apart
    return rounded(data)


def rounded(value: Any) -> Any:
    """``value`` with every float to 12 significant digits: the pipeline's last bits differ from
    one CPU to another (numpy picks its SIMD code by CPU), and a fact is the same fact a few
    ulps apart (so are the parity check's differences, of the order of 1e-17)."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def committed_pipeline() -> object:
    backend = load(PENGUINS_DIR, runtime="sklearn").backend  # hash- and version-checked
    assert isinstance(backend, SklearnBackend)
    return backend.pipeline


def test_the_manifest_is_rederived_from_the_committed_model(
    splits: penguins.Splits, tmp_path: Path
) -> None:
    # Given the committed manifest and the committed pipeline
    committed = read_manifest(PENGUINS_DIR)
    # When the same packaging runs again on the same data and gate
    rebuilt = build(
        committed_pipeline(),
        splits.test,
        penguins.TARGET,
        tmp_path / "penguins",
        name="penguins",
        description=penguins.DESCRIPTION,
        train=splits.train,
        gate=read_gate(PENGUINS_DIR / "gate.toml"),
        gate_source="gate.toml",
        version=committed.version,
    ).manifest
    # Then every fact is the same, but the creation time and the pickle's bytes (pickling an
    # unpickled pipeline again gives other bytes; load() already checked the committed ones)
    assert facts(rebuilt) == facts(committed), STALE
    probes = [
        json.loads((d / "probes.json").read_bytes()) for d in (tmp_path / "penguins", PENGUINS_DIR)
    ]
    assert rounded(probes[0]) == rounded(probes[1]), STALE
    assert (tmp_path / "penguins" / "model.onnx").read_bytes() == (
        PENGUINS_DIR / "model.onnx"
    ).read_bytes(), STALE


def test_the_model_card_renders_the_manifest() -> None:
    assert (PENGUINS_DIR / "MODEL_CARD.md").read_text() == render_card(
        read_manifest(PENGUINS_DIR)
    ), STALE


def test_training_again_gives_the_committed_model(splits: penguins.Splits) -> None:
    retrained = penguins.train(splits)
    committed = committed_pipeline()
    test = splits.test[penguins.FEATURES]
    np.testing.assert_allclose(
        retrained.predict_proba(test),
        committed.predict_proba(test),  # type: ignore[attr-defined]
        atol=1e-9,
        err_msg=STALE,
    )


def test_the_committed_model_passed_its_gate_file() -> None:
    manifest = read_manifest(PENGUINS_DIR)
    gate = read_gate(PENGUINS_DIR / "gate.toml")
    assert manifest.gate.passed
    assert {c.metric: (c.op, c.threshold) for c in manifest.gate.checks} == gate
    assert manifest.runtime.serving == "onnx"
    assert manifest.runtime.onnx is not None and manifest.runtime.onnx.parity.passed


def test_make_model_refuses_a_model_that_misses_its_gate(tmp_path: Path) -> None:
    # Given a gate stricter than the model can meet
    out = tmp_path / "penguins"
    out.mkdir()
    (out / "gate.toml").write_text("[thresholds]\naccuracy = { min = 0.999 }\n")
    # When the training command runs
    result = subprocess.run(
        [sys.executable, "-m", "sklambda_tools.examples.penguins", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    # Then it exits non-zero naming metric, value and threshold, and writes no artifact
    assert result.returncode == 1
    assert "accuracy = 0.9855 is below the minimum 0.9990" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["gate.toml"]


def test_make_model_writes_a_loadable_artifact(tmp_path: Path) -> None:
    out = tmp_path / "penguins"
    out.mkdir()
    shutil.copy(PENGUINS_DIR / "gate.toml", out / "gate.toml")
    result = subprocess.run(
        [sys.executable, "-m", "sklambda_tools.examples.penguins", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "packaged penguins" in result.stdout
    # The same model as the committed one, judged by its answers: the pickle's bytes (and so
    # the version, their hash) follow the float results of the CPU that trained it.
    written, committed = load(out), load(PENGUINS_DIR)
    assert written.manifest.metrics == committed.manifest.metrics
    test = penguins.split(penguins.load_frame()).test[penguins.FEATURES]
    rows = frame_to_records(test, committed.manifest.features)
    np.testing.assert_allclose(
        written.predict_proba(rows), committed.predict_proba(rows), atol=1e-6, err_msg=STALE
    )


def test_the_model_layer_build_ships_exactly_the_checked_artifact(tmp_path: Path) -> None:
    # Given the layer Makefile that `sam build` runs
    layer = tmp_path / "layer"
    result = subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(REPO / "models"),
            "build-ModelLayer",
            f"ARTIFACTS_DIR={layer}",
            f"MODEL_NAME={PENGUINS_DIR}",
            f"PYTHON={sys.executable}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    # Then /opt/model holds the manifest, the card and the files it lists, and loads
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (layer / "model").iterdir()) == [
        "MODEL_CARD.md",
        "model.joblib",
        "model.json",
        "model.onnx",
        "probes.json",
    ]
    assert load(layer / "model").version == read_manifest(PENGUINS_DIR).version


def build_model_layer(model_dir: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(REPO / "models"),
            "build-ModelLayer",
            f"ARTIFACTS_DIR={out}",
            f"MODEL_NAME={model_dir}",
            f"PYTHON={sys.executable}",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_the_model_layer_build_refuses_a_tampered_artifact(
    penguins_copy: Path, tmp_path: Path
) -> None:
    (penguins_copy / "model.onnx").write_bytes(b"not the graph")
    result = build_model_layer(penguins_copy, tmp_path / "layer")
    assert result.returncode != 0
    assert "model.onnx (not a regular file of the recorded size)" in result.stderr
    assert not (tmp_path / "layer").exists()


@pytest.mark.parametrize("name", ["../model.onnx", "/etc/passwd", "a b"])
def test_the_model_layer_build_ships_nothing_from_outside_the_model(
    penguins_copy: Path, tmp_path: Path, name: str
) -> None:
    path = penguins_copy / "model.json"
    manifest = json.loads(path.read_text())
    manifest["artifacts"][name] = manifest["artifacts"].pop("model.onnx")
    path.write_text(json.dumps(manifest))
    result = build_model_layer(penguins_copy, tmp_path / "layer")
    assert result.returncode != 0
    assert f"{name} (not a plain file name)" in result.stderr
    assert not (tmp_path / "layer").exists()
