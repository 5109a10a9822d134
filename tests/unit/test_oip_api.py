"""The Open Inference Protocol (V2) routes of the predict function, invoked in-process with API
Gateway proxy events; answers checked against the protocol's own OpenAPI document."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from sklambda.model import load
from sklambda_tools.local import LambdaContext, load_handler, new_execution_environment

from support import BIRD, PENGUINS_DIR, REPO, event, oip_violations

HANDLER = REPO / "functions" / "predict" / "app.py"
MODEL = load(PENGUINS_DIR)
INFER = "/v2/models/{model_name}/infer"
VERSION_INFER = "/v2/models/{model_name}/versions/{model_version}/infer"
KINDS = {"island": "BYTES", "sex": "BYTES"}


@pytest.fixture
def make_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ModuleType]]:
    def make(model_dir: Path = PENGUINS_DIR, **env: str) -> ModuleType:
        monkeypatch.setenv("SKLAMBDA_MODEL_DIR", str(model_dir))
        monkeypatch.delenv("SKLAMBDA_RUNTIME", raising=False)
        monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "sklambda-test")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return load_handler(HANDLER)

    yield make
    new_execution_environment()


@pytest.fixture
def app(make_app: Callable[..., ModuleType]) -> ModuleType:
    return make_app()


def v2_event(
    method: str,
    resource: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    **parameters: str,
) -> dict[str, Any]:
    """An API Gateway proxy event of a V2 route, its path parameters filled in."""
    ev = copy.deepcopy(event("predict-single.json"))
    path = resource
    for name, value in parameters.items():
        path = path.replace(f"{{{name}}}", value)
    ev.update(
        httpMethod=method,
        resource=resource,
        path=path,
        pathParameters=parameters or None,
        body=None if body is None else body if isinstance(body, str) else json.dumps(body),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    return ev


def invoke(app: ModuleType, ev: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = app.lambda_handler(ev, LambdaContext(function_name="predict"))
    assert response["headers"]["Content-Type"] == "application/json"
    return int(response["statusCode"]), json.loads(response["body"])


def columns(rows: list[dict[str, Any]], **kinds: str) -> dict[str, Any]:
    """``rows`` as the pandas codec sends them: one [N, 1] input per feature."""
    kinds = {**KINDS, **kinds}
    return {
        "parameters": {"content_type": "pd"},
        "inputs": [
            {
                "name": name,
                "shape": [len(rows), 1],
                "datatype": kinds.get(name, "FP64"),
                "data": [row[name] for row in rows],
            }
            for name in rows[0]
        ],
    }


def infer(app: ModuleType, body: Any, **headers: str) -> tuple[int, dict[str, Any]]:
    return invoke(app, v2_event("POST", INFER, body, headers, model_name="penguins"))


def error_of(app: ModuleType, body: Any) -> tuple[int, str]:
    status, answer = infer(app, body)
    assert set(answer) == {"error"}, answer
    assert not oip_violations("inference_error_response", answer)
    return status, answer["error"]


ROWS = [
    BIRD,
    {**BIRD, "island": "Dream", "bill_length_mm": 46.5, "bill_depth_mm": 17.9, "sex": None},
    {**BIRD, "island": "Torgersen", "bill_length_mm": 39.1, "body_mass_g": None},
]


# --- health, metadata -------------------------------------------------------------------------


def test_live_ready_and_the_model_ready(app: ModuleType) -> None:
    assert invoke(app, v2_event("GET", "/v2/health/live")) == (200, {"live": True})
    assert invoke(app, v2_event("GET", "/v2/health/ready")) == (200, {"ready": True})
    ready = v2_event("GET", "/v2/models/{model_name}/ready", model_name="penguins")
    assert invoke(app, ready) == (200, {"name": "penguins", "ready": True})
    versioned = v2_event(
        "GET",
        "/v2/models/{model_name}/versions/{model_version}/ready",
        model_name="penguins",
        model_version=MODEL.version,
    )
    assert invoke(app, versioned) == (200, {"name": "penguins", "ready": True})
    status, server = invoke(app, v2_event("GET", "/v2"))
    assert status == 200 and not oip_violations("metadata_server_response", server)


def test_a_model_that_failed_to_load_is_live_but_not_ready(
    make_app: Callable[..., ModuleType], penguins_copy: Path
) -> None:
    (penguins_copy / "model.onnx").write_bytes(b"tampered")
    app = make_app(penguins_copy)
    assert invoke(app, v2_event("GET", "/v2/health/live")) == (200, {"live": True})
    for ev in (
        v2_event("GET", "/v2/health/ready"),
        v2_event("GET", "/v2/models/{model_name}/ready", model_name="penguins"),
        v2_event("POST", INFER, columns([BIRD]), model_name="penguins"),
    ):
        assert invoke(app, ev) == (503, {"error": "the model is unavailable"})


def test_the_metadata_describes_the_manifests_inputs_and_the_outputs(app: ModuleType) -> None:
    status, meta = invoke(app, v2_event("GET", "/v2/models/{model_name}", model_name="penguins"))
    assert status == 200
    assert not oip_violations("metadata_model_response", meta)
    assert meta["name"] == "penguins" and meta["versions"] == [MODEL.version]
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        (f.name, "BYTES" if f.kind == "categorical" else "FP64", [-1, 1])
        for f in MODEL.manifest.features
    ]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, len(MODEL.classes or [])]},
    ]
    assert json.loads(meta["parameters"]["classes"]) == MODEL.classes


def test_a_float32_graph_describes_its_numbers_as_fp32(
    make_app: Callable[..., ModuleType], float32_penguins: Path
) -> None:
    app = make_app(float32_penguins)
    _, meta = invoke(app, v2_event("GET", "/v2/models/{model_name}", model_name="penguins"))
    assert {i["name"]: i["datatype"] for i in meta["inputs"]}["body_mass_g"] == "FP32"


@pytest.mark.parametrize(
    ("resource", "parameters", "reason"),
    [
        (INFER, {"model_name": "iris"}, "unknown model"),
        ("/v2/models/{model_name}", {"model_name": "Penguins"}, "unknown model"),
        (VERSION_INFER, {"model_name": "penguins", "model_version": "1"}, "unknown version"),
        (
            "/v2/models/{model_name}/versions/{model_version}/ready",
            {"model_name": "penguins", "model_version": "latest"},
            "unknown version",
        ),
    ],
)
def test_another_model_or_version_is_a_404_in_the_protocols_shape(
    app: ModuleType, resource: str, parameters: dict[str, str], reason: str
) -> None:
    method = "POST" if resource.endswith("/infer") else "GET"
    status, body = invoke(app, v2_event(method, resource, columns([BIRD]), **parameters))
    assert status == 404 and set(body) == {"error"} and body["error"].startswith(reason)
    assert "'penguins'" in body["error"]


# --- inference --------------------------------------------------------------------------------


def test_an_inference_is_the_cores_answer_and_oip_violations(app: ModuleType) -> None:
    body = {"id": "req-7", **columns(ROWS)}
    status, answer = infer(app, body)
    assert status == 200, answer
    assert not oip_violations("inference_response", answer)
    assert (answer["model_name"], answer["model_version"], answer["id"]) == (
        "penguins",
        MODEL.version,
        "req-7",
    )
    predict, proba = answer["outputs"]
    assert predict == {
        "name": "predict",
        "datatype": "BYTES",
        "shape": [3, 1],
        "data": MODEL.predict(ROWS).tolist(),
    }
    assert (proba["name"], proba["datatype"], proba["shape"]) == ("predict_proba", "FP64", [3, 3])
    assert proba["data"] == pytest.approx(MODEL.predict_proba(ROWS).ravel().tolist(), abs=1e-12)


def test_the_versioned_route_answers_the_same(app: ModuleType) -> None:
    body = columns(ROWS)
    ev = v2_event("POST", VERSION_INFER, body, model_name="penguins", model_version=MODEL.version)
    assert invoke(app, ev) == infer(app, body)


@pytest.mark.parametrize("wanted", [["predict"], ["predict_proba"], ["predict_proba", "predict"]])
def test_the_requested_outputs_are_answered_in_their_order(
    app: ModuleType, wanted: list[str]
) -> None:
    body = {
        **columns(ROWS),
        "outputs": [{"name": n, "parameters": {"binary_data": False}} for n in wanted],
    }
    status, answer = infer(app, body)
    assert status == 200 and [o["name"] for o in answer["outputs"]] == wanted


def test_flat_shapes_nested_data_and_numeric_datatypes_are_accepted(app: ModuleType) -> None:
    # [N] shapes, the natural [[v], [v]] nesting, integers in INT64 and FP32 tensors
    rows = [
        {**BIRD, "flipper_length_mm": 230, "body_mass_g": 5800},
        {**ROWS[1], "flipper_length_mm": 190},
    ]
    body = columns(rows, flipper_length_mm="INT64", body_mass_g="FP32")
    body["inputs"][0]["shape"] = [2]
    body["inputs"][3]["data"] = [[v] for v in body["inputs"][3]["data"]]
    status, answer = infer(app, body)
    assert status == 200, answer
    assert answer["outputs"][0]["data"] == MODEL.predict(rows).tolist()


def test_mlservers_pd_json_elements_are_json_text(app: ModuleType) -> None:
    body = columns(ROWS)
    sex = body["inputs"][5]
    sex["parameters"] = {"content_type": "pd_json"}
    sex["data"] = [json.dumps(v) for v in sex["data"]]  # '"male"', 'null', '"male"'
    status, answer = infer(app, body)
    assert status == 200, answer
    assert answer["outputs"][0]["data"] == MODEL.predict(ROWS).tolist()


def test_a_bad_rows_reason_is_the_native_apis_reason_placed_in_the_tensors(
    app: ModuleType,
) -> None:
    # Given the same bad rows through /predict and through V2
    rows = [BIRD, {**BIRD, "island": None, "bill_length_mm": float("inf")}]
    native = v2_event(
        "POST", "/predict", json.dumps({"instances": rows}).replace("Infinity", "1e999")
    )
    native["resource"] = native["path"] = "/predict"
    native_status, native_body = invoke(app, native)
    body = json.dumps(columns(rows)).replace("Infinity", "1e999")
    status, message = error_of(app, body)
    # Then both refuse with 422 and the same reasons, the V2 one naming the row and the input
    assert native_status == status == 422
    assert message.startswith("some rows do not match the model's input schema: ")
    reasons = {e["path"]: e["reason"] for e in native_body["errors"]}
    assert f"row 1, 'island' (inputs[0]): {reasons['instances[1].island']}" in message
    assert f"row 1, 'bill_length_mm' (inputs[1]): {reasons['instances[1].bill_length_mm']}" in (
        message
    )


BAD_TENSORS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("not an object", lambda b: [b], "body: expected a JSON object"),
    ("no inputs", lambda b: {"id": "1"}, "inputs: required"),
    ("empty inputs", lambda b: {**b, "inputs": []}, "inputs: must hold at least one input"),
    ("id a number", lambda b: {**b, "id": 7}, "id: expected a string, got a number"),
    ("parameters a list", lambda b: {**b, "parameters": []}, "parameters: expected an object"),
    (
        "a parameter an object",
        lambda b: {**b, "parameters": {"content_type": {"x": 1}}},
        "parameters.content_type: expected a string, number or boolean, got an object",
    ),
    (
        "another content type",
        lambda b: {**b, "parameters": {"content_type": "xml"}},
        "parameters.content_type: expected one of ['pd', 'np']",
    ),
    (
        "binary outputs",
        lambda b: {**b, "parameters": {"binary_data_output": True}},
        "parameters.binary_data_output: binary outputs are not supported",
    ),
    (
        "a binary output",
        lambda b: {**b, "outputs": [{"name": "predict", "parameters": {"binary_data": True}}]},
        "outputs[0].parameters.binary_data: binary outputs are not supported",
    ),
    (
        "an unknown output",
        lambda b: {**b, "outputs": [{"name": "predict_log_proba"}]},
        "outputs[0].name: unknown output 'predict_log_proba'",
    ),
    (
        "a duplicate output",
        lambda b: {**b, "outputs": [{"name": "predict"}, {"name": "predict"}]},
        "outputs[1].name: duplicate output 'predict'",
    ),
    ("an input not an object", lambda b: _set(b, 2, None), "inputs[2]: expected an object"),
    ("a duplicate input", lambda b: _dup(b), "inputs[6].name: duplicate input 'island'"),
    (
        "an unknown input",
        lambda b: _edit(b, 1, name="bill"),
        "inputs[1].name: unknown input 'bill'",
    ),
    ("a missing input", lambda b: _drop(b, 5), "inputs: missing input 'sex'"),
    ("shape × data", lambda b: _edit(b, 1, shape=[3, 1]), "inputs[1].data: 2 elements, but"),
    ("shape of strings", lambda b: _edit(b, 1, shape=["2", 1]), "inputs[1].shape: expected an"),
    ("a negative shape", lambda b: _edit(b, 1, shape=[-2, -1]), "inputs[1].shape: expected an"),
    ("three dimensions", lambda b: _edit(b, 1, shape=[2, 1, 1]), "inputs[1].shape: expected [N]"),
    ("two columns", lambda b: _edit(b, 1, shape=[1, 2]), "inputs[1].shape: expected [N] or"),
    ("rows differ", lambda b: _rows(b, 1, 1), "inputs[1].shape: 1 rows, but inputs[0] has 2"),
    ("no rows", lambda b: _rows(b, None, 0), "inputs[0].shape: must hold at least one row"),
    ("data not a list", lambda b: _edit(b, 1, data="48.6"), "inputs[1].data: expected an array"),
    (
        "ragged nesting",
        lambda b: _edit(b, 1, data=[[48.6, 1.0], []]),
        "inputs[1].data: nested data that is not the natural form of shape [2, 1]",
    ),
    ("deep nesting", lambda b: _edit(b, 1, data=[[[48.6]], [[1.0]]]), "not the natural form"),
    (
        "an unknown datatype",
        lambda b: _edit(b, 1, datatype="FLOAT"),
        "inputs[1].datatype: expected",
    ),
    (
        "a string feature as numbers",
        lambda b: _edit(b, 0, datatype="FP64", data=[1.0, 2.0]),
        "inputs[0].datatype: FP64 does not fit the categorical feature 'island'; expected BYTES",
    ),
    (
        "a number feature as BYTES",
        lambda b: _edit(b, 1, datatype="BYTES", data=["48.6", "1"]),
        "inputs[1].datatype: BYTES does not fit the numeric feature 'bill_length_mm'",
    ),
    (
        "BYTES that are not strings",
        lambda b: _edit(b, 0, data=["Biscoe", 3]),
        "inputs[0].data[1]: expected a string (BYTES), got a number",
    ),
    (
        "a boolean in FP64",
        lambda b: _edit(b, 1, data=[True, 48.6]),
        "inputs[1].data[0]: expected a number (FP64), got a boolean",
    ),
    (
        "a string in FP64",
        lambda b: _edit(b, 1, data=["48.6", 48.6]),
        "inputs[1].data[0]: expected a number (FP64), got a string",
    ),
    (
        "a fraction in INT64",
        lambda b: _edit(b, 3, datatype="INT64", data=[230.5, 230]),
        "inputs[3].data[0]: expected an integer (INT64), got a number",
    ),
    (
        "beyond INT8",
        lambda b: _edit(b, 3, datatype="INT8", data=[230, 100]),
        "inputs[3].data[0]: number out of range for INT8",
    ),
    (
        "negative UINT",
        lambda b: _edit(b, 3, datatype="UINT16", data=[-1, 100]),
        "inputs[3].data[0]: number out of range for UINT16",
    ),
    (
        "beyond FP32",
        lambda b: _edit(b, 4, datatype="FP32", data=[1e39, 1.0]),
        "inputs[4].data[0]: number out of range for FP32",
    ),
    (
        "an integer beyond the double range in FP32",
        lambda b: _edit(b, 4, datatype="FP32", data=[10**400, 1.0]),
        "inputs[4].data[0]: number out of range for FP32",
    ),
    (
        "an integer beyond the double range in FP64",
        lambda b: _edit(b, 4, data=[10**400, 1.0]),
        "row 0, 'body_mass_g' (inputs[4]): number out of range",
    ),
    (
        "infinity in FP32",
        lambda b: _edit(b, 4, datatype="FP32", data=[float("inf"), 1.0]),
        "row 0, 'body_mass_g' (inputs[4]): infinity is not allowed",
    ),
    (
        "pd_json that is not JSON",
        lambda b: _edit(b, 5, parameters={"content_type": "pd_json"}, data=["male", "null"]),
        "inputs[5].data[0]: not JSON text",
    ),
    (
        "an input content type",
        lambda b: _edit(b, 5, parameters={"content_type": "base64"}),
        "inputs[5].parameters.content_type: expected one of ['str', 'np', 'pd_json']",
    ),
    (
        "a binary input",
        lambda b: _edit(b, 1, parameters={"binary_data_size": 16}),
        "inputs[1].parameters.binary_data_size: binary and shared-memory tensors are not",
    ),
]


def _edit(body: dict[str, Any], i: int, **changes: Any) -> dict[str, Any]:
    body["inputs"][i].update(changes)
    return body


def _set(body: dict[str, Any], i: int, value: Any) -> dict[str, Any]:
    body["inputs"][i] = value
    return body


def _dup(body: dict[str, Any]) -> dict[str, Any]:
    body["inputs"].append(copy.deepcopy(body["inputs"][0]))
    return body


def _drop(body: dict[str, Any], i: int) -> dict[str, Any]:
    del body["inputs"][i]
    return body


def _rows(body: dict[str, Any], i: int | None, n: int) -> dict[str, Any]:
    for j, tensor in enumerate(body["inputs"]):
        if i is None or j == i:
            tensor["shape"] = [n, 1]
            tensor["data"] = tensor["data"][:n]
    return body


@pytest.mark.parametrize(
    ("mistake", "reason"), [(m, r) for m, _, r in BAD_TENSORS], ids=[m for m, _, _ in BAD_TENSORS]
)
def test_a_malformed_request_is_a_422_naming_its_place(
    app: ModuleType, mistake: str, reason: str
) -> None:
    make = next(f for m, f, _ in BAD_TENSORS if m == mistake)
    body = make(columns(ROWS[:2]))
    status, message = error_of(app, body)
    assert status == 422
    assert reason in message, message


def test_the_envelopes_statuses_are_the_native_apis(app: ModuleType) -> None:
    assert error_of(app, "{not json")[0] == 400
    assert infer(app, json.dumps(columns([BIRD])), **{"Content-Type": "text/csv"})[0] == 415
    status, answer = infer(app, columns([BIRD]), **{"Inference-Header-Content-Length": "120"})
    assert status == 415 and "Inference-Header-Content-Length" in answer["error"]


def test_too_many_rows_is_413_and_a_body_too_large_too(
    make_app: Callable[..., ModuleType],
) -> None:
    app = make_app(SKLAMBDA_MAX_INSTANCES="2", SKLAMBDA_MAX_BODY_BYTES="4000")
    status, answer = infer(app, columns(ROWS))
    assert (status, answer) == (413, {"error": "a request may carry at most 2 rows"})
    big = columns(ROWS[:2])
    big["id"] = "x" * 5000
    assert infer(app, big)[0] == 413


@pytest.fixture(scope="module")
def numeric_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regressor of two numbers only (age, an integer; income, with gaps)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline

    from sklambda_tools.package import build

    from pipelines import synthetic_frame

    train, holdout = synthetic_frame(300, seed=1), synthetic_frame(100, seed=2)
    columns = ["age", "income"]
    pipeline = Pipeline([("impute", SimpleImputer()), ("m", Ridge())])
    pipeline.fit(train[columns], train["spend"])
    out = tmp_path_factory.mktemp("numeric") / "numeric"
    gate = {"rmse": ("max", 1000.0), "r2": ("min", -10.0)}
    fields = [*columns, "spend"]
    return build(pipeline, holdout[fields], "spend", out, name="numeric", gate=gate).path


def test_an_all_numeric_model_takes_one_2d_input(
    numeric_model: Path, make_app: Callable[..., ModuleType]
) -> None:
    # Given a model of numbers only, and rows as one [N, 2] tensor in feature order
    model = load(numeric_model)
    app = make_app(numeric_model)
    names = model.manifest.feature_names
    rows = [{"age": 30 + i, "income": 40.5 + i} for i in range(3)]
    flat = [row[n] for row in rows for n in names]
    body = {"inputs": [{"name": "x", "shape": [3, len(names)], "datatype": "FP64", "data": flat}]}
    # When it is inferred
    status, answer = invoke(app, v2_event("POST", INFER, body, model_name="numeric"))
    # Then the values are the model's, as FP64 [N, 1]
    assert status == 200, answer
    assert not oip_violations("inference_response", answer)
    (predict,) = answer["outputs"]
    assert (predict["name"], predict["datatype"], predict["shape"]) == ("predict", "FP64", [3, 1])
    assert predict["data"] == pytest.approx(model.predict(rows).tolist(), rel=1e-12)
    # the same rows as columns answer the same
    by_column = {
        "inputs": [
            {"name": "age", "shape": [3], "datatype": "INT64", "data": [r["age"] for r in rows]},
            {
                "name": "income",
                "shape": [3],
                "datatype": "FP64",
                "data": [r["income"] for r in rows],
            },
        ]
    }
    assert invoke(app, v2_event("POST", INFER, by_column, model_name="numeric")) == (200, answer)
    # a bad cell is named by its row and its column
    assert model.manifest.features[0].kind == "integer"
    body["inputs"][0]["data"][2] = 2.5  # row 1's age
    status, answer = invoke(app, v2_event("POST", INFER, body, model_name="numeric"))
    assert status == 422
    assert "row 1, 'age' (inputs[0] column 0): expected an integer" in answer["error"]
    body["inputs"][0]["shape"] = [1, 6]
    status, answer = invoke(app, v2_event("POST", INFER, body, model_name="numeric"))
    assert status == 422 and "inputs[0].shape: expected [N, 2]" in answer["error"]


def test_a_2d_input_for_a_model_with_categories_is_refused(app: ModuleType) -> None:
    body = {"inputs": [{"name": "input-0", "shape": [1, 6], "datatype": "FP64", "data": [0.0] * 6}]}
    status, message = error_of(app, body)
    assert status == 422
    assert "a single 2-D input serves all-numeric models only" in message


@st.composite
def v2_bodies(draw: st.DrawFn) -> Any:
    """V2 documents near the valid one: an input's field or an element replaced at random."""
    body = columns(ROWS)
    junk = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
    for _ in range(draw(st.integers(1, 3))):
        tensor = body["inputs"][draw(st.integers(0, 5))]
        key = draw(st.sampled_from(["name", "shape", "datatype", "data", "parameters", "elem"]))
        if key == "elem":
            tensor["data"][draw(st.integers(0, 2))] = draw(junk)
        else:
            tensor[key] = draw(junk)
    return body


