"""The Open Inference Protocol routes as outside clients call them, over real HTTP to the local
API: Triton's ``tritonclient`` HTTP client (JSON tensors) and MLServer's pandas codec, every
answer checked against the protocol's own OpenAPI document; and the holdout through the native
route and the V2 route, which must give identical predictions.

MLServer 1.7.1's codec, found by trying it: it encodes object columns (strings as ``BYTES``
with ``content_type: str``), float64 (``NaN`` as ``null``), int64 and bool columns, shape
``[N, 1]``; it raises on pandas 3's default ``str`` columns (``KeyError: 'O'``), on an object
column holding ``None`` (``np.isnan`` of a string) and on nullable ``Int64``, so its frames here
hold categories as ``object`` columns without gaps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as triton
from mlserver.codecs import NumpyCodec, PandasCodec, StringCodec
from mlserver.types import InferenceResponse
from tritonclient.utils import InferenceServerException

from sklambda.model import load
from sklambda_tools.examples import penguins
from sklambda_tools.package import frame_to_records

from support import PENGUINS_DIR, local_api, oip_violations

MODEL = load(PENGUINS_DIR)
FEATURES = MODEL.manifest.feature_names
CATEGORICAL = [f.name for f in MODEL.manifest.features if f.kind == "categorical"]


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    with local_api(no_proxy="127.0.0.1,localhost", NO_PROXY="127.0.0.1,localhost") as url:
        yield url


@pytest.fixture(scope="module")
def holdout() -> pd.DataFrame:
    """The example model's holdout (its test split), features only."""
    frame: pd.DataFrame = penguins.split(penguins.load_frame()).test[FEATURES]
    return frame


@pytest.fixture
def client(api_url: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=api_url.removeprefix("http://"))


def triton_inputs(frame: pd.DataFrame, *, binary: bool = False) -> list[triton.InferInput]:
    inputs = []
    for name in FEATURES:
        column = frame[name].to_numpy(dtype=object if name in CATEGORICAL else np.float64)
        tensor = triton.InferInput(
            name, [len(frame), 1], "BYTES" if name in CATEGORICAL else "FP64"
        )
        tensor.set_data_from_numpy(column.reshape(-1, 1), binary_data=binary)
        inputs.append(tensor)
    return inputs


def json_outputs(*names: str) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput(n, binary_data=False) for n in names]


