"""The OpenAPI document is generated from the routes and model.json, and committed current."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from sklambda.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def openapi_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("openapi_script", REPO / "scripts" / "openapi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_document_is_current(
    openapi_script: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKLAMBDA_MODEL_DIR", "unused")  # the script sets it; restored afterwards
    generated = openapi_script.render(openapi_script.openapi_document(REPO / "models" / "penguins"))
    assert generated == (REPO / "docs" / "openapi.json").read_text(), "run `make openapi`"


def test_the_request_schema_comes_from_the_manifest() -> None:
    doc = json.loads((REPO / "docs" / "openapi.json").read_text())
    manifest = read_manifest(REPO / "models" / "penguins")
    instance = doc["components"]["schemas"]["PredictRequest"]["properties"]["instances"]["items"]
    assert list(instance["properties"]) == sorted(manifest.feature_names)
    assert instance["required"] == manifest.feature_names
    assert instance["additionalProperties"] is False
    assert instance["properties"]["island"]["examples"] == ["Biscoe", "Dream", "Torgersen"]
    assert {"type": "null"} in instance["properties"]["sex"]["anyOf"]
    assert doc["info"]["version"] == manifest.version
    assert set(doc["paths"]) == {"/predict", "/model", "/health"}
    assert set(doc["paths"]["/predict"]["post"]["responses"]) >= {
        "200",
        "400",
        "413",
        "415",
        "422",
        "503",
    }
