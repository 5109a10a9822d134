"""The online function, invoked in-process with API Gateway proxy events."""

from __future__ import annotations

import base64
import copy
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
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
        monkeypatch.delenv("SKLAMBDA_RUNTIME", raising=False)  # the manifest's, unless given
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


BILL_NOTE = (
    "outside the training range [32.1, 55.9]; scored, but the model has not seen such values"
)
MASS_NOTE = (
    "outside the training range [2700, 6300]; scored, but the model has not seen such values"
)


@pytest.mark.parametrize("count", [1, 8])  # one instance, and enough for column-wise validation
def test_numbers_outside_the_training_range_are_scored_and_noted(
    app: ModuleType, count: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given instances on the training range's bounds and, last, one beyond it
    model = load(PENGUINS_DIR)
    edge = {**BIRD, "bill_length_mm": 55.9, "body_mass_g": 2700}
    beyond = {**BIRD, "bill_length_mm": 59.6, "body_mass_g": 9000.0}
    instances = [edge] * (count - 1) + [beyond]
    # When they are sent
    got, body, _ = answer(app, post(json.dumps({"instances": instances})))
    # Then every instance is scored as the model scores it, and the numbers beyond the range
    # are noted with their instance and feature, in feature order, as unseen categories are
    assert got == 200, body
    assert [p["label"] for p in body["predictions"]] == model.predict(instances).tolist()
    last = count - 1
    assert body["notes"] == [
        {"path": f"instances[{last}].bill_length_mm", "reason": BILL_NOTE},
        {"path": f"instances[{last}].body_mass_g", "reason": MASS_NOTE},
    ]
    assert "notes_omitted" not in body
    # And the log counts the notes by kind and feature
    (log,) = [x for x in emitted(capsys.readouterr().out) if x.get("message", "").endswith("notes")]
    assert log["count"] == 2
    assert log["by_kind"] == {"outside_training_range": {"bill_length_mm": 1, "body_mass_g": 1}}


def test_many_notes_are_capped_with_a_count_of_the_rest(
    app: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given 1,000 instances, each with four numbers outside the training range and two unseen
    # categories: 6,000 notes
    odd = {
        "island": "Anvers" + "x" * 300,
        "bill_length_mm": 1.0,
        "bill_depth_mm": 99.0,
        "flipper_length_mm": -5,
        "body_mass_g": 1e6,
        "sex": "unknown",
    }
    got, body, raw = answer(app, post(json.dumps({"instances": [odd] * 1000})))
    # Then all are scored, the answer lists the first 100 notes and counts the others
    assert got == 200 and len(body["predictions"]) == 1000
    assert len(body["notes"]) == 100 and body["notes_omitted"] == 5900
    assert [n["path"] for n in body["notes"][:7]] == [
        *(f"instances[0].{name}" for name in BIRD),  # in feature order
        "instances[1].island",
    ]
    assert body["notes"][1] == {"path": "instances[0].bill_length_mm", "reason": BILL_NOTE}
    assert len(body["notes"][0]["reason"]) < 200  # the category cut to 40 characters
    assert len(raw) < 250_000  # the predictions, and 100 short notes
    # And the log stays bounded too: ten notes and the counts by kind and feature
    (log,) = [x for x in emitted(capsys.readouterr().out) if x.get("message", "").endswith("notes")]
    assert len(log["notes"]) == 10 and log["count"] == 6000
    assert log["by_kind"] == {
        "outside_training_range": {
            "bill_depth_mm": 1000,
            "bill_length_mm": 1000,
            "body_mass_g": 1000,
            "flipper_length_mm": 1000,
        },
        "unseen_category": {"island": 1000, "sex": 1000},
    }
    assert len(json.dumps(log)) < 5_000


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
    # Given an artifact tampered with after packaging (its size kept: the hash tells)
    graph = bytearray((penguins_copy / "model.onnx").read_bytes())
    graph[-1] ^= 0xFF
    (penguins_copy / "model.onnx").write_bytes(bytes(graph))
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


# --- hostile input: a bounded 4xx with a fixed message, never a 5xx ----------------------------


def instance_body(**changes: Any) -> str:
    return json.dumps({"instances": [{**BIRD, **changes}]})


def assert_plain_json(raw_body: str) -> None:
    """A response body any JSON parser takes: UTF-8 text with no lone surrogate, no NaN."""
    raw_body.encode("utf-8")  # strict: fails on a lone surrogate
    parsed = json.loads(raw_body, parse_constant=lambda token: pytest.fail(f"{token} in a reply"))
    json.dumps(parsed, ensure_ascii=False).encode("utf-8")  # nor one escaped as \\ud800


def answer(app: ModuleType, ev: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    response = app.lambda_handler(ev, LambdaContext(function_name="predict"))
    assert_plain_json(response["body"])
    return int(response["statusCode"]), json.loads(response["body"]), response["body"]


def test_json_nested_thousands_deep_is_400(app: ModuleType) -> None:
    deep = '{"instances": ' + "[" * 100_000 + "]" * 100_000 + "}"
    got, body, _ = answer(app, post(deep))
    assert (got, body["message"]) == (400, "the request body is not valid JSON")
    # nesting Python parses, inside an instance, is that field's error
    nested = instance_body(island=None).replace("null", "[" * 900 + "]" * 900)
    got, body, _ = answer(app, post(nested))
    assert got == 422
    assert body["errors"] == [
        {"path": "instances[0].island", "reason": "expected a string, got an array"}
    ]


@pytest.mark.parametrize("digits", [400, 4300, 4301, 100_000])
@pytest.mark.parametrize("sign", ["", "-"])
def test_integer_literals_beyond_the_double_range_are_a_field_error(
    app: ModuleType, digits: int, sign: str
) -> None:
    # Python's json refuses integer literals over 4,300 digits with a ValueError; they are
    # numbers out of range like any other beyond the double range
    text = instance_body(bill_length_mm=0).replace(
        '"bill_length_mm": 0', f'"bill_length_mm": {sign}{"9" * digits}'
    )
    got, body, _ = answer(app, post(text))
    assert got == 422, body
    assert body["errors"] == [
        {"path": "instances[0].bill_length_mm", "reason": "number out of range"}
    ]


@pytest.mark.parametrize("value", [1e39, -1e39, 3.5e38, 1e308, -1.7976931348623157e308])
def test_a_number_beyond_float32_is_a_field_error_not_a_nan_prediction(
    make_app: Callable[..., ModuleType], float32_penguins: Path, value: float
) -> None:
    # A graph that takes float32: 1e39 becomes infinity there and the probabilities NaN. Both
    # runtimes refuse it with the same reason (the bound comes from the artifact)
    for runtime in ("onnx", "sklearn"):
        app = make_app(float32_penguins, SKLAMBDA_RUNTIME=runtime)
        got, body, _ = answer(app, post(instance_body(body_mass_g=value)))
        assert got == 422, (runtime, body)
        assert body["errors"] == [
            {"path": "instances[0].body_mass_g", "reason": "number out of range"}
        ]


def test_the_largest_numbers_float32_holds_are_scored(
    make_app: Callable[..., ModuleType], float32_penguins: Path
) -> None:
    app = make_app(float32_penguins)
    got, body, _ = answer(app, post(instance_body(body_mass_g=3.4e38, bill_depth_mm=-3.4e38)))
    assert got == 200
    (prediction,) = body["predictions"]
    assert all(math.isfinite(p) for p in prediction["probabilities"].values())


@pytest.mark.parametrize("where", ["island", "sex"])
def test_a_lone_surrogate_in_a_category_is_a_field_error(
    app: ModuleType, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    # Given a category with a lone surrogate: the JSON escape "\ud800" makes one, and a body
    # handed over as text may hold one raw
    escaped = instance_body(**{where: "\ud800"})
    raw = escaped.replace("\\ud800", "\ud800")
    for body_text in (escaped, raw):
        got, body, _ = answer(app, post(body_text))
        # Then it is refused naming the field, before the onnx runtime sees it
        assert got == 422, body
        assert body["errors"] == [
            {"path": f"instances[0].{where}", "reason": "not valid Unicode text (a lone surrogate)"}
        ]
    out = capsys.readouterr()
    assert "Logging error" not in out.err and "Traceback" not in out.err


def test_a_lone_surrogate_in_a_key_is_not_echoed(
    app: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    got, body, _ = answer(app, post(json.dumps({"instances": [{**BIRD, "a\ud800b": 1}]})))
    assert got == 422
    assert body["errors"] == [{"path": "instances[0].a\ufffdb", "reason": "unknown feature"}]
    out = capsys.readouterr()
    assert "Logging error" not in out.err
    for line in emitted(out.out):
        json.dumps(line).encode("utf-8")


def test_the_content_type_is_matched_without_regard_to_case(app: ModuleType) -> None:
    for content_type in ("Application/JSON", "APPLICATION/JSON; charset=UTF-8"):
        assert answer(app, post(instance_body(), content_type))[0] == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("!!! not base64 !!!", "the request body is not valid base64"),
        (base64.b64encode(b"\xff\xfe{}").decode(), "the request body is not valid UTF-8"),
        (
            base64.b64encode(b'{"instances": "\xe9"}').decode(),
            "the request body is not valid UTF-8",
        ),
        # UTF-16 JSON, which Python's json would guess from the bytes: the API takes UTF-8 only
        (
            base64.b64encode(json.dumps({"instances": [BIRD]}).encode("utf-16")).decode(),
            "the request body is not valid UTF-8",
        ),
    ],
)
def test_a_base64_body_must_be_utf8_json(app: ModuleType, body: str, message: str) -> None:
    ev = post(body)
    ev["isBase64Encoded"] = True
    got, answer_body, _ = answer(app, ev)
    assert (got, answer_body["message"]) == (400, message)


def test_a_base64_utf8_body_is_scored(app: ModuleType) -> None:
    ev = post(base64.b64encode(instance_body().encode()).decode())
    ev["isBase64Encoded"] = True
    assert answer(app, ev)[0] == 200


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"httpMethod": None}, 404),
        ({"httpMethod": 7}, 404),
        ({"path": None, "resource": None}, 404),
        ({"headers": ["Content-Type"]}, 200),
        ({"headers": None, "multiValueHeaders": None}, 200),
        ({"body": {"instances": [BIRD]}}, 400),
        ({"body": 12}, 400),
        ({"isBase64Encoded": "yes"}, 400),
        ({"requestContext": "not an object"}, 200),
        ({"requestContext": {"requestId": {"an": "object"}}}, 200),
    ],
)
def test_an_odd_event_gets_a_4xx_or_a_prediction(
    app: ModuleType, change: dict[str, Any], status: int
) -> None:
    ev = post(instance_body())
    for key, value in change.items():
        if value is None:
            ev.pop(key, None)
        else:
            ev[key] = value
    got, body, _ = answer(app, ev)
    assert got == status, body
    if got >= 400:
        assert body["request_id"] is None or isinstance(body["request_id"], str)


