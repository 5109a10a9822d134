"""The batch function on moto: every row scored or rejected, exactly once, nothing half-written."""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus

import boto3
import numpy as np
import pytest
from moto import mock_aws

from sklambda.model import load
from sklambda_tools.examples import penguins
from sklambda_tools.local import (
    LambdaContext,
    load_handler,
    load_template,
    new_execution_environment,
    resolve_sub,
)
from sklambda_tools.package import frame_to_records

from support import EVENTS, PENGUINS_DIR, REPO, job_outputs

HANDLER = REPO / "functions" / "batch" / "app.py"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
FEATURES = penguins.FEATURES
MODEL = load(PENGUINS_DIR)
BIRDS = frame_to_records(penguins.load_frame(), MODEL.manifest.features)


def bucket_name() -> str:
    """The data bucket's name as template.yaml builds it."""
    template = load_template(REPO / "template.yaml")
    expr = template["Resources"]["DataBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    return resolve_sub(template, expr, {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION})


BUCKET = bucket_name()


def csv_text(rows: list[dict[str, Any]], columns: list[str] = FEATURES, newline: str = "\n") -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return out.getvalue()


def jsonl_text(rows: list[Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@dataclass
class Outputs:
    predictions: bytes | None
    errors: str | None
    record: dict[str, Any] | None

    def prediction_rows(self, compressed: bool = False) -> list[dict[str, str]]:
        assert self.predictions is not None
        data = gzip.decompress(self.predictions) if compressed else self.predictions
        return list(csv.DictReader(io.StringIO(data.decode())))

    def error_lines(self) -> list[dict[str, Any]]:
        assert self.errors is not None
        return [json.loads(line) for line in self.errors.splitlines()]


class Env:
    """A mocked account: the data bucket, the dead-letter queue, and the batch function."""

    def __init__(self, s3: Any, sqs: Any, queue_url: str, app: ModuleType) -> None:
        self.s3, self.sqs, self.queue_url, self.app = s3, sqs, queue_url, app

    def drop(self, key: str, body: bytes | str) -> dict[str, Any]:
        """Upload under ``key`` and return the S3 event the notification would send."""
        data = body.encode() if isinstance(body, str) else body
        put = self.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        return self.event(key, put["ETag"].strip('"'), len(data), put.get("VersionId"))

    def event(self, key: str, etag: str, size: int, version: str | None) -> dict[str, Any]:
        event = copy.deepcopy(json.loads((EVENTS / "s3-put-csv.json").read_text()))
        event["Records"][0]["s3"]["bucket"]["name"] = BUCKET
        obj = event["Records"][0]["s3"]["object"]
        obj.update({"key": quote_plus(key, safe="/"), "eTag": etag, "size": size})
        if version:
            obj["versionId"] = version
        return event

    def invoke(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = self.app.lambda_handler(
            event, context or LambdaContext(function_name="batch", timeout_seconds=900)
        )
        return result

    def outputs(self, key: str) -> Outputs:
        predictions, errors, record = job_outputs(self.s3, BUCKET, key)
        return Outputs(predictions, errors.decode() if errors is not None else None, record)

    def dead_letters(self) -> list[dict[str, Any]]:
        got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]

    def pending_uploads(self) -> list[Any]:
        uploads: list[Any] = self.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        return uploads


@pytest.fixture
def make_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Env]]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="batch-dlq")["QueueUrl"]

        def make(**env: str) -> Env:
            monkeypatch.setenv("SKLAMBDA_MODEL_DIR", str(PENGUINS_DIR))
            monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "batch")
            monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "sklambda-test")
            monkeypatch.setenv("SKLAMBDA_DEAD_LETTER_QUEUE_URL", queue_url)
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            return Env(s3, sqs, queue_url, load_handler(HANDLER))

        yield make
        new_execution_environment()


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


def expected_labels(rows: list[dict[str, Any]]) -> list[str]:
    return [str(x) for x in MODEL.predict(rows).tolist()]


# --- the happy paths ----------------------------------------------------------------------------


