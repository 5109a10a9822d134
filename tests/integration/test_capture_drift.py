"""Capture of online requests (Firehose) and the scheduled drift job, on moto."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from sklambda.capture import TIMEOUT_SECONDS, Capture, firehose
from sklambda.drift import hour_prefixes, render_html
from sklambda.model import load
from sklambda.scoring import predict_all
from sklambda_tools.examples import penguins
from sklambda_tools.local import LambdaContext, load_handler, new_execution_environment
from sklambda_tools.package import frame_to_records

from support import PENGUINS_DIR, REPO, event

MODEL = load(PENGUINS_DIR)
BIRDS = frame_to_records(penguins.load_frame(), MODEL.manifest.features)
BUCKET = "sklambda-data-123456789012-us-east-1"


# --- capture ------------------------------------------------------------------------------------


def test_sampling_follows_the_rate() -> None:
    draws = iter(np.linspace(0, 0.999, 1000))
    capture = Capture("stream", 0.1, client=lambda: None, draw=lambda: float(next(draws)))
    assert sum(capture.sampled() for _ in range(1000)) == 100
    assert not Capture("stream", 0.0).enabled
    assert not Capture(None, 1.0).enabled  # no stream, no capture


def test_a_failing_capture_returns_false_and_never_raises() -> None:
    class Broken:
        def put_record(self, **_: Any) -> None:
            raise ConnectionError("firehose is down")

    scored = predict_all(MODEL, BIRDS[:1])
    capture = Capture("stream", 1.0, client=Broken)
    assert capture.send("r", BIRDS[:1], scored) is False
    factory_fails = Capture("stream", 1.0, client=lambda: 1 / 0)
    assert factory_fails.send("r", BIRDS[:1], scored) is False


def test_a_capture_waits_a_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    config = firehose().meta.config
    assert config.connect_timeout == TIMEOUT_SECONDS and config.read_timeout == TIMEOUT_SECONDS
    assert config.retries["total_max_attempts"] == 1


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        firehose = boto3.client("firehose")
        firehose.create_delivery_stream(
            DeliveryStreamName="capture",
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/capture",
                "BucketARN": f"arn:aws:s3:::{BUCKET}",
                "Prefix": "capture/",
                "CompressionFormat": "GZIP",
                "BufferingHints": {"IntervalInSeconds": 300, "SizeInMBs": 5},
            },
        )
        yield {"s3": s3}
    new_execution_environment()


def function(name: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    monkeypatch.setenv("SKLAMBDA_MODEL_DIR", str(PENGUINS_DIR))
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", name)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "sklambda-test")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return load_handler(REPO / "functions" / name / "app.py", name=f"{name}_under_test")


def captured(s3: Any) -> list[dict[str, Any]]:
    records = []
    for obj in s3.list_objects_v2(Bucket=BUCKET, Prefix="capture/").get("Contents", []):
        data = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
        data = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        records += [json.loads(line) for line in data.decode().splitlines() if line]
    return records


def test_a_sampled_request_is_captured_with_its_predictions(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    app = function(
        "predict", monkeypatch, SKLAMBDA_CAPTURE_STREAM="capture", SKLAMBDA_CAPTURE_RATE="1"
    )
    ev = event("predict-multi.json")
    response = app.lambda_handler(ev, LambdaContext(function_name="predict"))
    assert response["statusCode"] == 200
    (record,) = captured(aws["s3"])
    assert record["request_id"] == ev["requestContext"]["requestId"]
    assert record["instances"] == json.loads(ev["body"])["instances"]
    assert record["predictions"] == json.loads(response["body"])["predictions"]
    assert record["model"] == {"name": "penguins", "version": MODEL.version}
    assert '"CapturedRequests":1.0' in capsys.readouterr().out


def test_the_pretraffic_checks_requests_are_not_captured(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklambda.probes import REQUEST_ID_PREFIX

    app = function(
        "predict", monkeypatch, SKLAMBDA_CAPTURE_STREAM="capture", SKLAMBDA_CAPTURE_RATE="1"
    )
    probe = event("predict-multi.json")
    probe["requestContext"]["requestId"] = f"{REQUEST_ID_PREFIX}1"
    assert app.lambda_handler(probe, LambdaContext(function_name="predict"))["statusCode"] == 200
    assert captured(aws["s3"]) == []
    # while a client's request (even one whose id merely contains the prefix) is
    probe["requestContext"]["requestId"] = f"x-{REQUEST_ID_PREFIX}1"
    app.lambda_handler(probe, LambdaContext(function_name="predict"))
    assert [r["request_id"] for r in captured(aws["s3"])] == [f"x-{REQUEST_ID_PREFIX}1"]


def test_capture_off_sends_nothing(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    app = function(
        "predict", monkeypatch, SKLAMBDA_CAPTURE_STREAM="capture", SKLAMBDA_CAPTURE_RATE="0"
    )
    for _ in range(5):
        app.lambda_handler(event("predict-single.json"), LambdaContext(function_name="predict"))
    assert captured(aws["s3"]) == []


def test_a_broken_stream_never_fails_a_prediction(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    app = function(
        "predict", monkeypatch, SKLAMBDA_CAPTURE_STREAM="no-such-stream", SKLAMBDA_CAPTURE_RATE="1"
    )
    started = time.perf_counter()
    response = app.lambda_handler(
        event("predict-single.json"), LambdaContext(function_name="predict")
    )
    assert response["statusCode"] == 200
    assert time.perf_counter() - started < 2 * TIMEOUT_SECONDS + 1
    assert '"CaptureFailures":1.0' in capsys.readouterr().out


# --- the drift job -------------------------------------------------------------------------------


def put_capture(s3: Any, prefix: str, rows: list[dict[str, Any]], per_request: int = 10) -> None:
    lines = []
    for start in range(0, len(rows), per_request):
        instances = rows[start : start + per_request]
        predictions = predict_all(MODEL, instances).predictions()
        lines.append(
            json.dumps(
                {
                    "request_id": str(start),
                    "time": "t",
                    "instances": instances,
                    "model": {"name": MODEL.name, "version": MODEL.version},
                    "predictions": predictions,
                }
            )
        )
    body = gzip.compress(("\n".join(lines) + "\n").encode())
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}capture-{len(rows)}.gz", Body=body)


def drift_event(when: datetime) -> dict[str, Any]:
    """events/drift-schedule.json, as EventBridge would send it at ``when``."""
    return {**event("drift-schedule.json"), "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}


def test_the_schedule_event_runs_the_drift_job(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the scheduled event as it is in events/ (an hour with nothing captured)
    app = function("drift", monkeypatch, SKLAMBDA_DATA_BUCKET=BUCKET)
    # When the job runs on it
    summary = app.lambda_handler(event("drift-schedule.json"), LambdaContext(function_name="drift"))
    # Then it writes the window's report, named by the event's date
    assert summary["report"] == "monitoring/drift/2026-11-22.json"
    assert summary["status"] == "not enough data"
    aws["s3"].head_object(Bucket=BUCKET, Key=summary["report"])


def metric(output: str, name: str, dims: dict[str, str], at: datetime) -> list[float]:
    """The values of ``name`` under exactly ``dims`` in the EMF records a function printed,
    stamped ``at``."""
    values: list[float] = []
    for line in output.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        record = json.loads(line)
        (directive,) = record["_aws"]["CloudWatchMetrics"]
        if name not in record or directive["Dimensions"] != [list(dims)]:
            continue
        if any(record[k] != v for k, v in dims.items()):
            continue
        assert record["_aws"]["Timestamp"] == int(at.timestamp() * 1000)
        value = record[name]
        values.extend(value if isinstance(value, list) else [value])
    return values


def test_the_drift_job_reports_a_shifted_window(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an hour of captured requests from heavier birds, an hour outside the window,
    # and a batch file's manifest inside it
    s3 = aws["s3"]
    when = datetime.now(UTC) + timedelta(hours=2)
    end = when.replace(minute=0, second=0, microsecond=0)
    inside = hour_prefixes(end, 24)
    heavy = [
        {**b, "body_mass_g": None if b["body_mass_g"] is None else b["body_mass_g"] * 1.3}
        for b in BIRDS
    ]
    put_capture(s3, inside[-1], heavy)
    put_capture(s3, hour_prefixes(end - timedelta(days=3), 1)[0], BIRDS)  # too old
    batch = function("batch", monkeypatch, SKLAMBDA_DEAD_LETTER_QUEUE_URL="unused")
    s3.put_object(Bucket=BUCKET, Key="incoming/day.csv", Body=_csv(BIRDS).encode())
    batch.lambda_handler(
        {"Records": [{"s3": {"bucket": {"name": BUCKET}, "object": {"key": "incoming/day.csv"}}}]},
        LambdaContext(function_name="batch", timeout_seconds=900),
    )
    capsys.readouterr()
    # When the scheduled job runs
    app = function("drift", monkeypatch, SKLAMBDA_DATA_BUCKET=BUCKET)
    summary = app.lambda_handler(drift_event(when), LambdaContext(function_name="drift"))
    # Then the report counts both sources, finds the drift, and is written as JSON and HTML
    report = json.loads(s3.get_object(Bucket=BUCKET, Key=summary["report"])["Body"].read())
    assert (
        report["sources"]["captured_rows"] == len(BIRDS) and report["sources"]["batch_files"] == 1
    )
    assert report["rows"] == 2 * len(BIRDS)
    assert report["status"] == "drift" and report["max_feature"] == "body_mass_g"
    assert report["features"]["island"]["drifted"] is False
    page = (
        s3.get_object(Bucket=BUCKET, Key=summary["report"].replace(".json", ".html"))["Body"]
        .read()
        .decode()
    )
    assert "<svg" in page and "body_mass_g" in page
    # And its metrics are published under the service alone, stamped with the window's end
    out = capsys.readouterr().out
    assert metric(out, "MaxFeatureDrift", {"service": "drift"}, end)[0] > 0.2
    by_feature = metric(out, "FeatureDrift", {"service": "drift", "Feature": "body_mass_g"}, end)
    assert by_feature[0] == pytest.approx(report["features"]["body_mass_g"]["psi"])


def test_an_empty_window_is_not_enough_data(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    app = function("drift", monkeypatch, SKLAMBDA_DATA_BUCKET=BUCKET)
    when = datetime.now(UTC)
    summary = app.lambda_handler(drift_event(when), LambdaContext(function_name="drift"))
    assert summary["status"] == "not enough data"
    end = when.replace(minute=0, second=0, microsecond=0)
    out = capsys.readouterr().out
    assert metric(out, "DriftRows", {"service": "drift"}, end) == [0.0]
    assert metric(out, "MaxFeatureDrift", {"service": "drift"}, end) == []


def test_the_window_is_the_hours_before_the_run() -> None:
    prefixes = hour_prefixes(datetime(2026, 11, 22, 3, 30, tzinfo=UTC), 3)
    assert prefixes == [
        "capture/2026/11/22/00/",
        "capture/2026/11/22/01/",
        "capture/2026/11/22/02/",
    ]


def test_the_html_report_escapes_what_it_shows() -> None:
    report = {
        "status": "drift",
        "rows": 300,
        "threshold": 0.2,
        "model": {"name": "<m>", "version": "1"},
        "features": {
            "<f>": {
                "psi": 1.0,
                "drifted": True,
                "bins": [{"bin": "<b>", "expected": 0.5, "actual": 0.9}],
            }
        },
    }
    page = render_html(report)
    assert "&lt;f&gt;" in page and "<f>" not in page and "&lt;m&gt;" in page


def _csv(rows: list[dict[str, Any]]) -> str:
    header = list(rows[0])
    out = [",".join(header)]
    out += [",".join("" if r[c] is None else str(r[c]) for c in header) for r in rows]
    return "\n".join(out) + "\n"
