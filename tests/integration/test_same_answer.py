"""The same row gets the same answer online and in batch: a property over generated rows.

The online function (``functions/predict/app.py``, invoked in-process) and the batch job
(``sklambda.batch.process_object`` on moto, in both file formats) are given the same rows; they
must give the same labels, the same probabilities, in the same order, and reject the same rows
with the same reasons.
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sklambda.batch import process_object
from sklambda.manifest import Feature
from sklambda.model import load
from sklambda.settings import BatchSettings, read_settings
from sklambda_tools.local import LambdaContext, load_handler, new_execution_environment

from support import PENGUINS_DIR, REPO, event, mocked_bucket

HANDLER = REPO / "functions" / "predict" / "app.py"
REGION = "us-east-1"
BUCKET = "sklambda-same-answer"
MODEL = load(PENGUINS_DIR)
FEATURES: list[Feature] = list(MODEL.manifest.features)
NAMES = [f.name for f in FEATURES]
CLASSES = [str(c) for c in MODEL.classes or ()]
TOLERANCE = 1e-6  # CSV carries probabilities with nine significant digits
KEYS = itertools.count(1)  # every example writes under keys of its own

PROPERTY = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # the same examples on every run, in CI too
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- the two doors ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """One mocked bucket (versioned, as deployed) for the whole module."""
    with mocked_bucket(BUCKET, REGION, versioned=True) as client:
        yield client


@pytest.fixture(scope="module")
def api() -> Iterator[ModuleType]:
    """One execution environment of the predict function for the whole module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKLAMBDA_MODEL_DIR", str(PENGUINS_DIR))
        mp.setenv("POWERTOOLS_SERVICE_NAME", "predict")
        mp.setenv("POWERTOOLS_METRICS_NAMESPACE", "sklambda-test")
        yield load_handler(HANDLER)
    new_execution_environment()


def ask_online(api: ModuleType, instances: Sequence[Any]) -> tuple[int, dict[str, Any]]:
    """POST /predict with ``instances`` (NaN and infinity as Python's json writes them)."""
    ev = copy.deepcopy(event("predict-multi.json"))
    ev["body"] = json.dumps({"instances": list(instances)})
    response = api.lambda_handler(ev, LambdaContext(function_name="predict"))
    return int(response["statusCode"]), json.loads(response["body"])


def online_predictions(api: ModuleType, instances: Sequence[Any]) -> list[dict[str, Any]]:
    """The API's predictions for valid ``instances`` (none for no instances)."""
    if not instances:
        return []
    status, body = ask_online(api, instances)
    assert status == 200, body
    predictions: list[dict[str, Any]] = body["predictions"]
    return predictions


class BatchRun:
    """The outputs of one file scored by the batch job."""

    def __init__(self, s3: Any, key: str, body: str, chunk_rows: int) -> None:
        s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode("utf-8"))
        env = {
            "SKLAMBDA_DEAD_LETTER_QUEUE_URL": "unused",
            "SKLAMBDA_CHUNK_ROWS": str(chunk_rows),
            # the API rejects unknown features; batch ignores unknown columns unless told so
            "SKLAMBDA_UNKNOWN_COLUMNS": "reject",
        }
        self.result = process_object(s3, BUCKET, key, MODEL, read_settings(BatchSettings, env))
        path = key.removeprefix("incoming/")

        def text(k: str) -> str:
            data: bytes = s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()
            return data.decode("utf-8")

        assert self.result.status == "succeeded", self.result.reason
        self.predictions = text(f"predictions/{path}")
        self.errors = [json.loads(line) for line in text(f"errors/{path}.jsonl").splitlines()]
        self.record: dict[str, Any] = json.loads(text(f"manifests/{path}.json"))

    def answers(self) -> list[tuple[int, str, dict[str, float]]]:
        """``(row, label, probabilities)`` per prediction, from either format."""
        if self.result.key.endswith(".csv"):
            rows = list(csv.DictReader(io.StringIO(self.predictions, newline="")))
            return [
                (int(r["row"]), r["label"], {c: float(r[f"probability_{c}"]) for c in CLASSES})
                for r in rows
            ]
        lines = [json.loads(line) for line in self.predictions.splitlines()]
        return [(int(x["row"]), str(x["label"]), x["probabilities"]) for x in lines]

    def reasons(self) -> list[dict[str, str]]:
        """The rejected rows' reasons, in the API's vocabulary (0-based paths)."""
        return [
            {"path": path(line["row"] - 1, e["field"]), "reason": e["reason"]}
            for line in self.errors
            for e in line["errors"]
        ]