def test_a_csv_file_is_scored_in_full(env: Env) -> None:
    # Given a CSV file of every bird
    key = "incoming/penguins/all.csv"
    # When it is dropped in the bucket
    result = env.invoke(env.drop(key, csv_text(BIRDS)))
    # Then every row is scored, in order, with the model's labels and probabilities
    out = env.outputs(key)
    assert result == {"results": [{"key": key, "status": "succeeded", "reason": None}]}
    rows = out.prediction_rows()
    assert [int(r["row"]) for r in rows] == list(range(1, len(BIRDS) + 1))
    assert [r["label"] for r in rows] == expected_labels(BIRDS)
    proba = MODEL.predict_proba(BIRDS)
    got = np.array([[float(r[f"probability_{c}"]) for c in MODEL.classes or []] for r in rows])
    # the onnx runtime computes in float32: nine digits give back every float32 exactly
    np.testing.assert_array_equal(got.astype(np.float32), proba.astype(np.float32))
    assert out.errors == ""
    record = out.record
    assert record is not None
    assert record["status"] == "succeeded"
    assert record["rows"] == {"read": len(BIRDS), "scored": len(BIRDS), "rejected": 0}
    assert record["model"] == {"name": "penguins", "version": MODEL.version, "runtime": "onnx"}
    assert record["source"]["bucket"] == BUCKET and record["source"]["key"] == key
    assert record["source"]["version_id"] and record["source"]["etag"]
    assert record["outputs"] == {
        "predictions": "predictions/penguins/all.csv",
        "errors": "errors/penguins/all.csv.jsonl",
    }
    # two birds of the holdout have longer bills than any the model was trained on
    assert record["outside_training_range"] == {"bill_length_mm": 2}
    assert "unseen_categories" not in record


def test_a_json_lines_file_gives_json_lines_with_the_online_answers(env: Env) -> None:
    from sklambda.scoring import predict_all

    key = "incoming/penguins/some.jsonl"
    env.invoke(env.drop(key, jsonl_text(BIRDS[:50])))
    out = env.outputs(key)
    assert out.predictions is not None
    lines = [json.loads(line) for line in out.predictions.decode().splitlines()]
    online = predict_all(MODEL, BIRDS[:50]).predictions()
    assert lines == [{"row": i + 1, **p} for i, p in enumerate(online)]


def test_a_mixed_file_keeps_the_good_rows_and_explains_the_bad(env: Env) -> None:
    # Given good rows around bad ones: a word for a number, a missing island, a short row
    key = "incoming/mixed.csv"
    text = csv_text(BIRDS[:3])
    text += "Dream,long,18.0,190,3500,male\n"
    text += ",40.0,18.0,190,3500,female\n"
    text += "Biscoe,45.0\n"
    text += csv_text(BIRDS[3:5]).split("\n", 1)[1]
    env.invoke(env.drop(key, text))
    out = env.outputs(key)
    # Then the good rows are scored and each bad one is in the errors file with every reason
    assert [int(r["row"]) for r in out.prediction_rows()] == [1, 2, 3, 7, 8]
    errors = out.error_lines()
    assert [e["row"] for e in errors] == [4, 5, 6]
    assert errors[0]["errors"] == [
        {"field": "bill_length_mm", "reason": "expected a number, got a string"}
    ]
    assert errors[0]["raw"]["bill_length_mm"] == "long"
    assert errors[1]["errors"] == [{"field": "island", "reason": "must not be null"}]
    assert errors[2] == {
        "row": 6,
        "raw": ["Biscoe", "45.0"],
        "errors": [{"field": None, "reason": "expected 6 fields, got 2"}],
    }
    assert out.record is not None
    assert out.record["rows"] == {"read": 8, "scored": 5, "rejected": 3}
    assert "unseen_categories" not in out.record
    assert "outside_training_range" not in out.record


def test_rows_with_unseen_categories_are_scored_and_counted(env: Env) -> None:
    rows = [
        {**BIRDS[0], "island": "Anvers"},
        {**BIRDS[1], "island": "Anvers", "sex": "unknown"},
        BIRDS[2],
    ]
    env.invoke(env.drop("incoming/new-islands.csv", csv_text(rows)))
    env.invoke(env.drop("incoming/new-islands.jsonl", jsonl_text(rows)))
    for key in ("incoming/new-islands.csv", "incoming/new-islands.jsonl"):
        record = env.outputs(key).record
        assert record is not None
        assert record["rows"] == {"read": 3, "scored": 3, "rejected": 0}
        assert record["unseen_categories"] == {"island": 2, "sex": 1}


