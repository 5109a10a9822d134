"""Loading: hashes before unpickling, library versions, runtimes, and scoring records or columns."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sklambda.errors import (
    IntegrityError,
    InvalidInput,
    ManifestError,
    RuntimeUnavailableError,
    VersionMismatchError,
)
from sklambda.manifest import json_schema, read_manifest
from sklambda.model import load

from support import BIRD

ROW = BIRD


def edit_manifest(model_dir: Path, edit: object) -> None:
    path = model_dir / "model.json"
    data = json.loads(path.read_text())
    edit(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))


def test_the_penguins_artifact_loads_with_its_serving_runtime(penguins_copy: Path) -> None:
    model = load(penguins_copy)
    assert model.runtime == read_manifest(penguins_copy).runtime.serving == "onnx"
    assert model.classes == ["Adelie", "Chinstrap", "Gentoo"]
    assert model.predict([ROW]).tolist() == ["Gentoo"]


def test_both_runtimes_agree_on_the_penguins_model(penguins_copy: Path) -> None:
    rows = [ROW, {**ROW, "island": "Torgersen", "bill_depth_mm": 19.0, "sex": None}]
    onnx, sk = load(penguins_copy, runtime="onnx"), load(penguins_copy, runtime="sklearn")
    np.testing.assert_array_equal(onnx.predict(rows), sk.predict(rows))
    np.testing.assert_allclose(onnx.predict_proba(rows), sk.predict_proba(rows), atol=1e-5)


def test_invalid_rows_raise_with_every_reason(penguins_copy: Path) -> None:
    model = load(penguins_copy)
    with pytest.raises(InvalidInput) as caught:
        model.predict([ROW, {**ROW, "bill_length_mm": "long", "island": 3}])
    assert [e.path() + ": " + e.reason for e in caught.value.errors] == [
        "instances[1].island: expected a string, got a number",
        "instances[1].bill_length_mm: expected a number, got a string",
    ]


def test_no_rows_give_no_predictions(penguins_copy: Path) -> None:
    model = load(penguins_copy)
    assert model.predict([]).shape == (0,)
    assert model.predict_proba([]).shape == (0, 3)


@pytest.mark.parametrize("runtime", ["onnx", "sklearn"])
@pytest.mark.parametrize("victim", ["model.joblib", "model.onnx"])
def test_a_tampered_file_is_refused_before_loading(
    penguins_copy: Path, runtime: str, victim: str
) -> None:
    # Given an artifact whose file was changed after packaging
    path = penguins_copy / victim
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    # Then neither runtime loads it
    with pytest.raises(IntegrityError, match=re.escape(f"{victim} does not match model.json")):
        load(penguins_copy, runtime=runtime)


def test_a_missing_required_file_is_refused(penguins_copy: Path) -> None:
    (penguins_copy / "model.joblib").unlink()
    with pytest.raises(IntegrityError, match=r"model\.joblib is listed in model\.json but missing"):
        load(penguins_copy, runtime="sklearn")
    # the onnx runtime does not need the pickle
    assert load(penguins_copy, runtime="onnx").predict([ROW]).tolist() == ["Gentoo"]


def test_another_scikit_learn_version_is_refused_naming_both(penguins_copy: Path) -> None:
    import sklearn

    edit_manifest(penguins_copy, lambda m: m["libraries"].update({"scikit-learn": "0.24.2"}))
    with pytest.raises(VersionMismatchError) as caught:
        load(penguins_copy, runtime="sklearn")
    assert "0.24.2" in str(caught.value) and sklearn.__version__ in str(caught.value)


def test_a_manifest_that_breaks_the_schema_is_refused(penguins_copy: Path) -> None:
    edit_manifest(penguins_copy, lambda m: m["features"][0].update({"kind": "text"}))
    with pytest.raises(ManifestError, match=r"features\.0\.kind"):
        load(penguins_copy)


def test_a_manifest_with_unknown_keys_is_refused(penguins_copy: Path) -> None:
    edit_manifest(penguins_copy, lambda m: m.update({"surprise": 1}))
    with pytest.raises(ManifestError, match="surprise"):
        load(penguins_copy)


def test_a_directory_without_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"cannot read model\.json"):
        load(tmp_path)


def test_an_unknown_runtime_is_refused(penguins_copy: Path) -> None:
    with pytest.raises(RuntimeUnavailableError, match="unknown runtime 'tensorflow'"):
        load(penguins_copy, runtime="tensorflow")


def test_the_onnx_runtime_needs_no_sklearn_scipy_or_pandas(penguins_copy: Path) -> None:
    # Given an interpreter in which scikit-learn, scipy and pandas cannot be imported
    script = textwrap.dedent(
        f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name.split(".")[0] in {{"sklearn", "scipy", "pandas"}}:
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        from sklambda.model import load
        model = load({str(penguins_copy)!r}, runtime="onnx")
        print(model.predict([{ROW!r}])[0])
        try:
            load({str(penguins_copy)!r}, runtime="sklearn")
        except ImportError as exc:
            print("sklearn runtime:", exc)
        """
    )
    # When the onnx runtime loads and scores
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=120
    )
    # Then it answers, and the sklearn runtime really was unavailable there
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Gentoo"
    assert lines[1].startswith("sklearn runtime: blocked: ")


def test_the_manifest_schema_is_published() -> None:
    schema = json_schema()
    assert "features" in schema["required"] and "known_faults" in schema["required"]


# --- artifacts stay inside the model directory and are what the manifest says ---------------


@pytest.mark.parametrize("name", ["../model.onnx", "/dev/zero", "sub/model.onnx", ".hidden", ""])
def test_an_artifact_name_outside_the_directory_is_refused(penguins_copy: Path, name: str) -> None:
    def rename(m: dict[str, Any]) -> None:
        m["artifacts"][name] = m["artifacts"].pop("model.onnx")
        m["runtime"]["onnx"]["file"] = name

    edit_manifest(penguins_copy, rename)
    with pytest.raises(ManifestError, match="must be a plain file name"):
        load(penguins_copy)


def test_a_symbolic_link_is_not_followed(penguins_copy: Path, tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.onnx"
    real.write_bytes((penguins_copy / "model.onnx").read_bytes())
    (penguins_copy / "model.onnx").unlink()
    (penguins_copy / "model.onnx").symlink_to(real)
    with pytest.raises(IntegrityError, match="cannot be opened as a plain file"):
        load(penguins_copy)


def test_a_file_of_another_size_is_refused_before_it_is_read(penguins_copy: Path) -> None:
    with (penguins_copy / "model.onnx").open("ab") as f:
        f.write(b"\0" * 1024)
    with pytest.raises(IntegrityError, match=r"bytes where model\.json records"):
        load(penguins_copy)


def test_a_device_is_not_read(penguins_copy: Path) -> None:
    (penguins_copy / "model.onnx").unlink()
    os.mkfifo(penguins_copy / "model.onnx")  # would block a plain read forever
    with pytest.raises(IntegrityError, match="not a regular file"):
        load(penguins_copy)