def path(position: int, field: str | None) -> str:
    return f"instances[{position}]" + (f".{field}" if field is not None else "")


# --- writing the same rows as files -------------------------------------------------------------


SPELLINGS = st.sampled_from(["shortest", "exponent", "padded"])


def cell_text(value: Any, spelling: str) -> str:
    """A JSON-like value as the text of a CSV cell: null is empty, a number is spelled the
    shortest way, in exponent form with 17 digits, or padded with spaces (all read back the
    same by ``float``)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if spelling == "exponent":
        return f"{float(value):.17e}"
    text = repr(value)
    return f" {text} " if spelling == "padded" else text


def cell(value: Any, spelling: str, quote_all: bool) -> str:
    """The cell as written in the file (RFC 4180 quoting where needed, or everywhere)."""
    text = cell_text(value, spelling)
    if (text and quote_all) or any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_file(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], spelling: str, quote_all: bool
) -> str:
    lines = [",".join(columns)]
    lines += [",".join(cell(row[c], spelling, quote_all) for c in columns) for row in rows]
    text = "\n".join(lines) + "\n"
    # the file says what we mean (the csv module reads it back so), so a difference is the job's
    read = list(csv.reader(io.StringIO(text, newline="")))
    assert read == [
        list(columns),
        *([cell_text(row[c], spelling) for c in columns] for row in rows),
    ]
    return text


def jsonl_file(rows: Sequence[Any]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def new_key(suffix: str) -> str:
    return f"incoming/same-answer/{next(KEYS)}{suffix}"


# --- rows the schema admits ---------------------------------------------------------------------


def number(feature: Feature) -> st.SearchStrategy[Any]:
    """Finite numbers float32 holds: the training range, a wide range, integers; missing ones
    (null, or NaN, which the schema takes for missing) where the feature may be missing."""
    assert feature.min is not None and feature.max is not None
    numbers: st.SearchStrategy[Any] = st.one_of(
        st.floats(feature.min, feature.max),
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
        st.integers(-1_000_000, 1_000_000),
    )
    return (numbers | st.none() | st.just(math.nan)) if feature.nullable else numbers


def unseen(feature: Feature) -> st.SearchStrategy[str]:
    """Any text that is not a training category and that a CSV cell can tell from missing."""
    return st.text(min_size=1, max_size=12).filter(lambda s: s not in (feature.categories or ()))


def near_miss(feature: Feature) -> st.SearchStrategy[str]:
    """A training category with another case or surrounding spaces: unseen, for both doors."""
    spoilt = [str.upper, str.lower, lambda c: f" {c}", lambda c: f"{c} ", lambda c: f"\t{c}"]
    return st.tuples(st.sampled_from(feature.categories or []), st.sampled_from(spoilt)).map(
        lambda pair: pair[1](pair[0])
    )


def category(feature: Feature) -> st.SearchStrategy[Any]:
    seen = st.sampled_from(feature.categories or [])
    values = seen | near_miss(feature).filter(lambda s: s not in (feature.categories or ()))
    values |= unseen(feature)
    return values | st.none() if feature.nullable else values


def admitted(feature: Feature) -> st.SearchStrategy[Any]:
    return number(feature) if feature.kind == "numeric" else category(feature)


assert {f.kind for f in FEATURES} <= {"numeric", "categorical"}, "strategies cover these kinds"
VALID_ROW = st.fixed_dictionaries({f.name: admitted(f) for f in FEATURES})


# --- mistakes -------------------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
JSON_CONTAINERS = st.lists(st.integers(), max_size=2) | st.dictionaries(
    st.text(max_size=3), st.integers(), max_size=2
)


def wrong_json(feature: Feature) -> st.SearchStrategy[Any]:
    """A JSON value of the wrong type for the feature (or null where it may not be missing)."""
    if feature.kind == "numeric":
        wrong = st.text(max_size=8) | st.booleans() | JSON_CONTAINERS
        wrong |= st.sampled_from([math.inf, -math.inf])
    else:
        wrong = st.integers() | st.floats() | st.booleans() | JSON_CONTAINERS
    return wrong if feature.nullable else wrong | st.none()


@st.composite
def json_mistake(draw: st.DrawFn) -> Any:
    """A row with at least one mistake JSON can make: a wrong type, a missing or unknown
    feature, or a row that is not an object at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON_SCALARS | st.lists(st.integers(), max_size=2))
    row: dict[str, Any] = draw(VALID_ROW)
    for kind in draw(st.lists(st.sampled_from(["type", "missing", "unknown"]), min_size=1)):
        if kind == "type":
            feature = draw(st.sampled_from(FEATURES))
            row[feature.name] = draw(wrong_json(feature))
        elif kind == "missing":
            row.pop(draw(st.sampled_from(NAMES)), None)
        else:
            row[draw(st.text(max_size=8).filter(lambda k: k not in NAMES))] = draw(JSON_SCALARS)
    return row