@pytest.mark.parametrize(
    ("chunk_rows", "bad"),
    # one clean chunk (validated column-wise), or chunks of three with an unseen category and a
    # bad row (validated row by row)
    [("10000", False), ("3", True)],
)
def test_rows_outside_the_training_range_are_scored_and_counted(
    make_env: Callable[..., Env], chunk_rows: str, bad: bool
) -> None:
    from sklambda.scoring import predict_all

    env = make_env(SKLAMBDA_CHUNK_ROWS=chunk_rows)
    # Given birds with bills longer or shorter than in training, one far too heavy, one on the
    # training range's bounds (and perhaps one on an unseen island, and a bad row, heavy too)
    rows = [dict(b) for b in BIRDS[4:14]]
    rows[1]["bill_length_mm"] = 59.6
    rows[4].update(bill_length_mm=20.0, body_mass_g=9000.0)
    rows[6].update(bill_length_mm=55.9, body_mass_g=2700.0)
    rows[8].update(bill_length_mm=61.0, island="Anvers" if bad else rows[8]["island"])
    scored = list(rows)
    if bad:
        rows.insert(5, {**BIRDS[5], "body_mass_g": 9000.0, "bill_depth_mm": "deep"})
    files = {"incoming/long-bills.csv": csv_text, "incoming/long-bills.jsonl": jsonl_text}
    for key, text in files.items():
        event = env.drop(key, text(rows))
        env.invoke(event)
        out = env.outputs(key)
        record = out.record
        assert record is not None
        # Then every good row is scored as online, and the job record counts, by feature, the
        # rows scored with a number outside the training range, apart from unseen categories
        assert record["rows"] == {
            "read": len(rows),
            "scored": len(scored),
            "rejected": int(bad),
        }
        assert record["outside_training_range"] == {"bill_length_mm": 3, "body_mass_g": 1}
        assert record.get("unseen_categories") == ({"island": 1} if bad else None)
        online = [str(p["label"]) for p in predict_all(MODEL, scored).predictions()]
        assert out.predictions is not None
        if key.endswith(".csv"):
            labels = [r["label"] for r in out.prediction_rows()]
        else:
            labels = [json.loads(line)["label"] for line in out.predictions.decode().splitlines()]
        assert labels == online
        # And a second delivery counts nothing twice
        assert env.invoke(event)["results"][0]["status"] == "duplicate"
        assert env.outputs(key).record == record


def test_the_same_mistake_gets_the_same_text_online_and_in_batch(env: Env) -> None:
    from sklambda.errors import InvalidInput
    from sklambda.scoring import predict_all

    bad = {**BIRDS[0], "bill_length_mm": "long", "sex": 3}
    key = "incoming/same.jsonl"
    env.invoke(env.drop(key, jsonl_text([bad])))
    batch_reasons = env.outputs(key).error_lines()[0]["errors"]
    with pytest.raises(InvalidInput) as caught:
        predict_all(MODEL, [bad])
    assert batch_reasons == [{"field": e.field, "reason": e.reason} for e in caught.value.errors]


@pytest.mark.parametrize(("suffix", "text"), [(".csv.gz", csv_text), (".jsonl.gz", jsonl_text)])
def test_gzip_in_gives_gzip_out(env: Env, suffix: str, text: Callable[..., str]) -> None:
    key = f"incoming/zipped{suffix}"
    env.invoke(env.drop(key, gzip.compress(text(BIRDS[:20]).encode())))
    out = env.outputs(key)
    assert out.predictions is not None and out.predictions[:2] == b"\x1f\x8b"
    body = gzip.decompress(out.predictions).decode()
    assert len(body.strip().splitlines()) == 20 + (1 if suffix.startswith(".csv") else 0)
    assert out.record is not None and out.record["rows"]["scored"] == 20