def native(api_url: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    answer = requests.post(f"{api_url}/predict", json={"instances": records}, timeout=30)
    assert answer.status_code == 200, answer.text
    predictions: list[dict[str, Any]] = answer.json()["predictions"]
    return predictions


def test_the_conformance_check_can_fail() -> None:
    assert oip_violations("inference_response", {"model_name": "x", "outputs": [{"name": "y"}]})
    assert oip_violations("metadata_model_response", {"name": "x"})  # no platform
    assert not oip_violations("inference_error_response", {"error": "e"})


def test_tritonclient_sees_a_live_ready_server_and_the_models_metadata(
    client: triton.InferenceServerClient, api_url: str
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("penguins")
    assert client.is_model_ready("penguins", model_version=MODEL.version)
    assert not client.is_model_ready("iris")
    assert not client.is_model_ready("penguins", model_version="0")
    metadata = client.get_model_metadata("penguins")
    assert not oip_violations("metadata_model_response", metadata)
    assert [i["name"] for i in metadata["inputs"]] == FEATURES
    assert [o["name"] for o in metadata["outputs"]] == ["predict", "predict_proba"]
    server = requests.get(f"{api_url}/v2", timeout=30).json()
    assert not oip_violations("metadata_server_response", server)


def test_tritonclient_json_tensors_get_the_native_routes_answers(
    client: triton.InferenceServerClient, api_url: str, holdout: pd.DataFrame
) -> None:
    # Given the holdout rows whose categories tritonclient can send (it writes None as "None"),
    # numbers missing as NaN (what its JSON writer sends, and a missing value to the core)
    frame = holdout.dropna(subset=CATEGORICAL).reset_index(drop=True)
    frame.loc[len(frame)] = {**frame.iloc[0].to_dict(), "bill_length_mm": np.nan}
    # When tritonclient infers them with JSON tensors
    result = client.infer(
        "penguins",
        triton_inputs(frame),
        outputs=json_outputs("predict", "predict_proba"),
        request_id="holdout-1",
    )
    # Then the answer conforms and is the native route's, row by row
    response = result.get_response()
    assert not oip_violations("inference_response", response)
    assert response["id"] == "holdout-1" and response["model_version"] == MODEL.version
    expected = native(api_url, frame_to_records(frame, MODEL.manifest.features))
    labels = result.as_numpy("predict")
    assert labels.shape == (len(frame), 1)
    assert [x.decode() if isinstance(x, bytes) else x for x in labels.ravel()] == [
        p["label"] for p in expected
    ]
    proba = result.as_numpy("predict_proba")
    assert proba.shape == (len(frame), 3)
    assert proba.tolist() == [list(p["probabilities"].values()) for p in expected]


def test_tritonclient_asks_for_one_output_of_a_versioned_model(
    client: triton.InferenceServerClient, holdout: pd.DataFrame
) -> None:
    frame = holdout.dropna(subset=CATEGORICAL).head(5)
    result = client.infer(
        "penguins",
        triton_inputs(frame),
        model_version=MODEL.version,
        outputs=json_outputs("predict_proba"),
    )
    assert [o["name"] for o in result.get_response()["outputs"]] == ["predict_proba"]
    assert result.as_numpy("predict") is None


@pytest.mark.parametrize(
    ("kwargs", "status", "named"),
    [
        ({"binary": True}, 415, "Inference-Header-Content-Length"),
        ({"outputs": None}, 422, "parameters.binary_data_output"),
        ({"model_name": "iris"}, 404, "unknown model"),
        ({"model_version": "7"}, 404, "unknown version"),
    ],
)
def test_tritonclients_defaults_and_mistakes_get_a_4xx_naming_the_cause(
    client: triton.InferenceServerClient,
    holdout: pd.DataFrame,
    kwargs: dict[str, Any],
    status: int,
    named: str,
) -> None:
    frame = holdout.dropna(subset=CATEGORICAL).head(2)
    with pytest.raises(InferenceServerException) as raised:
        client.infer(
            kwargs.get("model_name", "penguins"),
            triton_inputs(frame, binary=kwargs.get("binary", False)),
            model_version=kwargs.get("model_version", ""),
            outputs=kwargs.get("outputs", json_outputs("predict")),
        )
    assert raised.value.status() == str(status)
    assert named in raised.value.message()


def codec_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as MLServer's codec can encode it: categories as object columns."""
    out = frame.copy()
    for name in CATEGORICAL:
        out[name] = out[name].astype(object)
    return out


def test_mlservers_pandas_codec_request_gets_the_native_routes_answers(
    api_url: str, holdout: pd.DataFrame
) -> None:
    # Given the holdout as MLServer's PandasCodec encodes a DataFrame (float NaN as null)
    frame = codec_frame(holdout.dropna(subset=CATEGORICAL).reset_index(drop=True))
    request = PandasCodec.encode_request(frame, use_bytes=False)
    body = json.loads(request.model_dump_json(exclude_none=True))
    assert body["parameters"] == {"content_type": "pd"}
    assert {i["name"]: i["datatype"] for i in body["inputs"]}["island"] == "BYTES"
    assert all(i["shape"] == [len(frame), 1] for i in body["inputs"])
    # When it is posted to the V2 route
    answer = requests.post(f"{api_url}/v2/models/penguins/infer", json=body, timeout=30)
    # Then MLServer's own types read the answer, and its codecs decode the native answers
    assert answer.status_code == 200, answer.text
    assert not oip_violations("inference_response", answer.json())
    response = InferenceResponse.model_validate_json(answer.text)
    labels = StringCodec.decode_output(response.outputs[0])
    proba = NumpyCodec.decode_output(response.outputs[1])
    expected = native(api_url, frame_to_records(frame, MODEL.manifest.features))
    assert labels == [p["label"] for p in expected]
    assert proba.tolist() == [list(p["probabilities"].values()) for p in expected]


def test_an_mlserver_frame_with_integer_and_mixed_columns(api_url: str) -> None:
    # int64 columns arrive as INT64; an object column of mixed values as pd_json (JSON text)
    frame = pd.DataFrame(
        {
            "island": pd.Series(["Biscoe", "Dream"], dtype=object),
            "bill_length_mm": [48.6, 46.5],
            "bill_depth_mm": [16.0, 17.9],
            "flipper_length_mm": [230, 192],
            "body_mass_g": [5800, 3500],
            "sex": pd.Series(["male", 1], dtype=object),
        }
    )
    body = json.loads(PandasCodec.encode_request(frame, use_bytes=False).model_dump_json())
    kinds = {i["name"]: (i["datatype"], (i.get("parameters") or {})) for i in body["inputs"]}
    assert kinds["flipper_length_mm"][0] == "INT64"
    assert kinds["sex"] == ("BYTES", {"content_type": "pd_json"})
    answer = requests.post(f"{api_url}/v2/models/penguins/infer", json=body, timeout=30)
    # the second row's sex decodes to the number 1: the core's reason, placed in the tensors
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert "row 1, 'sex' (inputs[5]): expected a string, got a number" in error
    assert not oip_violations("inference_error_response", answer.json())


def test_the_whole_holdout_gets_identical_predictions_through_both_routes(
    api_url: str, holdout: pd.DataFrame
) -> None:
    # Given every holdout row, missing values as null in both requests
    records = frame_to_records(holdout, MODEL.manifest.features)
    assert any(r["sex"] is None for r in records)  # missing categories included
    body = {
        "inputs": [
            {
                "name": name,
                "shape": [len(records), 1],
                "datatype": "BYTES" if name in CATEGORICAL else "FP64",
                "data": [r[name] for r in records],
            }
            for name in FEATURES
        ]
    }
    # When both routes score them
    expected = native(api_url, records)
    answer = requests.post(f"{api_url}/v2/models/penguins/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    # Then the labels and the probabilities are identical (the same core, the same floats)
    assert outputs["predict"]["data"] == [p["label"] for p in expected]
    width = outputs["predict_proba"]["shape"][1]
    flat = outputs["predict_proba"]["data"]
    rows = [flat[i : i + width] for i in range(0, len(flat), width)]
    assert rows == [list(p["probabilities"].values()) for p in expected]
    assert all(math.isfinite(x) for x in flat)
