"""No output ever holds NaN or infinity: a row the model gives no finite answer for is a rejected
row with a fixed reason, through every door of the scoring core (the API, CSV and JSON Lines
batch files), and numbers the serving runtime cannot represent never reach it."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sklambda.batch import process_object
from sklambda.errors import FieldError, InvalidInput
from sklambda.model import Model, Scores, load
from sklambda.schema import OUT_OF_RANGE, Columns
from sklambda.scoring import NO_FINITE_PREDICTION, predict_all, score_records, score_text
from sklambda.settings import BatchSettings, read_settings

from support import BIRD, PENGUINS_DIR, mocked_bucket

REGION, BUCKET = "us-east-1", "sklambda-limits"
PENGUINS = load(PENGUINS_DIR)
NAMES = PENGUINS.schema.names


class NanForHeavyBirds:
    """A backend stub: the real model's answer, except NaN (or infinity) for every bird whose
    body mass is 9999 g."""

    def __init__(self, real: Any, bad: float = math.nan) -> None:
        self.real, self.bad = real, bad

    def score(self, columns: Columns, probabilities: bool) -> Scores:
        scores: Scores = self.real.score(columns, probabilities)
        heavy = np.asarray(columns["body_mass_g"], dtype=np.float64) == 9999.0
        if scores.values is not None:
            scores.values[heavy] = self.bad
        if scores.probabilities is not None:
            scores.probabilities[heavy, 0] = self.bad
        return scores


class Regressor:
    """A regressor stub: the body mass back, infinite for 9999 g."""

    def score(self, columns: Columns, probabilities: bool) -> Scores:
        mass = np.asarray(columns["body_mass_g"], dtype=np.float64).copy()
        mass[mass == 9999.0] = math.inf
        return Scores(values=mass)


def stub_model(bad: float = math.nan) -> Model:
    return Model(PENGUINS.manifest, NanForHeavyBirds(PENGUINS.backend, bad), "onnx", PENGUINS.path)


def regression_model() -> Model:
    manifest = PENGUINS.manifest
    output = dataclasses.replace(
        manifest.output, task="regression", classes=None, probabilities=False
    )
    return Model(dataclasses.replace(manifest, output=output), Regressor(), "onnx", PENGUINS.path)


HEAVY = {**BIRD, "body_mass_g": 9999.0}
ROWS = [BIRD, HEAVY, {**BIRD, "island": "Atlantis"}, {**HEAVY, "island": "Atlantis"}, BIRD]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("count", [1, 4])  # few rows, and many (the column-wise validation)
def test_rows_without_a_finite_prediction_are_rejected_in_json_rows(bad: float, count: int) -> None:
    # Given a model that answers NaN (or infinity) for heavy birds
    model = stub_model(bad)
    rows = ROWS * count
    # When rows are scored as JSON-like records
    scored = score_records(model, rows)
    # Then the heavy rows are rejected with the fixed reason, and only finite answers remain
    heavy = [i for i, r in enumerate(rows) if r["body_mass_g"] == 9999.0]
    assert scored.rows == [i for i in range(len(rows)) if i not in heavy]
    assert [(e.row, e.field, e.reason) for e in scored.errors] == [
        (i, None, NO_FINITE_PREDICTION) for i in heavy
    ]
    assert scored.rejected_rows == heavy
    assert scored.scores.probabilities is not None
    assert np.isfinite(scored.scores.probabilities).all()
    assert len(scored.predictions()) == len(scored.rows)
    for name in NAMES:  # what drift counts: the scored rows' values only
        assert len(scored.columns[name]) == len(scored.rows)
    # notes of rejected rows go with them
    assert {n.row for n in scored.notes} == {i for i in range(len(rows)) if i % 5 == 2}


def test_rows_without_a_finite_prediction_are_rejected_in_text_cells() -> None:
    model = stub_model()
    cells = {name: ["" if r[name] is None else str(r[name]) for r in ROWS] for name in NAMES}
    scored = score_text(model, cells, len(ROWS))
    assert scored.rows == [0, 2, 4]
    assert [(e.row, e.reason) for e in scored.errors] == [
        (1, NO_FINITE_PREDICTION),
        (3, NO_FINITE_PREDICTION),
    ]


def test_the_api_core_refuses_a_request_with_a_row_without_a_finite_prediction() -> None:
    model = stub_model()
    with pytest.raises(InvalidInput) as raised:
        predict_all(model, ROWS)
    assert raised.value.errors == [
        FieldError(1, None, NO_FINITE_PREDICTION),
        FieldError(3, None, NO_FINITE_PREDICTION),
    ]
    assert str(raised.value) == f"instances[1]: {NO_FINITE_PREDICTION} (and 1 more)"
    assert len(predict_all(model, [BIRD, BIRD]).predictions()) == 2


def test_an_infinite_regression_value_is_rejected() -> None:
    model = regression_model()
    scored = score_records(model, [BIRD, HEAVY])
    assert scored.predictions() == [{"value": BIRD["body_mass_g"]}]
    assert scored.errors == [FieldError(1, None, NO_FINITE_PREDICTION)]


def test_every_row_without_a_finite_prediction_leaves_empty_predictions() -> None:
    scored = score_records(stub_model(), [HEAVY, HEAVY])
    assert scored.rows == [] and scored.predictions() == []
    assert scored.scores.labels is not None and len(scored.scores.labels) == 0
    assert score_records(stub_model(), []).errors == []
    assert score_records(regression_model(), []).errors == []


# --- batch: such rows go to the errors file, the predictions hold finite numbers only -------------


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_bucket(BUCKET, REGION, versioned=False) as client:
        yield client


def batch(s3: Any, model: Model, key: str, body: str) -> tuple[str, list[dict[str, Any]]]:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())
    settings = read_settings(BatchSettings, {"SKLAMBDA_DEAD_LETTER_QUEUE_URL": "unused"})
    result = process_object(s3, BUCKET, key, model, settings)
    assert result.status == "succeeded", result.reason
    path = key.removeprefix("incoming/")

    def text(k: str) -> str:
        data: bytes = s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()
        return data.decode()

    errors = [json.loads(line) for line in text(f"errors/{path}.jsonl").splitlines()]
    return text(f"predictions/{path}"), errors


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_batch_lists_rows_without_a_finite_prediction_in_the_errors_file(s3: Any, fmt: str) -> None:
    if fmt == "csv":
        lines = [",".join(NAMES)]
        lines += [",".join("" if r[n] is None else str(r[n]) for n in NAMES) for r in ROWS]
        body = "\n".join(lines) + "\n"
    else:
        body = "".join(json.dumps(r) + "\n" for r in ROWS)
    predictions, errors = batch(s3, stub_model(), f"incoming/birds.{fmt}", body)
    assert "nan" not in predictions.lower() and "inf" not in predictions.lower()
    assert [(e["row"], e["errors"]) for e in errors] == [
        (2, [{"field": None, "reason": NO_FINITE_PREDICTION}]),  # rows count from 1
        (4, [{"field": None, "reason": NO_FINITE_PREDICTION}]),
    ]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_batch_refuses_numbers_beyond_float32_as_the_api_does(
    s3: Any, fmt: str, float32_penguins: Path
) -> None:
    # The same reason online (tests/unit/test_predict_api.py) and in both batch formats
    rows = [BIRD, {**BIRD, "body_mass_g": 1e39}, {**BIRD, "bill_depth_mm": -1e308}]
    if fmt == "csv":
        lines = [",".join(NAMES)]
        lines += [",".join("" if r[n] is None else str(r[n]) for n in NAMES) for r in rows]
        body = "\n".join(lines) + "\n"
    else:
        body = "".join(json.dumps(r) + "\n" for r in rows)
    predictions, errors = batch(s3, load(float32_penguins), f"incoming/big.{fmt}", body)
    assert "nan" not in predictions.lower()
    assert [e["errors"] for e in errors] == [
        [{"field": "body_mass_g", "reason": OUT_OF_RANGE}],
        [{"field": "bill_depth_mm", "reason": OUT_OF_RANGE}],
    ]


def test_the_api_document_states_the_bound_and_the_error_cap(float32_penguins: Path) -> None:
    from sklambda.manifest import read_manifest
    from sklambda.schema import FLOAT32_LIMIT
    from sklambda_tools.openapi import document, render

    from support import REPO

    def number_schema(doc: dict[str, Any]) -> dict[str, Any]:
        instance = doc["components"]["schemas"]["PredictRequest"]["properties"]["instances"]
        (number, _null) = instance["items"]["properties"]["body_mass_g"]["anyOf"]
        return dict(number)

    # A graph that takes float32 bounds the numbers; the example's (float64) does not
    bounded = number_schema(json.loads(render(document(read_manifest(float32_penguins)))))
    assert bounded["exclusiveMaximum"] == FLOAT32_LIMIT == -bounded["exclusiveMinimum"]
    doc = json.loads((REPO / "docs" / "openapi.json").read_text())
    assert "exclusiveMaximum" not in number_schema(doc)
    schemas = doc["components"]["schemas"]
    assert schemas["ErrorBody"]["properties"]["errors_omitted"]["type"] == "integer"