def test_an_id_column_is_passed_through(make_env: Callable[..., Env]) -> None:
    env = make_env(SKLAMBDA_PASSTHROUGH_COLUMNS="bird")
    rows = [{**b, "bird": f"tag, {i}"} for i, b in enumerate(BIRDS[:4])]
    env.invoke(env.drop("incoming/ids.csv", csv_text(rows, ["bird", *FEATURES])))
    env.invoke(env.drop("incoming/ids.jsonl", jsonl_text(rows)))
    assert [r["bird"] for r in env.outputs("incoming/ids.csv").prediction_rows()] == [
        r["bird"] for r in rows
    ]
    predictions = env.outputs("incoming/ids.jsonl").predictions
    assert predictions is not None
    assert [json.loads(x)["bird"] for x in predictions.decode().splitlines()] == [
        r["bird"] for r in rows
    ]


# --- exactly once -------------------------------------------------------------------------------


def test_a_duplicate_delivery_is_a_no_op(env: Env) -> None:
    key = "incoming/twice.csv"
    event = env.drop(key, csv_text(BIRDS[:10]))
    env.invoke(event)
    first = env.outputs(key).record
    # When S3 delivers the same event again
    again = env.invoke(event)
    # Then nothing is written twice
    assert again["results"][0]["status"] == "duplicate"
    assert env.outputs(key).record == first
    versions = env.s3.list_object_versions(Bucket=BUCKET, Prefix="predictions/twice.csv")
    assert len(versions["Versions"]) == 1


def test_a_new_version_of_the_file_is_scored_again(env: Env) -> None:
    key = "incoming/daily.csv"
    env.invoke(env.drop(key, csv_text(BIRDS[:10])))
    env.invoke(env.drop(key, csv_text(BIRDS[:25])))
    out = env.outputs(key)
    assert out.record is not None and out.record["rows"]["scored"] == 25
    assert len(out.prediction_rows()) == 25


def test_every_record_of_an_event_is_handled(env: Env) -> None:
    first = env.drop("incoming/a.csv", csv_text(BIRDS[:3]))
    second = env.drop("incoming/b.jsonl", jsonl_text(BIRDS[:4]))
    event = {"Records": first["Records"] + second["Records"]}
    result = env.invoke(event)
    assert [r["status"] for r in result["results"]] == ["succeeded", "succeeded"]
    assert len(env.outputs("incoming/a.csv").prediction_rows()) == 3


# --- the committed events -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "body", "status"),
    [
        ("s3-put-csv.json", csv_text(BIRDS[:5]), "succeeded"),
        ("s3-put-jsonl.json", jsonl_text(BIRDS[:5]), "succeeded"),
        ("s3-put-encoded-key.json", csv_text(BIRDS[:5]), "succeeded"),
        ("s3-put-outside-incoming.json", csv_text(BIRDS[:5]), "ignored"),
    ],
)
def test_each_committed_s3_event(env: Env, name: str, body: str, status: str) -> None:
    # Given the object each event announces (the event's key is URL-encoded, as S3 sends it)
    event = json.loads((EVENTS / name).read_text())
    obj = event["Records"][0]["s3"]["object"]
    from urllib.parse import unquote_plus

    key = unquote_plus(obj["key"])
    put = env.s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode())
    obj.update({"eTag": put["ETag"].strip('"'), "size": len(body), "versionId": put["VersionId"]})
    event["Records"][0]["s3"]["bucket"]["name"] = BUCKET
    # When the function gets it
    result = env.invoke(event)
    # Then it is scored under the decoded key, or ignored when outside incoming/
    assert result["results"] == [
        {"key": key, "status": status, "reason": result["results"][0]["reason"]}
    ]
    if status == "succeeded":
        assert len(env.outputs(key).prediction_rows() if key.endswith(".csv") else [1] * 5) == 5
        assert env.outputs(key).record is not None
    else:
        listed = env.s3.list_objects_v2(Bucket=BUCKET, Prefix="manifests/")
        assert listed.get("KeyCount", 0) == 0


def test_the_encoded_key_event_decodes_plus_percent_and_unicode() -> None:
    from urllib.parse import unquote_plus

    event = json.loads((EVENTS / "s3-put-encoded-key.json").read_text())
    assert (
        unquote_plus(event["Records"][0]["s3"]["object"]["key"])
        == "incoming/field notes/Drønning Maud Land.csv"
    )