@pytest.mark.parametrize("event_value", [[], "text", 3, None])
def test_an_event_that_is_no_object_is_404(app: ModuleType, event_value: Any) -> None:
    got, body, _ = answer(app, event_value)
    assert (got, body["message"]) == (404, "no such route")


def test_many_errors_are_capped_with_a_count_of_the_rest(app: ModuleType) -> None:
    # Given a body under the 1 MB limit with 90,000 unknown keys (once a 7 MB answer, over the
    # 6 MB Lambda allows)
    instance = {**BIRD, **{f"k{i}": 0 for i in range(90_000)}}
    text = json.dumps({"instances": [instance]}, separators=(",", ":"))
    assert len(text) < 1_048_576
    got, body, raw = answer(app, post(text))
    # Then the answer lists the first 100 errors and counts the others
    assert got == 422
    assert len(body["errors"]) == 100 and body["errors"][0]["path"] == "instances[0].k0"
    assert body["errors_omitted"] == 89_900
    assert body["message"] == (
        "some instances do not match the model's input schema (89900 more not shown)"
    )
    assert len(raw) < 16_000


def test_a_long_unknown_key_is_cut_in_the_answer(app: ModuleType) -> None:
    got, body, raw = answer(app, post(json.dumps({"instances": [{**BIRD, "k" * 900_000: 0}]})))
    assert got == 422 and "errors_omitted" not in body
    (error,) = body["errors"]
    assert error["path"] == "instances[0]." + "k" * 39 + "…"
    assert len(raw) < 1_000


