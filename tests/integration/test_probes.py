"""The probe file, from packaging to the pre-traffic check: packaging writes it hashed in
``model.json``, the served model agrees with it through both runtimes, and a probe file that
was changed or never written is refused with a message that says so."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from sklambda import probes
from sklambda.errors import IntegrityError, ModelLoadError
from sklambda.manifest import dump_manifest, read_manifest, sha256_bytes
from sklambda.pretraffic import check, proxy_event
from sklambda_tools.package import Packaged, frame_to_records
from sklambda_tools.rollout import InProcessVersion, check_in_process, tampered_copy

from support import PENGUINS_DIR

PACKAGED_HERE = ["regressor", "binary"]


@pytest.fixture(scope="module")
def models(packaged: dict[str, Packaged]) -> dict[str, Packaged]:
    """The example pipelines conftest packages once a session (read only here)."""
    return {name: packaged[name] for name in PACKAGED_HERE}


def model_dir(models: dict[str, Packaged], name: str) -> Path:
    return PENGUINS_DIR if name == "penguins" else models[name].path


@pytest.mark.parametrize("name", ["penguins", *PACKAGED_HERE])
def test_packaging_writes_the_probe_file_listed_and_hashed(
    models: dict[str, Packaged], holdout_frame: pd.DataFrame, name: str
) -> None:
    directory = model_dir(models, name)
    manifest = read_manifest(directory)
    data = (directory / probes.PROBES_FILE).read_bytes()
    listed = manifest.artifacts[probes.PROBES_FILE]
    assert (listed.sha256, listed.bytes) == (sha256_bytes(data), len(data))
    probe_set = probes.read(directory, manifest)
    assert probe_set.task == manifest.output.task
    assert 64 < len(probe_set.rows) <= 256
    if name != "penguins":
        # the first holdout rows as a client sends them, then edge rows
        holdout = frame_to_records(holdout_frame, manifest.features)[:64]
        assert [r.instance for r in probe_set.rows[:64]] == json.loads(json.dumps(holdout))
        assert any(None in r.instance.values() for r in probe_set.rows[64:])


@pytest.mark.parametrize("runtime", ["onnx", "sklearn"])
@pytest.mark.parametrize("name", ["penguins", *PACKAGED_HERE])
def test_the_served_model_agrees_with_its_probes_through_both_runtimes(
    models: dict[str, Packaged], name: str, runtime: str, restore_env: None
) -> None:
    directory = model_dir(models, name)
    assert read_manifest(directory).runtime.onnx is not None  # both runtimes can serve it
    verdict = check_in_process(directory, directory, runtime)
    assert verdict.status == "Succeeded", verdict.reason
    served = InProcessVersion(directory, parameters={"ServingRuntime": runtime})
    health = served(proxy_event("GET", "/health", None, "pretraffic-1"), 30.0)
    assert json.loads(health["body"])["runtime"] == runtime  # the runtime asked for answered
    assert verdict.rows == len(probes.read(directory, read_manifest(directory)).rows)


def test_a_regression_answer_that_drifts_is_named(
    models: dict[str, Packaged], tmp_path: Path, restore_env: None
) -> None:
    # Given the regressor's graph with its weights changed, re-hashed (it loads and serves)
    served = tampered_copy(models["regressor"].path, tmp_path / "tampered", factor=1.5)
    verdict = check_in_process(models["regressor"].path, served)
    assert verdict.status == "Failed"
    assert verdict.reason.startswith("row 0 of probes.json disagrees: value ")
    assert "(tolerance 1e-05, relative); instance {" in verdict.reason


def test_the_check_leaves_the_environment_as_it_was(restore_env: None) -> None:
    before = dict(os.environ)
    assert check_in_process(PENGUINS_DIR, PENGUINS_DIR).status == "Succeeded"
    assert dict(os.environ) == before


def test_a_tampered_probe_file_is_refused(penguins_copy: Path, restore_env: None) -> None:
    # Given a probe file whose first expected label was changed (and not re-hashed)
    path = penguins_copy / probes.PROBES_FILE
    path.write_text(path.read_text().replace('"label": "Gentoo"', '"label": "Adelie"', 1))
    with pytest.raises(IntegrityError, match=r"^probes\.json does not match model\.json: SHA-256"):
        probes.read(penguins_copy, read_manifest(penguins_copy))
    verdict = check_in_process(penguins_copy, PENGUINS_DIR)
    assert verdict.status == "Failed" and verdict.rows == 0
    assert verdict.reason.startswith(
        "the probes of the packaged model cannot be used: probes.json does not match model.json"
    )


def test_a_manifest_without_a_probe_file_gives_the_clear_message(
    penguins_copy: Path, restore_env: None
) -> None:
    # Given a model packaged before probe files were recorded
    manifest = read_manifest(penguins_copy)
    artifacts = {k: v for k, v in manifest.artifacts.items() if k != probes.PROBES_FILE}
    (penguins_copy / "model.json").write_text(
        dump_manifest(dataclasses.replace(manifest, artifacts=artifacts))
    )
    (penguins_copy / probes.PROBES_FILE).unlink()
    message = (
        f"model 'penguins' {manifest.version} has no probes.json (packaged before probe files "
        "were recorded): package it again"
    )
    with pytest.raises(IntegrityError) as caught:
        probes.read(penguins_copy, read_manifest(penguins_copy))
    assert str(caught.value) == message
    verdict = check_in_process(penguins_copy, penguins_copy)
    assert verdict.reason == f"the probes of the packaged model cannot be used: {message}"


def _rehashed_probes(model_dir: Path, text: str) -> Path:
    """``model_dir`` with ``text`` as its probe file, re-hashed in ``model.json`` (a crafted
    file that passes the integrity check)."""
    from sklambda.manifest import ArtifactFile

    data = text.encode()
    (model_dir / probes.PROBES_FILE).write_bytes(data)
    manifest = read_manifest(model_dir)
    artifacts = {
        **manifest.artifacts,
        probes.PROBES_FILE: ArtifactFile(sha256=sha256_bytes(data), bytes=len(data)),
    }
    (model_dir / "model.json").write_text(
        dump_manifest(dataclasses.replace(manifest, artifacts=artifacts))
    )
    return model_dir


@pytest.mark.parametrize("tolerance", ["NaN", "Infinity", "-1e-05"])
def test_a_probe_file_whose_tolerance_would_let_anything_agree_is_refused(
    penguins_copy: Path, tolerance: str
) -> None:
    # Given a probe file whose tolerance is not a number of 0 or more (NaN and infinity make
    # every probability and value agree)
    text = (penguins_copy / probes.PROBES_FILE).read_text()
    text = text.replace('"tolerance": 1e-05', f'"tolerance": {tolerance}', 1)
    assert tolerance in text
    _rehashed_probes(penguins_copy, text)
    with pytest.raises(ModelLoadError, match=r"^probes\.json is not a probe file: tolerance: "):
        probes.read(penguins_copy, read_manifest(penguins_copy))
    asked: list[Any] = []
    verdict = check(
        lambda e, t: asked.append(e), penguins_copy, max_instances=1000, deadline_seconds=30
    )
    assert verdict.status == "Failed" and not asked
    assert verdict.reason.startswith("the probes of the packaged model cannot be used: ")


def test_a_probe_file_nested_too_deep_is_refused_not_raised(penguins_copy: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    _rehashed_probes(
        penguins_copy,
        '{"format": 1, "task": "classification", "tolerance": 1e-05, "rows": [{"instance": '
        f'{{"a": {deep}}}, "expected": {{"label": "Adelie"}}}}]}}',
    )
    with pytest.raises(ModelLoadError, match=r"^probes\.json is not a probe file: "):
        probes.read(penguins_copy, read_manifest(penguins_copy))
    verdict = check(lambda e, t: None, penguins_copy, max_instances=1000, deadline_seconds=30)
    assert verdict.status == "Failed"
    assert verdict.reason.startswith("the probes of the packaged model cannot be used: ")
