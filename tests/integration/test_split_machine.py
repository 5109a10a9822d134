"""The split path on moto's Step Functions interpreter: a file over SKLAMBDA_SPLIT_BYTES is
handed by the batch function to the split state machine (the real definition), whose steps the
split function answers in-process; the outputs are the single path's, byte for byte, and a file
that fails leaves its failed job record, its dead letter and nothing else."""

from __future__ import annotations

import contextlib
import copy
import csv
import gzip
import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Any
from unittest import mock
from urllib.parse import quote_plus, unquote_plus

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.awslambda.models import LambdaBackend

from sklambda import aws, shares
from sklambda.batch import process_object
from sklambda.model import load
from sklambda_tools.examples import penguins
from sklambda_tools.local import (
    LambdaContext,
    load_handler,
    load_template,
    new_execution_environment,
    resolve_sub,
)
from sklambda_tools.localbatch import split_definition
from sklambda_tools.package import frame_to_records

from support import EVENTS, PENGUINS_DIR, REPO, job_outputs

BATCH_HANDLER = REPO / "functions" / "batch" / "app.py"
SPLIT_HANDLER = REPO / "functions" / "split" / "app.py"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's account
SPLIT_ALIAS = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:split:live"
SPLIT_BYTES = 600  # a few penguins a share
CHUNK_ROWS = 5
MAX_LINE_BYTES = 2048
CONCURRENCY = 3
FEATURES = penguins.FEATURES
MODEL = load(PENGUINS_DIR)
BIRDS = frame_to_records(penguins.load_frame(), MODEL.manifest.features)
# The job record's fields the split path merges from its shares: the single path's, exactly.
MERGED = ("rows", "drift", "unseen_categories", "outside_training_range", "ignored_columns")