def test_errors_of_every_instance_are_bounded(app: ModuleType) -> None:
    bad = {**BIRD, "bill_length_mm": "x" * 300, "island": 3, "sex": ["y" * 300]}
    got, body, raw = answer(app, post(json.dumps({"instances": [bad] * 1000})))
    assert got == 422 and len(body["errors"]) == 100 and body["errors_omitted"] == 2900
    assert len(raw) < 16_000


def test_a_prediction_that_is_not_finite_is_refused_naming_the_instance(
    app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a backend that gives NaN probabilities for the second row
    backend = app._model.backend
    real = backend.score

    def score(columns: Any, probabilities: bool) -> Any:
        scores = real(columns, probabilities)
        if len(scores.probabilities) > 1:
            scores.probabilities[1] = np.nan
        return scores

    monkeypatch.setattr(backend, "score", score)
    # When two instances are sent
    got, body, _ = answer(app, post(json.dumps({"instances": [BIRD, BIRD]})))
    # Then the request is refused naming the instance the model had no answer for
    assert got == 422, body
    assert body["errors"] == [
        {"path": "instances[1]", "reason": "the model gave no finite prediction for this row"}
    ]


# --- the body fuzzer: hostile bodies and events, in-process (5,000 examples in `make fuzz`) -----

FUZZ_EXAMPLES = int(os.environ.get("SKLAMBDA_FUZZ_BODY_EXAMPLES", "300"))
FUZZ_SEED = int(os.environ.get("SKLAMBDA_FUZZ_SEED", "20261122"))
MAX_ANSWER = 256_000  # a fuzzed request is small; so is every answer to it

# any code point, lone surrogates included (JSON's \ud800 escapes make them)
hostile_text = st.text(st.characters(codec=None, categories=None), max_size=12) | st.sampled_from(
    ["Biscoe", "Dream", "male", "female", "", "\ud800", "a\udfffb", "é" * 50, "k" * 300]
)
hostile_numbers = (
    st.floats()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.sampled_from([3.4e38, 3.5e38, -1e39, 1e308, -1.7976931348623157e308, 5e-324, -0.0])
)
hostile_leaves = st.none() | st.booleans() | hostile_numbers | hostile_text
hostile_json = st.recursive(
    hostile_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=12,
)
hostile_instances = st.dictionaries(
    st.sampled_from([*BIRD, "extra"]) | hostile_text,
    hostile_leaves | st.lists(hostile_leaves, max_size=2),
    max_size=8,
) | st.builds(
    lambda changes: {**BIRD, **changes},
    st.dictionaries(st.sampled_from(list(BIRD)), hostile_leaves, max_size=3),
)


@st.composite
def hostile_bodies(draw: st.DrawFn) -> str:
    """A body as a client could send it: JSON (ASCII-escaped or not), or JSON text spliced with
    what json.dumps cannot write (integer literals of thousands of digits, deep nesting, NaN
    tokens), or cut short."""
    document = draw(
        st.fixed_dictionaries({"instances": st.lists(hostile_instances, min_size=1, max_size=5)})
        | st.fixed_dictionaries({"instances": hostile_json})
        | hostile_json
    )
    text = json.dumps(document, ensure_ascii=draw(st.booleans()))
    splice = draw(st.sampled_from(["none", "digits", "deep", "cut", "constant", "surrogate-raw"]))
    if splice == "digits":
        digits = draw(st.sampled_from([309, 4300, 4301, 20_000]))
        text = text.replace("0", "-" * draw(st.booleans()) + "9" * digits, 1)
    elif splice == "deep":
        depth = draw(st.sampled_from([500, 5_000, 50_000]))
        text = text.replace("null", "[" * depth + "]" * depth, 1)
    elif splice == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif splice == "constant":
        text = text.replace("0", draw(st.sampled_from(["NaN", "Infinity", "-Infinity"])), 1)
    elif splice == "surrogate-raw":
        text = text.replace("a", "\udc80", 1)
    return text


@st.composite
def hostile_events(draw: st.DrawFn) -> dict[str, Any]:
    content_type = draw(
        st.sampled_from(["application/json", "Application/JSON", "application/json; charset=utf-8"])
        | st.none()
        | st.sampled_from(["text/plain", "application/x-www-form-urlencoded", ""])
    )
    ev = post(draw(hostile_bodies()), content_type)
    how = draw(st.sampled_from(["text", "text", "text", "base64", "base64-bytes", "odd-event"]))
    if how == "base64":
        ev["body"] = base64.b64encode(
            ev["body"].encode("utf-8", draw(st.sampled_from(["surrogatepass", "replace"])))
        ).decode()
        ev["isBase64Encoded"] = True
    elif how == "base64-bytes":
        ev["body"] = draw(
            st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode())
            | st.text(max_size=20)
        )
        ev["isBase64Encoded"] = True
    elif how == "odd-event":
        key = draw(st.sampled_from(["httpMethod", "path", "headers", "requestContext", "body"]))
        ev[key] = draw(hostile_json)
    return ev


@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@seed(FUZZ_SEED)
@given(ev=hostile_events())
def test_fuzzed_requests_get_a_bounded_answer_and_never_a_5xx(
    app: ModuleType, ev: dict[str, Any]
) -> None:
    got, body, raw = answer(app, ev)
    assert got in (200, 400, 404, 413, 415, 422), body
    assert len(raw) < MAX_ANSWER
    if got == 200:
        document = json.loads(ev["body"]) if not ev.get("isBase64Encoded") else None
        if document is not None:
            assert len(body["predictions"]) == len(document["instances"])
        assert len(body["notes"]) <= 100
        for p in body["predictions"]:
            assert all(math.isfinite(v) for v in p["probabilities"].values())
    else:
        assert isinstance(body["message"], str) and len(body["message"]) < 200
        assert len(body.get("errors", [])) <= 100


def test_the_documented_cap_is_the_handlers(app: ModuleType) -> None:
    from sklambda_tools import contracts

    assert app.MAX_ERRORS == contracts.MAX_ERRORS == 100
    assert app.MAX_NOTES == contracts.MAX_NOTES == 100