def test_every_s3_event_is_exercised() -> None:
    names = {p.name for p in EVENTS.glob("*.json") if json.loads(p.read_text()).get("Records")}
    assert names == {
        "s3-put-csv.json",
        "s3-put-jsonl.json",
        "s3-put-encoded-key.json",
        "s3-put-outside-incoming.json",
    }


# --- files that cannot be scored ----------------------------------------------------------------


def failed(env: Env, key: str, body: bytes | str) -> dict[str, Any]:
    """Drop a file that must fail: its record says why, nothing else is written, the DLQ
    has it, and no multipart upload is left behind."""
    result = env.invoke(env.drop(key, body))
    assert result["results"][0]["status"] == "failed"
    out = env.outputs(key)
    assert out.predictions is None and out.errors is None
    assert env.pending_uploads() == []
    assert out.record is not None and out.record["status"] == "failed"
    assert out.record["retryable"] is False
    letters = env.dead_letters()
    assert [letter["reason"] for letter in letters] == [out.record["reason"]]
    assert letters[0]["record"].endswith(f"manifests/{key[len('incoming/') :]}.json")
    return out.record


@pytest.mark.parametrize(
    ("key", "body", "reason"),
    [
        ("incoming/empty.csv", "", "the file is empty"),
        ("incoming/empty.jsonl", "", "the file is empty"),
        ("incoming/header.csv", ",".join(FEATURES) + "\n", "the file has a header but no rows"),
        (
            "incoming/latin1.csv",
            csv_text([{**BIRDS[0], "island": "Dream"}])
            .replace("Dream", "Dr\xf8am")
            .encode("latin-1"),
            "the file is not UTF-8 text",
        ),
        (
            "incoming/corrupt.csv.gz",
            gzip.compress(csv_text(BIRDS[:50]).encode())[:-30] + b"\x00" * 30,
            "the file is not valid gzip",
        ),
        ("incoming/notgzip.csv.gz", csv_text(BIRDS[:5]), "the file is not valid gzip"),
    ],
)
def test_a_bad_file_fails_with_its_reason(
    env: Env, key: str, body: bytes | str, reason: str
) -> None:
    assert failed(env, key, body)["reason"].startswith(reason)


def test_missing_columns_are_named(env: Env) -> None:
    columns = [c for c in FEATURES if c not in ("sex", "body_mass_g")]
    record = failed(env, "incoming/narrow.csv", csv_text(BIRDS[:5], columns))
    assert record["reason"] == "missing required columns ['body_mass_g', 'sex']"


def test_unknown_columns_are_rejected_when_asked(make_env: Callable[..., Env]) -> None:
    rows = [{**b, "colour": "black"} for b in BIRDS[:5]]
    strict = make_env(SKLAMBDA_UNKNOWN_COLUMNS="reject")
    record = failed(strict, "incoming/wide.csv", csv_text(rows, [*FEATURES, "colour"]))
    assert record["reason"].startswith("unknown columns ['colour']")


def test_unknown_columns_are_ignored_by_default(env: Env) -> None:
    rows = [{**b, "colour": "black"} for b in BIRDS[:5]]
    env.invoke(env.drop("incoming/wide2.csv", csv_text(rows, [*FEATURES, "colour"])))
    env.invoke(env.drop("incoming/wide2.jsonl", jsonl_text(rows)))
    for key in ("incoming/wide2.csv", "incoming/wide2.jsonl"):
        out = env.outputs(key)
        assert out.record is not None and out.record["ignored_columns"] == ["colour"]
        assert out.record["settings"]["unknown_columns"] == "ignore"
        assert out.record["rows"] == {"read": 5, "scored": 5, "rejected": 0}


def test_an_object_deleted_before_it_is_read(env: Env) -> None:
    key = "incoming/gone.csv"
    event = env.drop(key, csv_text(BIRDS[:5]))
    env.s3.delete_object(
        Bucket=BUCKET, Key=key, VersionId=event["Records"][0]["s3"]["object"]["versionId"]
    )
    result = env.invoke(event)
    assert result["results"][0]["status"] == "failed"
    record = env.outputs(key).record
    assert record is not None and record["reason"].startswith("the object no longer exists")
    assert len(env.dead_letters()) == 1