def bucket_name() -> str:
    """The data bucket's name as template.yaml builds it."""
    template = load_template(REPO / "template.yaml")
    expr = template["Resources"]["DataBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    return resolve_sub(template, expr, {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION})


BUCKET = bucket_name()


def definition() -> str:
    """The state machine as deployed: DefinitionSubstitutions put the split alias in."""
    text = split_definition(REPO, SPLIT_ALIAS)
    assert "${" not in text
    return text


# --- the files --------------------------------------------------------------------------------


def messy_csv() -> bytes:
    """A BOM, CRLF, an ignored column with quoted commas, quotes and newlines, blank lines,
    rows of the wrong width, a word for a number, unseen categories and long bills."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*FEATURES, "note"])
    notes = ['a, "b"', "two\r\nlines", "three\nmore\nlines", "plain", ""]
    for i, bird in enumerate(BIRDS[:70]):
        row = {**bird}
        if i % 11 == 3:
            row["island"] = "Anvers"
        if i % 13 == 5:
            row["bill_length_mm"] = 61.0
        if i % 17 == 7:
            row["bill_depth_mm"] = "deep"
        cells = ["" if row[c] is None else row[c] for c in FEATURES]
        writer.writerow([*cells, notes[i % len(notes)]])
        if i % 9 == 4:
            out.write("\r\n")  # a blank line: not a row
        if i % 19 == 10:
            out.write("Biscoe,45.0\r\n")  # too few fields
    return ("\ufeff" + out.getvalue()).encode()


def messy_jsonl_gz() -> bytes:
    """Gzipped JSON Lines with an extra key, blank lines, broken JSON, an array, a word for a
    number, unseen categories and long bills."""
    lines = []
    for i, bird in enumerate(BIRDS[:45]):
        row = {**bird, "colour": "black"} if i % 4 == 0 else {**bird}
        if i % 7 == 3:
            row["island"] = "Anvers"
        if i % 8 == 5:
            row["bill_length_mm"] = 61.0
        if i % 11 == 9:
            row["flipper_length_mm"] = "long"
        lines.append(json.dumps(row))
        if i % 10 == 2:
            lines.append("")
        if i % 12 == 6:
            lines.append('{"island": "Dream", ')
        if i % 15 == 8:
            lines.append("[1, 2]")
    return gzip.compress(("\n".join(lines) + "\n").encode())


def plain_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FEATURES)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in FEATURES])
    return out.getvalue()


# --- the split function behind its alias ------------------------------------------------------


class SplitFunction:
    """The split function, run in-process where moto's Lambda backend is invoked (the state
    machine's ``lambda:invoke`` of the alias): each call's event and what it returned or
    raised. An exception becomes a FunctionError with the Python runtime's payload, so the
    state machine sees its class name as the error, as on AWS."""

    def __init__(self, app: ModuleType) -> None:
        self.app = app
        self.calls: list[tuple[dict[str, Any], Any]] = []
        self.before: Callable[[dict[str, Any]], None] = lambda event: None
        self._lock = threading.Lock()
        original = LambdaBackend.invoke

        def invoke(
            backend: Any,
            function_name: str,
            qualifier: str | None,
            body: Any,
            headers: Any,
            response_headers: dict[str, str],
        ) -> str | bytes | None:
            if function_name != SPLIT_ALIAS:
                return original(backend, function_name, qualifier, body, headers, response_headers)
            payload = json.dumps(self._answer(json.loads(body), response_headers)).encode()
            response_headers["Content-Length"] = str(len(payload))
            return payload

        self.patch = mock.patch.object(LambdaBackend, "invoke", invoke)

    def _answer(self, event: dict[str, Any], response_headers: dict[str, str]) -> Any:
        context = LambdaContext(function_name="split", timeout_seconds=900)
        try:
            self.before(event)
            result = self.app.lambda_handler(event, context)
        except Exception as exc:
            response_headers["x-amz-function-error"] = "Unhandled"
            result = {"errorType": type(exc).__name__, "errorMessage": str(exc), "stackTrace": []}
        with self._lock:
            self.calls.append((event, result))
        return result

    def results(self, action: str) -> list[Any]:
        with self._lock:
            return [result for event, result in self.calls if event["action"] == action]

    def scored(self) -> Counter[int]:
        """How many times each share was scored (attempts included)."""
        with self._lock:
            return Counter(e["item"]["share"] for e, _ in self.calls if e["action"] == "score")

    def share_reading(self, byte_range: str) -> int:
        """The share whose item reads ``byte_range`` of the input."""
        with self._lock:
            (share,) = {
                e["item"]["share"]
                for e, _ in self.calls
                if e["action"] == "score" and e["item"]["range"] == byte_range
            }
        return int(share)

    def planned_shares(self) -> int:
        (planned,) = self.results("plan")
        assert planned["status"] == "planned"
        return int(planned["shares"])


class SlowDown:
    """The functions' S3 client (one per execution environment, ``sklambda.aws``) answers
    ``SlowDown`` to the calls of ``operation`` that ``matches`` picks, ``times`` times
    (``None``: every time): S3 slowing down past botocore's own retries."""

    def __init__(
        self,
        operation: str,
        matches: Callable[[dict[str, Any]], bool],
        times: int | None = None,
    ) -> None:
        self.operation, self.matches, self.times = operation, matches, times
        self.params: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        aws.client("s3").meta.events.register(f"before-parameter-build.s3.{operation}", self._hook)

    def _hook(self, params: dict[str, Any], **kwargs: Any) -> None:
        with self._lock:
            if not self.matches(params):
                return
            if self.times is not None and len(self.params) >= self.times:
                return
            self.params.append(dict(params))
        error = {"Code": "SlowDown", "Message": "Please reduce your request rate."}
        raise ClientError({"Error": error}, self.operation)


def one_share_of(key: str) -> Callable[[dict[str, Any]], bool]:
    """The ranged reads of the input by the first share a worker reads (not the header's)."""
    chosen: list[str] = []

    def matches(params: dict[str, Any]) -> bool:
        ranged = params.get("Range")
        if params.get("Key") != key or not ranged or ranged.startswith("bytes=0-"):
            return False
        chosen[:] = chosen or [ranged]
        return ranged == chosen[0]

    return matches


# --- the account ------------------------------------------------------------------------------


@dataclass
class Outputs:
    predictions: bytes | None
    errors: bytes | None
    record: dict[str, Any] | None


class Env:
    """A mocked account: the data bucket, the dead-letter queue, the split state machine, the
    batch function, and the split function behind the state machine."""

    def __init__(
        self,
        s3: Any,
        sqs: Any,
        sfn: Any,
        queue_url: str,
        machine: str,
        batch: ModuleType,
        split: SplitFunction,
    ) -> None:
        self.s3, self.sqs, self.sfn, self.queue_url = s3, sqs, sfn, queue_url
        self.machine, self.batch, self.split = machine, batch, split

    def drop(self, key: str, body: bytes | str) -> dict[str, Any]:
        """Upload under ``key`` and return the S3 event the notification would send."""
        data = body.encode() if isinstance(body, str) else body
        put = self.s3.put_object(Bucket=BUCKET, Key=key, Body=data)
        event = copy.deepcopy(json.loads((EVENTS / "s3-put-csv.json").read_text()))
        event["Records"][0]["s3"]["bucket"]["name"] = BUCKET
        event["Records"][0]["s3"]["object"].update(
            {
                "key": quote_plus(key, safe="/"),
                "eTag": put["ETag"].strip('"'),
                "size": len(data),
                "versionId": put["VersionId"],
            }
        )
        return event

    def deliver(self, event: dict[str, Any]) -> dict[str, Any]:
        """The batch function's answer to an S3 event."""
        context = LambdaContext(function_name="batch", timeout_seconds=900)
        (result,) = self.batch.lambda_handler(event, context)["results"]
        assert isinstance(result, dict)
        return result

    def execution(self, event: dict[str, Any]) -> str:
        """The ARN of the split execution of the event's object version."""
        obj = event["Records"][0]["s3"]["object"]
        name = shares.execution_name(BUCKET, unquote_plus(obj["key"]), obj["versionId"])
        arns = [e["executionArn"] for e in self.executions() if e["name"] == name]
        if len(arns) != 1:
            self.settle()  # before pytest reports: its reporting and moto's threads collide
        assert len(arns) == 1, self.executions()
        return arns[0]

    def map_run(self, execution_arn: str) -> dict[str, Any]:
        """The distributed map's run (the shares' child executions)."""
        events = self.sfn.get_execution_history(executionArn=execution_arn)["events"]
        (arn,) = [
            e["mapRunStartedEventDetails"]["mapRunArn"]
            for e in events
            if e["type"] == "MapRunStarted"
        ]
        run: dict[str, Any] = self.sfn.describe_map_run(mapRunArn=arn)
        return run

    def executions(self) -> list[dict[str, Any]]:
        listed: list[dict[str, Any]] = self.sfn.list_executions(stateMachineArn=self.machine)[
            "executions"
        ]
        return listed

    def settle(self) -> None:
        """Let every execution end (none outlives the mock, even when a test fails)."""
        for execution in self.executions():
            with contextlib.suppress(AssertionError):
                self.wait(execution["executionArn"])

    def wait(self, execution_arn: str, timeout: float = 30.0) -> dict[str, Any]:
        """Executions run in a thread of their own: the description once it has ended."""
        deadline = time.monotonic() + timeout
        while True:
            desc: dict[str, Any] = self.sfn.describe_execution(executionArn=execution_arn)
            if desc["status"] != "RUNNING":
                return desc
            assert time.monotonic() < deadline, f"{execution_arn} still running"
            time.sleep(0.02)

    def split_path(self, key: str, body: bytes) -> dict[str, Any]:
        """Drop a file, deliver its event: the split execution, once it has ended."""
        event = self.drop(key, body)
        result = self.deliver(event)
        assert result["status"] == "split", result
        return self.wait(self.execution(event))

    def single_path(self, key: str, body: bytes) -> Outputs:
        """The outputs of the same bytes scored in one invocation, under another key."""
        put = self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        process_object(
            self.s3,
            BUCKET,
            key,
            self.batch.model,
            self.batch.settings,
            version_id=put["VersionId"],
            etag=put["ETag"].strip('"'),
            size=len(body),
        )
        return self.outputs(key)

    def outputs(self, key: str) -> Outputs:
        return Outputs(*job_outputs(self.s3, BUCKET, key))

    def versions(self, prefix: str) -> list[str]:
        """Every version and delete marker under ``prefix``."""
        listed = self.s3.list_object_versions(Bucket=BUCKET, Prefix=prefix)
        return [v["Key"] for v in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]]

    def pending_uploads(self) -> list[Any]:
        uploads: list[Any] = self.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        return uploads

    def dead_letters(self) -> list[dict[str, Any]]:
        got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]


