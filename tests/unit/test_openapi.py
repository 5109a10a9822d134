"""The OpenAPI document is generated from the routes and model.json, and committed current."""

from __future__ import annotations

import json

import pytest

from sklambda.manifest import read_manifest
from sklambda_tools.contracts import ROUTES
from sklambda_tools.openapi import document, render

from support import PENGUINS_DIR, REPO, V2_PATHS


def test_the_committed_document_is_current() -> None:
    generated = render(document(read_manifest(PENGUINS_DIR)))
    assert generated == (REPO / "docs" / "openapi.json").read_text(), "run `make openapi`"


def test_the_handler_serves_the_documented_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    # The handler's route table, the contract's route list and the template's paths agree.
    from sklambda_tools.local import load_handler, load_template

    monkeypatch.setenv("SKLAMBDA_MODEL_DIR", str(PENGUINS_DIR))
    served = set(load_handler(REPO / "functions" / "predict" / "app.py").ROUTES)
    documented = {(r.method, r.path) for r in ROUTES}
    template = load_template(REPO / "template.yaml")
    paths = template["Resources"]["PredictApi"]["Properties"]["DefinitionBody"]["paths"]
    routed = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert served == documented == routed


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
    assert set(doc["paths"]) == {"/predict", "/model", "/health", *V2_PATHS}
    # the V2 path parameters are documented as such
    infer = doc["paths"]["/v2/models/{model_name}/versions/{model_version}/infer"]["post"]
    assert [(p["name"], p["in"]) for p in infer["parameters"]] == [
        ("model_name", "path"),
        ("model_version", "path"),
    ]
    assert set(doc["paths"]["/predict"]["post"]["responses"]) >= {
        "200",
        "400",
        "413",
        "415",
        "422",
        "503",
    }