def test_a_repeated_permanent_failure_is_not_processed_again(env: Env) -> None:
    event = env.drop("incoming/empty-again.csv", "")
    env.invoke(event)
    assert env.invoke(event)["results"][0]["status"] == "duplicate"
    assert len(env.dead_letters()) == 1


# --- awkward but valid text ---------------------------------------------------------------------


def test_bom_crlf_and_quoted_fields_are_read(make_env: Callable[..., Env]) -> None:
    env = make_env(SKLAMBDA_PASSTHROUGH_COLUMNS="note")
    rows = [
        {**b, "note": text}
        for b, text in zip(BIRDS[:3], ['a, "b"', "two\nlines", "plain"], strict=True)
    ]
    body = "\ufeff" + csv_text(rows, ["note", *FEATURES], newline="\r\n")
    env.invoke(env.drop("incoming/windows.csv", body.encode("utf-8")))
    out = env.outputs("incoming/windows.csv")
    got = out.prediction_rows()
    assert [r["note"] for r in got] == ['a, "b"', "two\nlines", "plain"]
    assert [r["label"] for r in got] == expected_labels(BIRDS[:3])
    assert out.record is not None and out.record["rows"]["rejected"] == 0


def test_a_broken_json_line_is_a_rejected_row(env: Env) -> None:
    text = (
        jsonl_text(BIRDS[:2])
        + '{"island": "Dream", \n'
        + "\n"
        + jsonl_text(BIRDS[2:4])
        + "[1, 2]\n"
    )
    env.invoke(env.drop("incoming/broken.jsonl", text))
    out = env.outputs("incoming/broken.jsonl")
    errors = out.error_lines()
    assert [e["row"] for e in errors] == [3, 7]
    assert errors[0]["errors"][0]["reason"].startswith("not valid JSON")
    assert errors[1]["errors"] == [{"field": None, "reason": "expected an object, got an array"}]
    assert out.record is not None
    assert out.record["rows"] == {"read": 6, "scored": 4, "rejected": 2}


# --- stopping cleanly ---------------------------------------------------------------------------


class ShrinkingContext(LambdaContext):
    """A context whose remaining time collapses after a few checks."""

    def __init__(self, checks_before_short: int) -> None:
        super().__init__(function_name="batch", timeout_seconds=900)
        self.left = checks_before_short

    def get_remaining_time_in_millis(self) -> int:
        self.left -= 1
        return 600_000 if self.left >= 0 else 5_000


