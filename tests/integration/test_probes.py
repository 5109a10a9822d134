"""The probe file, from packaging to the pre-traffic check: packaging writes it hashed in
``model.json``, the served model agrees with it through both runtimes, and a probe file that
was changed or never written is refused with a message that says so."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from sklambda import probes
from sklambda.errors import IntegrityError
from sklambda.manifest import dump_manifest, read_manifest, sha256_bytes
from sklambda.pretraffic import proxy_event
from sklambda_tools.package import Packaged, build, frame_to_records
from sklambda_tools.rollout import InProcessVersion, check_in_process, tampered_copy

from pipelines import CASES
from support import PENGUINS_DIR

PACKAGED_HERE = ["regressor", "binary"]


@pytest.fixture(scope="module")
def models(
    fitted: dict[str, Pipeline],
    train_frame: pd.DataFrame,
    holdout_frame: pd.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Packaged]:
    root = tmp_path_factory.mktemp("probed")
    return {
        name: build(
            fitted[name], holdout_frame, CASES[name][1], root / name, name=name, train=train_frame
        )
        for name in PACKAGED_HERE
    }


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