@seed(20261202)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=v2_bodies())
def test_fuzzed_tensors_get_a_200_or_a_4xx_in_the_protocols_shape(
    app: ModuleType, body: Any
) -> None:
    status, answer = infer(app, json.dumps(body))
    assert status == 200 or 400 <= status < 500, answer
    if status != 200:
        assert set(answer) == {"error"} and answer["error"]
        assert "Traceback" not in answer["error"]
    else:
        assert not oip_violations("inference_response", answer)
    assert all(
        math.isfinite(x)
        for o in answer.get("outputs", [])
        if o["datatype"] == "FP64"
        for x in o["data"]
    )


def outcome(body: Any, *, quick: bool) -> Any:
    from sklambda import oip

    try:
        request = oip.parse(MODEL, body, 1000, quick=quick)
    except oip.TensorRefused as exc:
        return exc.text()
    return request.rows, request.outputs, request.id


@seed(20261203)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=v2_bodies(), outputs=st.sampled_from([None, [], [{"name": "predict"}], "x"]))
def test_the_quick_path_answers_as_the_full_checks(body: Any, outputs: Any) -> None:
    # the quick path is an optimisation: it may only ever agree with the full checks
    if outputs is not None:
        body["outputs"] = outputs
    assert outcome(body, quick=True) == outcome(body, quick=False)


@pytest.mark.parametrize(
    ("mistake", "reason"), [(m, r) for m, _, r in BAD_TENSORS], ids=[m for m, _, _ in BAD_TENSORS]
)
def test_the_quick_path_refuses_what_the_full_checks_refuse(mistake: str, reason: str) -> None:
    make = next(f for m, f, _ in BAD_TENSORS if m == mistake)
    body = make(columns(ROWS[:2]))
    if not reason.startswith("row "):  # the rows' own reasons are the core's, after parsing
        assert isinstance(outcome(body, quick=False), str)
    assert outcome(body, quick=True) == outcome(body, quick=False)


def test_a_plain_pandas_codec_request_takes_the_quick_path() -> None:
    from sklambda import oip

    body = columns(ROWS, flipper_length_mm="INT64")
    body["inputs"][3]["data"] = [230, 190, 195]
    body["inputs"][0]["parameters"] = {"content_type": "str"}
    body["outputs"] = [{"name": "predict", "parameters": {"binary_data": False}}]
    found = oip._quick_request(MODEL, body)
    assert found is not None and found == oip.parse(MODEL, body, 1000, quick=False)
