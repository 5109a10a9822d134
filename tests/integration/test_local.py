"""The local loop: `make serve` over real HTTP, `make invoke`, `make batch` and `make demo`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sklambda_tools.local import (
    LambdaContext,
    invoke_function,
    load_handler,
)
from sklambda_tools.localapi import LocalApi, Server

from support import EVENTS, EXPECTED_STATUS, PENGUINS_DIR, REPO

BIRD = json.loads((EVENTS / "predict-single.json").read_text())["body"]


@pytest.fixture
def server(restore_env: None) -> Iterator[Server]:
    app = LocalApi(REPO, model_dir=PENGUINS_DIR, parameters={"AuthMode": "NONE"})
    with Server(app, port=0) as running:
        yield running


def direct(event: dict[str, Any]) -> dict[str, Any]:
    """The same event through the handler, called directly."""
    module = load_handler(REPO / "functions" / "predict" / "app.py", name="direct_predict")
    result: dict[str, Any] = module.lambda_handler(event, LambdaContext(function_name="predict"))
    return result


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "request_id"}


REQUESTS = [
    ("POST", "/predict", BIRD, "application/json", 200),
    (
        "POST",
        "/predict",
        json.dumps({"instances": [json.loads(BIRD)["instances"][0]] * 3}),
        "application/json",
        200,
    ),
    ("POST", "/predict", '{"instances": [{"island": 3}]}', "application/json", 422),
    ("POST", "/predict", '{"instances": []}', "application/json", 422),
    ("POST", "/predict", "{}", "application/json", 422),
    ("POST", "/predict", "not json", "application/json", 400),
    ("POST", "/predict", BIRD, "text/plain", 415),
    ("POST", "/predict", json.dumps({"instances": [{}] * 1001}), "application/json", 413),
    ("GET", "/model", None, None, 200),
    ("GET", "/health", None, None, 200),
]


@pytest.mark.parametrize(("method", "path", "body", "content_type", "status"), REQUESTS)
def test_the_local_api_answers_like_the_handler(
    server: Server, method: str, path: str, body: str | None, content_type: str | None, status: int
) -> None:
    # Given a request over real HTTP
    headers = {"Content-Type": content_type} if content_type else {}
    response = requests.request(method, server.url + path, data=body, headers=headers, timeout=30)
    # And the event API Gateway would send for it, straight to the handler
    event = json.loads((EVENTS / "predict-single.json").read_text())
    event.update({"httpMethod": method, "path": path, "resource": path, "body": body})
    event["headers"] = {**({"Content-Type": content_type} if content_type else {})}
    event["multiValueHeaders"] = {k: [v] for k, v in event["headers"].items()}
    expected = direct(event)
    # Then status and body are the same (the request id is each request's own)
    assert response.status_code == expected["statusCode"] == status
    assert response.headers["Content-Type"] == "application/json"
    got, want = response.json(), json.loads(expected["body"])
    assert without_request_id(got) == without_request_id(want)
    if status >= 400:
        assert got["request_id"]


def test_the_deployed_stage_prefix_is_accepted(server: Server) -> None:
    assert requests.get(server.url + "/v1/health", timeout=30).status_code == 200


def test_an_unknown_route_is_refused_as_api_gateway_does(server: Server) -> None:
    for method, path in (("GET", "/nope"), ("DELETE", "/predict")):
        response = requests.request(method, server.url + path, timeout=30)
        assert response.status_code == 403
        assert response.json() == {"message": "Missing Authentication Token"}


def test_a_binary_body_arrives_base64_encoded(server: Server) -> None:
    response = requests.post(
        server.url + "/predict",
        data=b"\x00\xff",
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )
    assert response.status_code == 415


@pytest.mark.parametrize(
    ("mode", "headers", "status", "body"),
    [
        ("API_KEY", {}, 403, {"message": "Forbidden"}),
        ("API_KEY", {"x-api-key": "wrong"}, 403, {"message": "Forbidden"}),
        ("API_KEY", {"x-api-key": "secret-key"}, 200, None),
        ("IAM", {}, 403, {"message": "Missing Authentication Token"}),
        ("IAM", {"Authorization": "AWS4-HMAC-SHA256 Credential=..."}, 200, None),
    ],
)
def test_the_auth_mode_is_honoured(
    restore_env: None, mode: str, headers: dict[str, str], status: int, body: Any
) -> None:
    app = LocalApi(
        REPO, model_dir=PENGUINS_DIR, parameters={"AuthMode": mode}, api_key="secret-key"
    )
    with Server(app, port=0) as server:
        response = requests.get(server.url + "/health", headers=headers, timeout=30)
    assert response.status_code == status
    if body is not None:
        assert response.json() == body


def test_an_edited_handler_is_used_without_a_rebuild(restore_env: None, tmp_path: Path) -> None:
    app = LocalApi(REPO, model_dir=PENGUINS_DIR, parameters={"AuthMode": "NONE"})
    with Server(app, port=0) as server:
        requests.get(server.url + "/health", timeout=30)
        function = app.functions["PredictFunction"]
        first = function.module
        watched = function.watched[0]
        stat = watched.stat()
        os.utime(watched, (stat.st_atime, stat.st_mtime + 5))
        try:
            requests.get(server.url + "/health", timeout=30)
            assert function.module is not first
        finally:
            os.utime(watched, (stat.st_atime, stat.st_mtime))


def test_the_function_environment_comes_from_the_template(restore_env: None) -> None:
    app = LocalApi(REPO, model_dir=PENGUINS_DIR)
    env = app.functions["PredictFunction"].environment
    assert env["POWERTOOLS_SERVICE_NAME"] == "predict"
    assert env["SKLAMBDA_MAX_INSTANCES"] == "1000"
    assert env["SKLAMBDA_RUNTIME"] == "onnx"
    assert app.auth_mode == "IAM"  # the template's default, unless overridden


# --- make invoke ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "status"), sorted(EXPECTED_STATUS.items()))
def test_invoke_runs_every_api_event(restore_env: None, name: str, status: int) -> None:
    event = json.loads((EVENTS / name).read_text())
    result = invoke_function(REPO, "PredictFunction", event, model_dir=PENGUINS_DIR)
    assert result["statusCode"] == status


def test_invoke_ignores_a_key_outside_incoming(restore_env: None) -> None:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    event = json.loads((EVENTS / "s3-put-outside-incoming.json").read_text())
    result = invoke_function(REPO, "BatchFunction", event, model_dir=PENGUINS_DIR)
    assert result["results"][0]["status"] == "ignored"


def test_invoke_overrides_parameters(restore_env: None) -> None:
    event = json.loads((EVENTS / "predict-single.json").read_text())
    invoke_function(
        REPO,
        "PredictFunction",
        event,
        model_dir=PENGUINS_DIR,
        parameters={"ServingRuntime": "sklearn", "MaxInstances": "7"},
    )
    assert os.environ["SKLAMBDA_RUNTIME"] == "sklearn"
    assert os.environ["SKLAMBDA_MAX_INSTANCES"] == "7"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, check=False, timeout=300)


def test_make_invoke_prints_the_result() -> None:
    done = run("make", "-s", "invoke", "FN=PredictFunction", "EVENT=events/get-health.json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout[done.stdout.index("{\n") :])
    assert result["statusCode"] == 200
    assert json.loads(result["body"])["status"] == "ok"


# --- make batch and make demo ---------------------------------------------------------------------


def test_batch_scores_a_local_file_in_the_embedded_s3(tmp_path: Path) -> None:
    done = run(sys.executable, "scripts/batch.py", "samples/birds.csv", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "succeeded - read 33, scored 31, rejected 2" in done.stdout
    manifest = json.loads((tmp_path / "manifests" / "birds.csv.json").read_text())
    assert manifest["rows"] == {"read": 33, "scored": 31, "rejected": 2}
    assert len((tmp_path / "predictions" / "birds.csv").read_text().splitlines()) == 32
    assert len((tmp_path / "errors" / "birds.csv.jsonl").read_text().splitlines()) == 2


def test_the_demo_shows_the_whole_system(tmp_path: Path) -> None:
    done = run(sys.executable, "scripts/demo.py", "--out", str(tmp_path / "demo"))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "gate passed (4 checks)" in out
    assert "POST /predict (a Biscoe bird)  -> 200: Gentoo" in out
    assert "/infer (the same bird, V2 tensors) -> 200: Gentoo" in out
    assert "instances[0].bill_length_mm: expected a number, got a string" in out
    assert "succeeded: read 33, scored 31, rejected 2" in out
    for metric in ("InstancesPredicted", "InvalidRequests", "RowsScored", "RowsRejected"):
        assert metric in out
    assert "model.onnx does not match model.json" in out
    assert "body_mass_g" in out and "DRIFT" in out
    assert "local API stopped" in out


def test_an_unknown_model_name_is_refused_and_nothing_is_retrained() -> None:
    # Given the committed example model
    before = {p.name: p.stat().st_mtime_ns for p in PENGUINS_DIR.iterdir()}
    # When a command is given a model name that does not exist
    done = subprocess.run(
        ["make", "-s", "serve", "MODEL_NAME=pengiuns"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    # Then it stops, naming the models there are, and the example is untouched
    assert done.returncode != 0
    assert "no model 'pengiuns' (models/pengiuns/model.json); the models are: " in done.stderr
    assert "penguins" in done.stderr.split("the models are: ")[1].split("(")[0].split()
    assert {p.name: p.stat().st_mtime_ns for p in PENGUINS_DIR.iterdir()} == before