def test_the_time_guard_stops_cleanly_and_records_the_row(
    make_env: Callable[..., Env], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sklambda.batchio.PART_SIZE", 5 * 1024 * 1024)
    env = make_env(SKLAMBDA_CHUNK_ROWS="20000")
    rows = [BIRDS[i % len(BIRDS)] for i in range(100_000)]  # ~5.6 MB: at least one part uploaded
    key = "incoming/long.csv"
    # one check when the job claims the file (its deadline), then one per chunk
    result = env.invoke(env.drop(key, csv_text(rows)), ShrinkingContext(checks_before_short=4))
    assert result["results"][0]["status"] == "failed"
    out = env.outputs(key)
    assert out.record is not None and out.record["row_reached"] == 60_000
    assert "stopped after row 60000" in out.record["reason"]
    assert out.predictions is None and env.pending_uploads() == []
    assert len(env.dead_letters()) == 1


def test_an_s3_failure_aborts_the_uploads_and_is_raised_for_a_retry(
    make_env: Callable[..., Env], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sklambda.batchio.PART_SIZE", 5 * 1024 * 1024)
    env = make_env(SKLAMBDA_CHUNK_ROWS="20000")
    rows = [BIRDS[i % len(BIRDS)] for i in range(100_000)]
    key = "incoming/flaky.csv"
    event = env.drop(key, csv_text(rows))
    from sklambda import aws

    function_s3 = aws.client("s3")  # the function's own client
    real = function_s3.complete_multipart_upload

    def broken(**kwargs: Any) -> Any:
        raise function_s3.exceptions.ClientError(
            {"Error": {"Code": "InternalError", "Message": "try again"}}, "CompleteMultipartUpload"
        )

    monkeypatch.setattr(function_s3, "complete_multipart_upload", broken)
    with pytest.raises(Exception, match="InternalError"):
        env.invoke(event)
    out = env.outputs(key)
    assert out.predictions is None and env.pending_uploads() == []
    assert out.record is not None and out.record["retryable"] is True
    # And Lambda's retry succeeds
    monkeypatch.setattr(function_s3, "complete_multipart_upload", real)
    assert env.invoke(event)["results"][0]["status"] == "succeeded"
    assert len(env.outputs(key).prediction_rows()) == 100_000


def test_a_file_of_200000_rows_loses_no_row(make_env: Callable[..., Env]) -> None:
    env = make_env(SKLAMBDA_CHUNK_ROWS="25000")
    rows = [BIRDS[i % len(BIRDS)] for i in range(200_000)]
    lines = csv_text(rows).splitlines(keepends=True)
    lines[1000] = "Dream,x,1,2,3,male\n"  # one bad row among them
    env.invoke(env.drop("incoming/big.csv", "".join(lines)))
    out = env.outputs("incoming/big.csv")
    assert out.record is not None
    assert out.record["rows"] == {"read": 200_000, "scored": 199_999, "rejected": 1}
    assert [e["row"] for e in out.error_lines()] == [1000]
    predicted = out.prediction_rows()
    assert len(predicted) == 199_999
    assert predicted[-1]["row"] == "200000"


def test_batch_metrics(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    env.invoke(env.drop("incoming/m.csv", csv_text(BIRDS[:10]) + "Dream,x,1,2,3,male\n"))
    env.invoke(env.drop("incoming/m2.csv", ""))
    blobs = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith('{"_aws"')
    ]
    # the lines an alarm reads carry the service alone (the model's version changes per deploy)
    alarm_lines = [b for b in blobs if "ModelName" not in b]
    assert [b["FilesFailed"] for b in alarm_lines] == [0.0, 1.0]
    assert all(
        b["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]] for b in alarm_lines
    )
    totals: dict[str, float] = {}
    for blob in blobs:
        if "ModelName" not in blob:
            continue
        assert blob["ModelVersion"] == MODEL.version
        for name in ("FilesProcessed", "FilesFailed", "RowsScored", "RowsRejected"):
            if name in blob:
                value = blob[name]
                totals[name] = totals.get(name, 0) + sum(
                    value if isinstance(value, list) else [value]
                )
        assert "BatchDuration" in blob
    assert totals == {"FilesProcessed": 1, "FilesFailed": 1, "RowsScored": 10, "RowsRejected": 1}


def test_each_file_gets_drift_statistics_and_metrics(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the training-like birds, and the same birds heavier
    env.invoke(env.drop("incoming/usual.csv", csv_text(BIRDS)))
    heavy = [
        {**b, "body_mass_g": None if b["body_mass_g"] is None else b["body_mass_g"] * 1.3}
        for b in BIRDS
    ]
    env.invoke(env.drop("incoming/heavy.csv", csv_text(heavy)))
    # Then each record carries the file's drift and the counts behind it
    usual = env.outputs("incoming/usual.csv").record
    shifted = env.outputs("incoming/heavy.csv").record
    assert usual is not None and shifted is not None
    assert usual["drift"]["status"] == "ok" and usual["drift"]["max_psi"] < 0.1
    assert (
        shifted["drift"]["status"] == "drift" and shifted["drift"]["max_feature"] == "body_mass_g"
    )
    assert sum(shifted["drift"]["counts"]["body_mass_g"]) == len(BIRDS)
    # And the function emits the per-feature and maximum drift
    blobs = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith('{"_aws"')]
    per_feature = [b for b in blobs if "FeatureDrift" in b]
    assert {b["Feature"] for b in per_feature} == set(FEATURES)
    assert max(b["FeatureDrift"] for b in per_feature if b["Feature"] == "body_mass_g") > 0.2
    last = [b["MaxFeatureDrift"] for b in blobs if "MaxFeatureDrift" in b and "ModelName" in b][-1]
    assert last > 0.2