def not_a_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


WORDS = st.sampled_from(["long", "n/a", "12 kg", "1,5", "-", " ", '"5"']) | st.text(
    min_size=1, max_size=10
).filter(not_a_number)


def wrong_text(feature: Feature) -> st.SearchStrategy[Any]:
    """A mistake a CSV cell makes the same way as a JSON value: a word (a JSON string) where a
    number belongs, a non-finite number, an empty cell (null) where a value is required."""
    if feature.kind == "numeric":
        wrong = WORDS | st.sampled_from([math.inf, -math.inf])
        return wrong if feature.nullable else wrong | st.none()
    assert not feature.nullable
    return st.none()


TEXT_MISTAKEN = {f.name: f for f in FEATURES if f.kind == "numeric" or not f.nullable}


@st.composite
def text_mistake(draw: st.DrawFn) -> dict[str, Any]:
    row: dict[str, Any] = draw(VALID_ROW)
    for name in draw(st.lists(st.sampled_from(sorted(TEXT_MISTAKEN)), min_size=1, unique=True)):
        row[name] = draw(wrong_text(TEXT_MISTAKEN[name]))
    return row


def mixed(mistake: st.SearchStrategy[Any]) -> st.SearchStrategy[list[tuple[bool, Any]]]:
    """Good and bad rows in any order, at least one bad: ``(valid, row)`` pairs."""
    good = st.lists(VALID_ROW, max_size=10).map(lambda rows: [(True, r) for r in rows])
    bad = st.lists(mistake, min_size=1, max_size=6).map(lambda rows: [(False, r) for r in rows])
    return st.tuples(good, bad).flatmap(lambda gb: st.permutations(gb[0] + gb[1]))


CHUNK_ROWS = st.sampled_from([10_000, 1, 3, 7])  # one chunk, or rows split across chunks


# --- comparing ------------------------------------------------------------------------------------


def assert_same_predictions(
    online: list[dict[str, Any]], batch: list[tuple[int, str, dict[str, float]]], rows: list[int]
) -> None:
    """The batch answers are the online ones, for the 1-based ``rows``, in order."""
    assert [n for n, _, _ in batch] == rows
    assert [label for _, label, _ in batch] == [str(p["label"]) for p in online]
    got = np.array([[p[c] for c in CLASSES] for _, _, p in batch], dtype=np.float64)
    want = np.array([[p["probabilities"][c] for c in CLASSES] for p in online], dtype=np.float64)
    assert got.shape == want.shape
    if len(rows):
        np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)


NOTED = ("unseen_categories", "outside_training_range")  # what a job record counts, by feature


def note_counts(answer: dict[str, Any]) -> dict[str, dict[str, int]]:
    """The API's notes counted by feature, as a job record counts them: unseen categories and
    numbers outside the training range (of the notes listed: the first 100)."""
    counts: dict[str, Counter[str]] = {
        "unseen_categories": Counter(),
        "outside_training_range": Counter(),
    }
    for note in answer["notes"]:
        outside = note["reason"].startswith("outside the training range ")
        kind = "outside_training_range" if outside else "unseen_categories"
        counts[kind][note["path"].split(".", 1)[1]] += 1
    return {kind: dict(by_field) for kind, by_field in counts.items()}


# --- the properties -------------------------------------------------------------------------------


