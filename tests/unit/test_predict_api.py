"""The online function, invoked in-process with API Gateway proxy events."""

from __future__ import annotations

import copy
import json
import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sklambda.model import load
from sklambda_tools.local import LambdaContext, load_handler, new_execution_environment

from support import BIRD, EVENTS, EXPECTED_STATUS, PENGUINS_DIR, REPO, event

HANDLER = REPO / "functions" / "predict" / "app.py"


def post(body: str | None, content_type: str | None = "application/json") -> dict[str, Any]:
    ev = copy.deepcopy(event("predict-single.json"))
    ev["body"] = body
    headers = {k: v for k, v in ev["headers"].items() if k.lower() != "content-type"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    ev["headers"] = headers
    ev["multiValueHeaders"] = {k: [v] for k, v in headers.items()}
    return ev


class _CurrentStdout:
    """Writes to whatever sys.stdout is when a line is logged (pytest swaps it between the
    fixture and the test phases), so that capsys sees the function's logs."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def make_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ModuleType]]:
    """A fresh execution environment of the predict function, with settings from ``env``."""
    loaded: list[ModuleType] = []

    def make(model_dir: Path = PENGUINS_DIR, **env: str) -> ModuleType:
        monkeypatch.setenv("SKLAMBDA_MODEL_DIR", str(model_dir))
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "predict")
        monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "sklambda-test")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        module = load_handler(HANDLER)
        module.logger.logger_handler.setStream(_CurrentStdout())
        loaded.append(module)
        return module

    yield make
    new_execution_environment()


@pytest.fixture
def app(make_app: Callable[..., ModuleType]) -> ModuleType:
    return make_app()


def invoke(app: ModuleType, ev: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = app.lambda_handler(ev, LambdaContext(function_name="predict"))
    headers = response.get("headers") or {
        k: v[-1] for k, v in response["multiValueHeaders"].items()
    }
    assert headers["Content-Type"] == "application/json"
    return int(response["statusCode"]), json.loads(response["body"])


def emitted(output: str) -> list[dict[str, Any]]:
    """The JSON lines a function printed (logs and EMF metric blobs)."""
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_every_event_is_exercised() -> None:
    api_events = [p.name for p in EVENTS.glob("*.json") if "httpMethod" in p.read_text()]
    assert sorted(api_events) == sorted(EXPECTED_STATUS)


@pytest.mark.parametrize(("name", "status"), sorted(EXPECTED_STATUS.items()))
def test_each_event_gets_its_status_and_a_json_body(
    app: ModuleType, name: str, status: int
) -> None:
    got, body = invoke(app, event(name))
    assert got == status, body
    if status >= 400:
        assert body["message"] and body["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


def test_a_prediction_equals_the_core_models(app: ModuleType) -> None:
    # Given the single-instance event and the model loaded directly
    model = load(PENGUINS_DIR)
    row = json.loads(event("predict-single.json")["body"])["instances"][0]
    # When the function answers
    status, body = invoke(app, event("predict-single.json"))
    # Then it is the same label and probabilities, keyed by class
    assert status == 200
    assert body["model"] == {"name": "penguins", "version": model.version}
    (prediction,) = body["predictions"]
    assert prediction["label"] == model.predict([row])[0]
    expected = dict(
        zip(["Adelie", "Chinstrap", "Gentoo"], model.predict_proba([row])[0], strict=True)
    )
    assert prediction["probabilities"] == pytest.approx(expected, abs=1e-12)


def test_many_instances_keep_their_order_and_unseen_categories_are_noted(app: ModuleType) -> None:
    rows = json.loads(event("predict-multi.json")["body"])["instances"]
    status, body = invoke(app, event("predict-multi.json"))
    assert status == 200
    assert [p["label"] for p in body["predictions"]] == load(PENGUINS_DIR).predict(rows).tolist()
    assert body["notes"] == [
        {
            "path": "instances[3].island",
            "reason": "category 'Anvers' not seen in training; scored with "
            "OneHotEncoder(handle_unknown='ignore'): every indicator is zero",
        }
    ]


def test_the_sklearn_runtime_answers_the_same(make_app: Callable[..., ModuleType]) -> None:
    onnx = invoke(make_app(), event("predict-multi.json"))[1]
    sklearn = invoke(make_app(SKLAMBDA_RUNTIME="sklearn"), event("predict-multi.json"))[1]
    assert [p["label"] for p in onnx["predictions"]] == [p["label"] for p in sklearn["predictions"]]
    for a, b in zip(onnx["predictions"], sklearn["predictions"], strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "errors"),
    [
        ("not json", "application/json", 400, None),
        ('{"instances": [', "application/json", 400, None),
        ('{"instances": []}', "text/plain", 415, None),
        ("not json either", "text/csv", 415, None),
        ('{"instances": []}', "application/x-www-form-urlencoded", 415, None),
        ("{}", "application/json", 422, [{"path": "instances", "reason": "required"}]),
        (
            '{"instances": []}',
            "application/json",
            422,
            [{"path": "instances", "reason": "must hold at least one instance"}],
        ),
        (
            '{"instances": {"a": 1}}',
            "application/json",
            422,
            [{"path": "instances", "reason": "expected an array"}],
        ),
        ("[1, 2]", "application/json", 422, [{"path": "body", "reason": "expected a JSON object"}]),
        ("null", "application/json", 422, [{"path": "body", "reason": "required"}]),
        (
            '{"instances": [1]}',
            "application/json",
            422,
            [{"path": "instances[0]", "reason": "expected an object, got a number"}],
        ),
    ],
)
def test_envelope_mistakes_get_their_status(
    app: ModuleType, body: str, content_type: str, status: int, errors: list[dict[str, str]] | None
) -> None:
    got, answer = invoke(app, post(body, content_type))
    assert got == status, answer
    if errors is not None:
        assert answer["errors"] == errors
    assert "Traceback" not in json.dumps(answer)


@pytest.mark.parametrize(
    ("change", "path", "reason"),
    [
        ({"colour": "black"}, "instances[0].colour", "unknown feature"),
        (
            {"bill_length_mm": "48.6"},
            "instances[0].bill_length_mm",
            "expected a number, got a string",
        ),
        ({"island": 3}, "instances[0].island", "expected a string, got a number"),
        ({"island": None}, "instances[0].island", "must not be null"),
        ({"body_mass_g": [5800]}, "instances[0].body_mass_g", "expected a number, got an array"),
        ({"sex": True}, "instances[0].sex", "expected a string, got a boolean"),
    ],
)
def test_field_mistakes_name_the_field_and_the_reason(
    app: ModuleType, change: dict[str, Any], path: str, reason: str
) -> None:
    got, answer = invoke(app, post(json.dumps({"instances": [{**BIRD, **change}]})))
    assert got == 422
    assert answer["errors"] == [{"path": path, "reason": reason}]


def test_a_missing_feature_is_named(app: ModuleType) -> None:
    row = {k: v for k, v in BIRD.items() if k != "body_mass_g"}
    got, answer = invoke(app, post(json.dumps({"instances": [BIRD, row]})))
    assert got == 422
    assert answer["errors"] == [{"path": "instances[1].body_mass_g", "reason": "missing feature"}]


def test_infinity_is_refused_and_nan_is_a_missing_value(app: ModuleType) -> None:
    # Python's JSON (and so API Gateway's body, parsed here) accepts the tokens NaN and Infinity
    got, answer = invoke(
        app, post(json.dumps({"instances": [{**BIRD, "bill_depth_mm": math.inf}]}))
    )
    assert got == 422
    assert answer["errors"] == [
        {"path": "instances[0].bill_depth_mm", "reason": "infinity is not allowed"}
    ]
    got, answer = invoke(
        app, post(json.dumps({"instances": [{**BIRD, "bill_depth_mm": math.nan}]}))
    )
    assert got == 200  # every numeric feature of this model is nullable


def test_too_many_instances_is_413(make_app: Callable[..., ModuleType]) -> None:
    app = make_app(SKLAMBDA_MAX_INSTANCES="2")
    got, answer = invoke(app, post(json.dumps({"instances": [BIRD] * 3})))
    assert got == 413 and "at most 2 instances" in answer["message"]
    assert invoke(app, post(json.dumps({"instances": [BIRD] * 2})))[0] == 200


def test_a_body_too_large_is_413_before_parsing(make_app: Callable[..., ModuleType]) -> None:
    app = make_app(SKLAMBDA_MAX_BODY_BYTES="2048")
    got, answer = invoke(app, post("x" * 3000))  # not even JSON: the size is checked first
    assert got == 413 and "at most 2048 bytes" in answer["message"]


def test_a_model_that_fails_to_load_makes_every_route_503(
    make_app: Callable[..., ModuleType], penguins_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an artifact tampered with after packaging
    (penguins_copy / "model.onnx").write_bytes(b"tampered")
    app = make_app(penguins_copy)
    # Then every route answers 503 with a fixed message, and the log says why
    for name in ("predict-single.json", "get-model.json", "get-health.json"):
        got, answer = invoke(app, event(name))
        assert got == 503
        assert answer["message"] == "the model is unavailable"
        assert "SHA-256" not in json.dumps(answer)
    logs = [line for line in emitted(capsys.readouterr().out) if line.get("level") == "ERROR"]
    assert any("model.onnx does not match model.json" in line.get("reason", "") for line in logs)


def test_an_unknown_route_is_404(app: ModuleType) -> None:
    ev = copy.deepcopy(event("get-health.json"))
    ev["path"] = ev["resource"] = "/nope"
    assert invoke(app, ev) == (
        404,
        {"message": "no such route", "request_id": ev["requestContext"]["requestId"]},
    )


def test_an_unexpected_error_is_500_without_internals(
    app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app, "predict_all", explode)
    got, answer = invoke(app, event("predict-single.json"))
    assert got == 500 and answer["message"] == "internal error"
    assert "secret" not in json.dumps(answer)


def test_model_and_health_describe_the_loaded_model(app: ModuleType) -> None:
    manifest = load(PENGUINS_DIR).manifest
    assert invoke(app, event("get-model.json")) == (200, json.loads(json.dumps(manifest.public())))
    assert invoke(app, event("get-health.json")) == (
        200,
        {
            "status": "ok",
            "model": {"name": "penguins", "version": manifest.version},
            "runtime": "onnx",
        },
    )


def test_metrics_are_emitted_with_model_dimensions(
    app: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    invoke(app, event("predict-multi.json"))
    invoke(app, event("predict-invalid-instances.json"))
    blobs = [b for b in emitted(capsys.readouterr().out) if "_aws" in b]
    version = load(PENGUINS_DIR).version

    def values(name: str, **dims: str) -> list[float]:
        out = []
        for b in blobs:
            if name in b and all(b.get(k) == v for k, v in dims.items()):
                value = b[name]
                out.extend(value if isinstance(value, list) else [value])
        return out

    model = {"ModelName": "penguins", "ModelVersion": version}
    assert values("InstancesPredicted", **model) == [4.0]
    assert values("ColdStart", **model) == [1.0]
    assert values("InvalidRequests", **model) == [1.0]
    assert len(values("RequestLatency", **model)) == 2
    assert sum(values("PredictedClass", **model)) == 4.0
    assert {b["Class"] for b in blobs if "PredictedClass" in b} <= {"Adelie", "Chinstrap", "Gentoo"}
    class_blob = next(b for b in blobs if "PredictedClass" in b)
    assert class_blob["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["ModelName", "ModelVersion", "service", "Class"]
    ]
    assert all(b["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "sklambda-test" for b in blobs)


def test_rejections_are_logged_with_the_request_id_and_without_the_payload(
    app: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    ev = post(json.dumps({"instances": [{**BIRD, "bill_length_mm": "secret-value"}]}))
    invoke(app, ev)
    logs = [
        line
        for line in emitted(capsys.readouterr().out)
        if line.get("message") == "invalid instances"
    ]
    assert len(logs) == 1
    assert logs[0]["correlation_id"] == ev["requestContext"]["requestId"]
    assert "secret-value" not in json.dumps(logs[0])


# --- any JSON at all: never a 5xx -------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
feature_values = (
    st.none()
    | st.booleans()
    | st.floats()
    | st.integers()
    | st.sampled_from(["Biscoe", "Dream", "male", "female", "", "Atlantis"])
    | st.lists(st.integers(), max_size=2)
)
instances = st.dictionaries(
    st.sampled_from([*BIRD, "extra"]), feature_values, min_size=0, max_size=7
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=json_values
    | st.fixed_dictionaries({"instances": st.lists(instances | json_values, max_size=4)})
)
def test_any_json_body_gets_a_2xx_or_4xx_with_a_json_body(app: ModuleType, body: Any) -> None:
    text = json.dumps(body)
    got, answer = invoke(app, post(text))
    assert 200 <= got < 500, answer
    if got == 200:
        assert len(answer["predictions"]) == len(body["instances"])
        for p in answer["predictions"]:
            assert np.isclose(sum(p["probabilities"].values()), 1.0, atol=1e-5)
    else:
        assert isinstance(answer["message"], str)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.text(max_size=40) | st.binary(max_size=40).map(lambda b: b.decode("latin-1")))
def test_any_text_body_gets_a_4xx(app: ModuleType, raw: str) -> None:
    got, answer = invoke(app, post(raw))
    assert 200 <= got < 500, answer