@pytest.fixture
def retry_sleeps() -> Iterator[list[float]]:
    """The state machine's retry waits, recorded instead of slept (moto really sleeps)."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    sleeps: list[float] = []
    with mock.patch.object(retrier_decl, "time", SimpleNamespace(sleep=sleeps.append)):
        yield sleeps


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, retry_sleeps: list[float]) -> Iterator[Env]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        sqs = boto3.client("sqs", region_name=REGION)
        queue_url = sqs.create_queue(QueueName="batch-dlq")["QueueUrl"]
        sfn = boto3.client("stepfunctions", region_name=REGION)
        machine = sfn.create_state_machine(
            name="sklambda-split",
            definition=definition(),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/split",
        )["stateMachineArn"]
        for name, value in {
            "SKLAMBDA_MODEL_DIR": str(PENGUINS_DIR),
            "POWERTOOLS_SERVICE_NAME": "batch",
            "POWERTOOLS_METRICS_NAMESPACE": "sklambda-test",
            "SKLAMBDA_DEAD_LETTER_QUEUE_URL": queue_url,
            "SKLAMBDA_SPLIT_BYTES": str(SPLIT_BYTES),
            "SKLAMBDA_CHUNK_ROWS": str(CHUNK_ROWS),
            "SKLAMBDA_MAX_LINE_BYTES": str(MAX_LINE_BYTES),
            "SKLAMBDA_SPLIT_CONCURRENCY": str(CONCURRENCY),
            "SKLAMBDA_SPLIT_STATE_MACHINE_ARN": machine,
        }.items():
            monkeypatch.setenv(name, value)
        batch = load_handler(BATCH_HANDLER)
        monkeypatch.delenv("SKLAMBDA_SPLIT_STATE_MACHINE_ARN")  # the split function has none
        split = SplitFunction(load_handler(SPLIT_HANDLER))
        made = Env(s3, sqs, sfn, queue_url, machine, batch, split)
        try:
            with split.patch:
                yield made
                made.settle()
        finally:
            new_execution_environment()


# --- what every split file must leave ---------------------------------------------------------


def assert_nothing_left(env: Env) -> None:
    """No share, part or plan under shares/ (no version either), no upload pending."""
    assert env.versions("shares/") == []
    assert env.pending_uploads() == []


def assert_same_outputs(split: Outputs, single: Outputs) -> None:
    assert split.predictions is not None and split.predictions == single.predictions
    assert split.errors is not None and split.errors == single.errors
    assert split.record is not None and single.record is not None
    assert split.record["status"] == single.record["status"] == "succeeded"
    assert {f: split.record.get(f) for f in MERGED} == {f: single.record.get(f) for f in MERGED}


def assert_failed_for_good(env: Env, key: str, desc: dict[str, Any]) -> dict[str, Any]:
    """The execution failed, the job record says why and that the dead letter was sent,
    one letter is queued, and no output, share or upload is left."""
    path = key[len("incoming/") :]
    assert desc["status"] == "FAILED" and desc["error"] == "FileFailed", desc
    out = env.outputs(key)
    record = out.record
    assert record is not None and record["status"] == "failed" and record["reason"]
    assert record["dead_letter"] == "sent" and record["retryable"] is False
    letters = env.dead_letters()
    assert [letter["reason"] for letter in letters] == [record["reason"]]
    assert letters[0]["record"] == f"s3://{BUCKET}/manifests/{path}.json"
    assert env.versions(f"predictions/{path}") == env.versions(f"errors/{path}") == []
    assert_nothing_left(env)
    return record


# --- files that succeed -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "body"),
    [("messy.csv", messy_csv()), ("messy.jsonl.gz", messy_jsonl_gz())],
    ids=["csv", "jsonl-gz"],
)
def test_a_split_file_gets_the_single_paths_outputs(env: Env, name: str, body: bytes) -> None:
    # Given a messy file well over SKLAMBDA_SPLIT_BYTES, and what the single path makes of
    # it: rejected rows, ignored columns, unseen categories and numbers out of range to merge
    assert len(body) > SPLIT_BYTES
    single = env.single_path(f"incoming/single/{name}", body)
    assert single.record is not None and single.record["rows"]["rejected"] > 0
    assert all(single.record.get(f) for f in MERGED)
    # When its S3 event reaches the batch function
    desc = env.split_path(f"incoming/split/{name}", body)
    # Then the execution scores every share once and writes the single path's very bytes
    assert desc["status"] == "SUCCEEDED", desc
    split = env.outputs(f"incoming/split/{name}")
    assert_same_outputs(split, single)
    shares_planned = env.split.planned_shares()
    assert shares_planned > 1
    assert env.split.scored() == Counter(range(shares_planned))
    assert split.record is not None
    assert split.record["split"] == {
        "shares": shares_planned,
        "share_bytes": SPLIT_BYTES,
        "execution": desc["name"],
    }
    assert env.map_run(desc["executionArn"])["maxConcurrency"] == CONCURRENCY
    assert_nothing_left(env)
    assert env.dead_letters() == []


def test_a_share_that_fails_once_is_retried(env: Env, retry_sleeps: list[float]) -> None:
    key = "incoming/split/flaky.csv"
    body = plain_csv(BIRDS[:60]).encode()
    single = env.single_path("incoming/single/flaky.csv", body)
    # Given S3 slowing down once the first time a worker reads its share of the input
    fault = SlowDown("GetObject", one_share_of(key), times=1)
    # When the file is split
    desc = env.split_path(key, body)
    # Then that share is scored again after a wait, and the file is the single path's
    assert desc["status"] == "SUCCEEDED", desc
    assert_same_outputs(env.outputs(key), single)
    (failed,) = fault.params
    share = env.split.share_reading(failed["Range"])
    assert env.split.scored() == Counter(
        {**dict.fromkeys(range(env.split.planned_shares()), 1), share: 2}
    )
    assert len(retry_sleeps) == 1
    assert_nothing_left(env)


def test_a_share_that_always_fails_fails_the_file(env: Env, retry_sleeps: list[float]) -> None:
    key = "incoming/split/doomed.csv"
    # Given S3 slowing down every time one share's worker reads the input
    fault = SlowDown("GetObject", one_share_of(key))
    # When the file is split
    desc = env.split_path(key, plain_csv(BIRDS[:60]).encode())
    # Then the share is tried seven times (the retry's six attempts, waits capped at a
    # minute), and the file fails, with its record, its dead letter, and nothing else
    record = assert_failed_for_good(env, key, desc)
    (share,) = {e["item"]["share"] for e, r in env.split.calls if "errorType" in r}
    assert len(fault.params) == 7 and env.split.scored()[share] == 7
    assert len(retry_sleeps) == 6 and max(retry_sleeps) <= 60
    # AWS fails the map (ToleratedFailureCount 0) and the Catch aborts the file; moto 5.2.5
    # does not fail a distributed map for an item, and the finisher finds the share missing.
    assert (
        record["reason"].startswith("a step of the split path failed: States.")
        or record["reason"] == f"internal error (AssertionError: share {share} left no result)"
    )


def test_a_step_that_always_fails_is_caught_and_aborted(
    env: Env, retry_sleeps: list[float]
) -> None:
    key = "incoming/split/unfinished.csv"
    # Given S3 slowing down every time the finisher writes the predictions (the errors file
    # done by then)
    fault = SlowDown(
        "PutObject", lambda params: params["Key"] == "predictions/split/unfinished.csv"
    )
    # When the file is split
    desc = env.split_path(key, plain_csv(BIRDS[:60]).encode())
    # Then the finish is tried six times, the Catch aborts the file, and the errors file
    # each attempt completed is withdrawn
    record = assert_failed_for_good(env, key, desc)
    assert len(fault.params) == 6 and len(env.split.results("finish")) == 6
    assert len(retry_sleeps) == 5
    assert env.split.results("abort") == [{"status": "failed", "reason": record["reason"]}]
    assert record["reason"].startswith("a step of the split path failed: RetryableError (")
    assert "SlowDown" in record["reason"]


def long_record() -> bytes:
    rows = plain_csv(BIRDS[:60]).splitlines(keepends=True)
    rows.insert(50, f'Dream,40.0,18.0,190,3500,"{"x" * MAX_LINE_BYTES}"\n')
    return "".join(rows).encode()


def bad_header() -> bytes:
    return plain_csv(BIRDS[:60]).replace("body_mass_g", "mass", 1).encode()


def not_utf8_in_two_shares() -> bytes:
    """Latin-1 text in two later shares, each for another reason: the first is the file's
    (the planner checks the text as it streams, as the single path's reader decodes it)."""
    data = plain_csv(BIRDS[:60]).encode()
    lines = data.splitlines(keepends=True)
    lines[25] = lines[25].replace(b",", b",\xc3(", 1)  # invalid continuation byte
    lines[50] = lines[50].replace(b",", b",\xf8", 1)  # invalid start byte
    return b"".join(lines)


@pytest.mark.parametrize(
    ("name", "body", "step"),
    [
        ("long-record.csv", long_record(), "plan"),
        ("bad-header.csv", bad_header(), "plan"),
        ("latin1.csv", not_utf8_in_two_shares(), "plan"),
    ],
)
def test_a_file_that_cannot_be_scored_fails_for_the_single_paths_reason(
    env: Env, name: str, body: bytes, step: str
) -> None:
    single = env.single_path(f"incoming/single/{name}", body)
    assert single.record is not None and single.record["status"] == "failed"
    key = f"incoming/split/{name}"
    desc = env.split_path(key, body)
    record = assert_failed_for_good(env, key, desc)
    assert record["reason"] == single.record["reason"]
    assert (env.split.scored() == Counter()) == (step == "plan")
    # the step that found it says so to the state machine (a Choice routes it to FileFailed)
    assert env.split.results(step)[-1] == {"status": "failed", "reason": record["reason"]}
    assert env.split.results("abort") == []


def test_a_duplicate_delivery_starts_no_second_execution(env: Env) -> None:
    key = "incoming/split/twice.csv"
    body = plain_csv(BIRDS[:60]).encode()
    single = env.single_path("incoming/single/twice.csv", body)
    # Given an execution held in its plan step
    gate = threading.Event()

    def held(event: dict[str, Any]) -> None:
        if event["action"] == "plan":
            assert gate.wait(10)

    env.split.before = held
    event = env.drop(key, body)
    try:
        assert env.deliver(event)["status"] == "split"
        execution = env.execution(event)
        # When S3 delivers the event again while it runs
        assert env.sfn.describe_execution(executionArn=execution)["status"] == "RUNNING"
        again = env.deliver(event)
    finally:
        gate.set()
    # Then no second execution starts, then or after it has ended, and neither delivery
    # counts as a file handed over
    assert again["status"] == "duplicate", again
    assert env.wait(execution)["status"] == "SUCCEEDED"
    late = env.deliver(event)
    assert late["status"] == "duplicate", late
    assert [e["executionArn"] for e in env.executions()] == [execution]
    assert len(env.split.results("plan")) == 1
    assert_same_outputs(env.outputs(key), single)
    assert_nothing_left(env)