@PROPERTY
@given(
    rows=st.lists(VALID_ROW, min_size=1, max_size=20),
    columns=st.permutations(NAMES),
    spelling=SPELLINGS,
    quote_all=st.booleans(),
    chunk_rows=CHUNK_ROWS,
)
def test_valid_rows_get_the_same_answer_online_and_in_both_batch_formats(
    api: ModuleType,
    s3: Any,
    rows: list[dict[str, Any]],
    columns: list[str],
    spelling: str,
    quote_all: bool,
    chunk_rows: int,
) -> None:
    # Given rows the schema admits, as one request, one JSON Lines file and one CSV file
    # (columns in any order, numbers spelled one of several ways, cells quoted only where
    # needed or all of them), read in one chunk or several
    # When the API answers the request and the batch job scores both files
    status, online = ask_online(api, rows)
    jsonl = BatchRun(s3, new_key(".jsonl"), jsonl_file(rows), chunk_rows)
    text = BatchRun(s3, new_key(".csv"), csv_file(rows, columns, spelling, quote_all), chunk_rows)
    # Then every door scores every row: the same labels and probabilities, rows 1..n in order
    assert status == 200, online
    numbers = list(range(1, len(rows) + 1))
    assert_same_predictions(online["predictions"], jsonl.answers(), numbers)
    assert_same_predictions(online["predictions"], text.answers(), numbers)
    # and nothing is rejected; the categories and the numbers outside the training range that
    # the API remarks on are the ones batch counts
    noted, omitted = note_counts(online), online.get("notes_omitted", 0)
    for run in (jsonl, text):
        assert run.errors == []
        assert run.record["rows"] == {"read": len(rows), "scored": len(rows), "rejected": 0}
        counted = {kind: run.record.get(kind, {}) for kind in NOTED}
        if not omitted:
            assert counted == noted
        else:  # the answer lists the first 100 notes and counts the others
            total = sum(n for by_field in counted.values() for n in by_field.values())
            assert total == len(online["notes"]) + omitted
            for kind in NOTED:
                for field, n in noted[kind].items():
                    assert n <= counted[kind][field]


@PROPERTY
@given(rows=mixed(json_mistake()), chunk_rows=CHUNK_ROWS)
def test_json_mistakes_get_the_same_reasons_online_and_in_json_lines(
    api: ModuleType, s3: Any, rows: list[tuple[bool, Any]], chunk_rows: int
) -> None:
    # Given good rows and rows with type mistakes, missing or unknown features, or no object
    instances = [row for _, row in rows]
    good = [i for i, (valid, _) in enumerate(rows) if valid]
    bad = [i for i, (valid, _) in enumerate(rows) if not valid]
    # When the API gets them in one request and the batch job gets them as a JSON Lines file
    status, online = ask_online(api, instances)
    run = BatchRun(s3, new_key(".jsonl"), jsonl_file(instances), chunk_rows)
    # Then the API refuses the request naming every reason batch gives, in the same words
    assert status == 422, online
    assert online["errors"] == run.reasons()
    assert [line["row"] - 1 for line in run.errors] == bad
    # and batch scores the good rows as the API scores them alone
    alone = online_predictions(api, [instances[i] for i in good])
    assert_same_predictions(alone, run.answers(), [i + 1 for i in good])


@PROPERTY
@given(
    rows=mixed(text_mistake()),
    columns=st.permutations(NAMES),
    spelling=SPELLINGS,
    quote_all=st.booleans(),
    chunk_rows=CHUNK_ROWS,
)
def test_text_mistakes_get_the_same_reasons_online_and_in_csv(
    api: ModuleType,
    s3: Any,
    rows: list[tuple[bool, dict[str, Any]]],
    columns: list[str],
    spelling: str,
    quote_all: bool,
    chunk_rows: int,
) -> None:
    # Given good rows and rows with mistakes a CSV cell makes as a JSON value does: a word
    # where a number belongs, a non-finite number, an empty cell where a value is required
    instances = [row for _, row in rows]
    good = [i for i, (valid, _) in enumerate(rows) if valid]
    bad = [i for i, (valid, _) in enumerate(rows) if not valid]
    # When the API gets them as JSON and the batch job as a CSV file
    status, online = ask_online(api, instances)
    file = csv_file(instances, columns, spelling, quote_all)
    run = BatchRun(s3, new_key(".csv"), file, chunk_rows)
    # Then both give the same reasons for the same rows and fields
    assert status == 422, online
    assert online["errors"] == run.reasons()
    assert [line["row"] - 1 for line in run.errors] == bad
    # and batch scores the good rows as the API scores them alone
    alone = online_predictions(api, [instances[i] for i in good])
    assert_same_predictions(alone, run.answers(), [i + 1 for i in good])
