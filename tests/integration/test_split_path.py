"""The split path's steps on moto, through the split function's handler: whatever the file, the
outputs are the single path's, byte for byte; a file that fails, fails for the same reason;
nothing is left half-written. (The state machine's own definition runs in
test_split_machine.py.)"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from moto import mock_aws

from sklambda import shares
from sklambda.model import load
from sklambda.settings import BatchSettings, read_settings
from sklambda_tools.examples import penguins
from sklambda_tools.local import LambdaContext, load_handler, new_execution_environment
from sklambda_tools.localbatch import split_machine, uploaded
from sklambda_tools.package import frame_to_records

from support import PENGUINS_DIR, REPO, job_outputs

BUCKET = "split-path-bucket"
REGION = "us-east-1"
SPLIT = REPO / "functions" / "split" / "app.py"
BATCH = REPO / "functions" / "batch" / "app.py"
COLUMNS = [*penguins.FEATURES, "note"]
# `make fuzz` runs the messy-file properties longer (SKLAMBDA_FUZZ_SPLIT_EXAMPLES each)
LONG = int(os.environ.get("SKLAMBDA_FUZZ_SPLIT_EXAMPLES") or 0)
SEED = int(os.environ.get("SKLAMBDA_FUZZ_SEED", "20261122"))
BIRDS = frame_to_records(penguins.load_frame(), load(PENGUINS_DIR).manifest.features)


class Split:
    """A mocked account and the split function's handler; ``run`` plays the state machine."""

    def __init__(self, s3: Any, sqs: Any, queue: str, app: ModuleType) -> None:
        self.s3, self.sqs, self.queue, self.app = s3, sqs, queue, app
        self.scored: list[int] = []

    def step(self, event: dict[str, Any]) -> dict[str, Any]:
        got: dict[str, Any] = self.app.lambda_handler(
            event, LambdaContext(function_name="split", timeout_seconds=900)
        )
        return got

    def put(self, key: str, data: bytes) -> dict[str, Any]:
        return uploaded(
            BUCKET, key, self.s3.put_object(Bucket=BUCKET, Key=key, Body=data), len(data)
        )

    def items(self, planned: dict[str, Any]) -> list[dict[str, Any]]:
        where = planned["items"]
        got = self.s3.get_object(Bucket=where["bucket"], Key=where["key"])
        loaded: list[dict[str, Any]] = json.loads(got["Body"].read())
        return loaded

    def run(self, source: dict[str, Any], order: Callable[[list[Any]], list[Any]] = list) -> str:
        """Plan, score every share (in ``order``), finish: the final status."""
        planned = self.step({"action": "plan", "source": source})
        if planned["status"] != "planned":
            return str(planned["status"])
        for item in order(self.items(planned)):
            self.scored.append(item["share"])
            self.step({"action": "score", "item": item})
        done = self.step({"action": "finish", "source": source, "plan": planned})
        return str(done["status"])

    def outputs(self, key: str) -> tuple[bytes | None, bytes | None, dict[str, Any] | None]:
        return job_outputs(self.s3, BUCKET, key)

    def left(self) -> list[str]:
        """What is left under shares/ (every version), and uploads never completed."""
        listed = self.s3.list_object_versions(Bucket=BUCKET, Prefix="shares/")
        versions = [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]
        uploads = self.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
        return [v["Key"] for v in versions] + [u["Key"] for u in uploads]

    def dead_letters(self) -> list[dict[str, Any]]:
        got = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in got.get("Messages", [])]


@pytest.fixture
def make_split(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Split]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        sqs = boto3.client("sqs", region_name=REGION)
        queue = sqs.create_queue(QueueName="split-dlq")["QueueUrl"]

        def make(**env: str) -> Split:
            base = {
                "SKLAMBDA_MODEL_DIR": str(PENGUINS_DIR),
                "POWERTOOLS_SERVICE_NAME": "batch",
                "POWERTOOLS_METRICS_NAMESPACE": "sklambda-test",
                "SKLAMBDA_DEAD_LETTER_QUEUE_URL": queue,
                "SKLAMBDA_SPLIT_BYTES": "300",
                "SKLAMBDA_CHUNK_ROWS": "4",
            }
            for name, value in {**base, **env}.items():
                monkeypatch.setenv(name, value)
            new_execution_environment()
            return Split(s3, sqs, queue, load_handler(SPLIT))

        yield make
        new_execution_environment()


@pytest.fixture
def split(make_split: Callable[..., Split]) -> Split:
    return make_split()


def single(split: Split, key: str, data: bytes) -> tuple[Any, ...]:
    """What the single path writes for the same bytes (the batch core, one invocation)."""
    from sklambda.batch import process_object
    from sklambda.model import get_model
    from sklambda.settings import get_settings

    settings = get_settings(BatchSettings)
    source = split.put(key, data)
    process_object(
        split.s3,
        BUCKET,
        key,
        get_model(settings),
        settings,
        version_id=source["version_id"],
        etag=source["etag"],
        size=source["size"],
    )
    return split.outputs(key)


RECORD_FIELDS = (
    "status",
    "reason",
    "rows",
    "drift",
    "unseen_categories",
    "outside_training_range",
    "ignored_columns",
    "model",
    "settings",
)


def assert_same(split: Split, path: str, data: bytes) -> dict[str, Any]:
    """Split ``incoming/split/<path>`` and score ``incoming/single/<path>`` in one go: the
    same outputs, byte for byte, the same counts; the split record."""
    one = single(split, f"incoming/single/{path}", data)
    split.run(split.put(f"incoming/split/{path}", data))
    many = split.outputs(f"incoming/split/{path}")
    assert many[0] == one[0], "predictions differ"
    assert many[1] == one[1], "errors differ"
    assert many[2] is not None and one[2] is not None
    for name in RECORD_FIELDS:
        assert many[2].get(name) == one[2].get(name), name
    assert split.left() == []
    return many[2]


# --- messy files ---------------------------------------------------------------------------


def messy_csv(seed: int, rows: int, newline: str, bom: bool) -> bytes:
    """Birds with what real files have: quoted newlines and commas, blank lines, short rows,
    words for numbers, islands never seen, a missing value, non-ASCII text."""
    pick = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(COLUMNS)
    for n in range(rows):
        bird = dict(BIRDS[pick.randrange(len(BIRDS))])
        roll = pick.random()
        if roll < 0.08:
            bird["island"] = "Anvers"
        elif roll < 0.14:
            bird["bill_length_mm"] = "long"
        elif roll < 0.18:
            bird["sex"] = None
        note = pick.choice(["", "a\nb", 'say "hi"', "x,y", "é\r\nü", "plain"])
        if pick.random() < 0.05:
            out.write(newline)  # a blank line
        if pick.random() < 0.04:
            out.write(f"Biscoe,{n}{newline}")  # a short row
            continue
        writer.writerow(["" if bird.get(c) is None else bird.get(c) for c in COLUMNS[:-1]] + [note])
    text = ("\ufeff" if bom else "") + out.getvalue()
    return text.encode()


def messy_jsonl(seed: int, rows: int) -> bytes:
    pick = random.Random(seed)
    lines = []
    for _ in range(rows):
        bird = dict(BIRDS[pick.randrange(len(BIRDS))])
        roll = pick.random()
        if roll < 0.05:
            lines.append("")
        elif roll < 0.09:
            lines.append('{"island": "Dream", "bill_length_mm": ')  # not JSON
        elif roll < 0.13:
            lines.append(json.dumps({**bird, "island": 7}))
        elif roll < 0.17:
            lines.append(json.dumps({**bird, "colour": "grey"}))  # a key the model lacks
        else:
            lines.append(json.dumps(bird))
    return "".join(line + "\n" for line in lines).encode()


@seed(SEED)
@settings(
    max_examples=LONG or 12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 10_000),
    rows=st.integers(1, 120),
    newline=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    compressed=st.booleans(),
    split_bytes=st.integers(1, 2000),
    chunk_rows=st.integers(1, 9),
)
def test_a_messy_csv_file_split_anywhere_gives_the_single_paths_outputs(
    make_split: Callable[..., Split],
    seed: int,
    rows: int,
    newline: str,
    bom: bool,
    compressed: bool,
    split_bytes: int,
    chunk_rows: int,
) -> None:
    split = make_split(
        SKLAMBDA_SPLIT_BYTES=str(split_bytes),
        SKLAMBDA_CHUNK_ROWS=str(chunk_rows),
        SKLAMBDA_PASSTHROUGH_COLUMNS="note",
    )
    data = messy_csv(seed, rows, newline, bom)
    path = f"f{seed}.csv" + (".gz" if compressed else "")
    assert_same(split, path, gzip.compress(data, mtime=0) if compressed else data)


@seed(SEED)
@settings(
    max_examples=LONG or 8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 10_000),
    rows=st.integers(1, 120),
    compressed=st.booleans(),
    split_bytes=st.integers(1, 2000),
    chunk_rows=st.integers(1, 9),
)
def test_a_messy_json_lines_file_split_anywhere_gives_the_single_paths_outputs(
    make_split: Callable[..., Split],
    seed: int,
    rows: int,
    compressed: bool,
    split_bytes: int,
    chunk_rows: int,
) -> None:
    split = make_split(SKLAMBDA_SPLIT_BYTES=str(split_bytes), SKLAMBDA_CHUNK_ROWS=str(chunk_rows))
    data = messy_jsonl(seed, rows)
    path = f"f{seed}.jsonl" + (".gz" if compressed else "")
    assert_same(split, path, gzip.compress(data, mtime=0) if compressed else data)


def test_the_record_names_the_split_and_rows_keep_their_numbers(split: Split) -> None:
    data = messy_csv(3, 60, "\r\n", True)
    record = assert_same(split, "numbers.csv", data)
    assert record["split"]["shares"] > 3
    predictions = split.outputs("incoming/split/numbers.csv")[0]
    assert predictions is not None
    numbers = [int(row["row"]) for row in csv.DictReader(io.StringIO(predictions.decode()))]
    assert numbers == sorted(numbers) and numbers[-1] <= record["rows"]["read"]


def test_shares_scored_in_any_order_give_the_same_outputs(split: Split) -> None:
    data = messy_csv(9, 80, "\n", False)
    one = single(split, "incoming/single/order.csv", data)
    split.run(split.put("incoming/split/order.csv", data), order=lambda items: items[::-1])
    assert split.scored[0] > split.scored[-1]
    assert split.outputs("incoming/split/order.csv")[:2] == one[:2]


def test_outputs_of_many_megabytes_are_assembled_by_server_side_copies(split: Split) -> None:
    # Parts of 5 MiB and more are copied by S3 (UploadPartCopy), the rest read and joined
    data = csv_of(BIRDS * 1000).encode()  # 344,000 rows: predictions of about 19 MB
    copies: list[str] = []
    split = make_again(split, SKLAMBDA_SPLIT_BYTES=str(4 << 20), SKLAMBDA_CHUNK_ROWS="10000")
    handler_s3().meta.events.register(
        "provide-client-params.s3.UploadPartCopy",
        lambda params, **_: copies.append(params["CopySourceRange"]),
    )
    record = assert_same(split, "big.csv", data)
    assert record["split"]["shares"] >= 3 and copies


def handler_s3() -> Any:
    """The S3 client the handler uses (one per execution environment)."""
    from sklambda import aws

    return aws.client("s3")


def csv_of(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(penguins.FEATURES)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in penguins.FEATURES])
    return out.getvalue()


def make_again(split: Split, **env: str) -> Split:
    import os

    os.environ.update(env)
    new_execution_environment()
    return Split(split.s3, split.sqs, split.queue, load_handler(SPLIT))


# --- files that fail ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("late-long-row.csv", csv_of(BIRDS[:40]) + "Biscoe," + "9" * 2000 + ",1,1,1,male\n"),
        ("bad-header.csv", "island,island\nBiscoe,Dream\n"),
        ("missing-columns.csv", "island,sex\nBiscoe,male\n"),
        ("header-only.csv", csv_of([])),
        ("blank.jsonl", "\n\n  \n"),
        ("not-utf8.csv", csv_of(BIRDS[:30]) + "Dr\xe9am,1,1,1,1,male\n"),
    ],
)
def test_a_file_that_fails_fails_for_the_single_paths_reason(
    make_split: Callable[..., Split], name: str, data: str
) -> None:
    split = make_split(SKLAMBDA_MAX_LINE_BYTES="1024")
    raw = data.encode("latin-1") if name == "not-utf8.csv" else data.encode()
    one = single(split, f"incoming/single/{name}", raw)
    assert one[2] is not None and one[2]["status"] == "failed"
    status = split.run(split.put(f"incoming/split/{name}", raw))
    predictions, errors, record = split.outputs(f"incoming/split/{name}")
    assert status == "failed" and (predictions, errors) == (None, None)
    assert record is not None and record["status"] == "failed"
    assert record["reason"] == one[2]["reason"]
    assert record["dead_letter"] == "sent"
    (letter,) = split.dead_letters()
    assert letter["reason"] == record["reason"]
    assert split.left() == []


def test_a_share_that_raised_for_good_fails_the_file_when_finished(split: Split) -> None:
    # The map's item failed for good: its share left no result, and the file fails
    source = split.put("incoming/lost.csv", messy_csv(1, 40, "\n", False))
    planned = split.step({"action": "plan", "source": source})
    for item in split.items(planned)[1:]:
        split.step({"action": "score", "item": item})
    done = split.step({"action": "finish", "source": source, "plan": planned})
    _, errors, record = split.outputs("incoming/lost.csv")
    assert done["status"] == "failed" and errors is None
    assert record is not None and "share 0 left no result" in record["reason"]
    assert split.left() == [] and len(split.dead_letters()) == 1


def test_an_abort_records_the_steps_error_and_leaves_nothing(split: Split) -> None:
    source = split.put("incoming/aborted.csv", messy_csv(2, 40, "\n", False))
    planned = split.step({"action": "plan", "source": source})
    split.step({"action": "score", "item": split.items(planned)[0]})
    cause = json.dumps({"errorType": "RetryableError", "errorMessage": "SlowDown: slow"})
    state = {
        "source": source,
        "plan": {"Payload": planned},
        "error": {"Error": "RetryableError", "Cause": cause},
    }
    assert split.step({"action": "abort", "state": state})["status"] == "failed"
    predictions, _, record = split.outputs("incoming/aborted.csv")
    assert predictions is None and record is not None
    assert record["reason"] == "a step of the split path failed: RetryableError (SlowDown: slow)"
    assert split.left() == [] and len(split.dead_letters()) == 1


def test_an_abort_before_any_plan_still_records_the_failure(split: Split) -> None:
    source = split.put("incoming/early.csv", csv_of(BIRDS[:5]).encode())
    state = {"source": source, "error": {"Error": "States.Timeout", "Cause": None}}
    assert split.step({"action": "abort", "state": state})["status"] == "failed"
    record = split.outputs("incoming/early.csv")[2]
    assert record is not None and record["reason"].endswith("States.Timeout")


# --- retries and repeats -------------------------------------------------------------------


def test_a_share_scored_again_is_not_scored_twice(split: Split) -> None:
    source = split.put("incoming/twice.csv", messy_csv(4, 40, "\n", False))
    planned = split.step({"action": "plan", "source": source})
    item = split.items(planned)[0]
    first = split.step({"action": "score", "item": item})
    puts: list[str] = []
    handler_s3().meta.events.register(
        "provide-client-params.s3.PutObject", lambda params, **_: puts.append(params["Key"])
    )
    assert split.step({"action": "score", "item": item}) == first
    assert puts == []


def test_a_finish_retried_after_it_wrote_the_record_changes_nothing(split: Split) -> None:
    data = messy_csv(5, 40, "\n", False)
    source = split.put("incoming/again.csv", data)
    planned = split.step({"action": "plan", "source": source})
    for item in split.items(planned):
        split.step({"action": "score", "item": item})
    event = {"action": "finish", "source": source, "plan": planned}
    assert split.step(event)["status"] == "succeeded"
    before = split.outputs("incoming/again.csv")
    assert split.step(event)["status"] == "succeeded"
    assert split.outputs("incoming/again.csv") == before and split.left() == []


def test_an_s3_fault_in_a_share_is_raised_for_the_state_machine_to_retry(split: Split) -> None:
    source = split.put("incoming/slow.csv", messy_csv(6, 40, "\n", False))
    planned = split.step({"action": "plan", "source": source})
    item = split.items(planned)[1]

    def slow_down(params: dict[str, Any], **_: Any) -> None:
        if params.get("Range") == item["range"]:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow"}}, "GetObject")

    handler_s3().meta.events.register("provide-client-params.s3.GetObject", slow_down)
    with pytest.raises(shares.RetryableError, match="SlowDown"):
        split.step({"action": "score", "item": item})
    handler_s3().meta.events.unregister("provide-client-params.s3.GetObject", slow_down)
    prefix = planned["prefix"]
    assert shares.share_keys(prefix, 1).result not in split.left()
    assert split.step({"action": "score", "item": item})["status"] == "succeeded"


def test_an_unknown_action_is_refused(split: Split) -> None:
    with pytest.raises(ValueError, match="unknown action"):
        split.step({"action": "explode"})


# --- the batch function hands big files over -----------------------------------------------


class Started:
    def __init__(self, fail: str | None = None, exists: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.described: list[str] = []
        self.fail, self.exists = fail, exists

    def describe_execution(self, executionArn: str) -> dict[str, Any]:
        self.described.append(executionArn)
        if not self.exists:
            error = {"Error": {"Code": "ExecutionDoesNotExist", "Message": "x"}}
            raise ClientError(error, "DescribeExecution")
        return {"status": "RUNNING"}

    def start_execution(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.fail:
            raise ClientError({"Error": {"Code": self.fail, "Message": "x"}}, "StartExecution")
        return {"executionArn": "arn"}


def test_a_file_over_the_threshold_starts_one_execution_named_for_its_version() -> None:
    sfn = Started()
    source = {"bucket": "b", "key": "incoming/x.csv", "version_id": "v1", "etag": "e", "size": 9}
    machine = "arn:aws:states:us-east-1:123456789012:stateMachine:s-split"
    result = shares.start_split(sfn, machine, source)
    (call,) = sfn.calls
    assert result.status == "split" and call["name"] in (result.reason or "")
    assert call["name"] == shares.execution_name("b", "incoming/x.csv", "v1")
    assert json.loads(call["input"]) == {"source": source}
    assert sfn.described == [
        f"arn:aws:states:us-east-1:123456789012:execution:s-split:{call['name']}"
    ]
    running = Started(exists=True)  # a delivery while it runs, or after: nothing started
    assert shares.start_split(running, machine, source).status == "duplicate"
    assert running.calls == []
    again = shares.start_split(Started("ExecutionAlreadyExists"), machine, source)
    assert again.status == "duplicate"
    with pytest.raises(ClientError):
        shares.start_split(Started("ThrottlingException"), machine, source)


@given(
    key=st.text(min_size=1, max_size=1024),
    version=st.one_of(st.none(), st.text(max_size=64)),
)
def test_an_execution_name_is_valid_and_one_per_object_version(key: str, version: str) -> None:
    name = shares.execution_name("bucket", key, version)
    assert len(name) <= 80 and name.isascii() and name.replace("-", "").isalnum()
    assert name == shares.execution_name("bucket", key, version)
    assert name != shares.execution_name("bucket", key, (version or "") + "x")


def test_the_batch_function_splits_only_files_over_the_threshold(
    make_split: Callable[..., Split], monkeypatch: pytest.MonkeyPatch
) -> None:
    split = make_split(SKLAMBDA_SPLIT_BYTES="1000")
    sfn = boto3.client("stepfunctions", region_name=REGION)
    machine = split_machine(sfn, REPO)
    monkeypatch.setenv("SKLAMBDA_SPLIT_STATE_MACHINE_ARN", machine)
    new_execution_environment()
    batch = load_handler(BATCH)
    context = LambdaContext(function_name="batch", timeout_seconds=900)

    def drop(key: str, data: bytes) -> str:
        source = split.put(key, data)
        record = {
            "s3": {
                "bucket": {"name": BUCKET},
                "object": {
                    "key": key,
                    "size": source["size"],
                    "eTag": source["etag"],
                    "versionId": source["version_id"],
                },
            }
        }
        event = {"Records": [record]}
        return str(batch.lambda_handler(event, context)["results"][0]["status"])

    assert drop("incoming/small.csv", csv_of(BIRDS[:5]).encode()) == "succeeded"
    big = csv_of(BIRDS[:40]).encode()
    assert drop("incoming/big.csv", big) == "split"
    executions = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert len(executions) == 1 and split.outputs("incoming/big.csv") == (None, None, None)


def test_settings_refuse_a_split_of_no_bytes() -> None:
    from sklambda.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="SKLAMBDA_SPLIT_BYTES"):
        read_settings(
            BatchSettings, {"SKLAMBDA_DEAD_LETTER_QUEUE_URL": "q", "SKLAMBDA_SPLIT_BYTES": "0"}
        )


def test_unknown_keys_past_the_column_limit_are_the_single_paths_first_ones(
    make_split: Callable[..., Split],
) -> None:
    # More unknown keys than SKLAMBDA_MAX_COLUMNS (2): the single path keeps the first it
    # meets, chunk by chunk (x, then m; b comes too late); a share met m before b too
    split = make_split(SKLAMBDA_MAX_COLUMNS="2", SKLAMBDA_CHUNK_ROWS="1")
    extras = [{"x": 1}, {}, {"m": 1}, {"b": 1}, {"c": 1}, {}]
    lines = [json.dumps({**BIRDS[n], **extra}) for n, extra in enumerate(extras)]
    data = "".join(line + "\n" for line in lines).encode()
    split = make_again(split, SKLAMBDA_SPLIT_BYTES=str(len(lines[0]) + len(lines[1])))
    record = assert_same(split, "unknown.jsonl", data)
    assert record["ignored_columns"] == ["m", "x"] and record["split"]["shares"] == 3


class Killed(BaseException):
    """What a Lambda timeout does to a step: nothing after it runs, no ``except`` either."""


def test_an_abort_withdraws_what_a_finish_stopped_by_its_timeout_made_visible(
    split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = split.put("incoming/killed.csv", messy_csv(7, 40, "\n", False))
    planned = split.step({"action": "plan", "source": source})
    for item in split.items(planned):
        split.step({"action": "score", "item": item})

    def timed_out(*_: Any) -> None:  # the outputs are complete: the record comes next
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(shares, "_timed", timed_out)
        with pytest.raises(Killed):
            split.step({"action": "finish", "source": source, "plan": planned})
    assert split.outputs("incoming/killed.csv")[:2] != (None, None)  # visible, no record
    error = {"Error": "Sandbox.Timedout", "Cause": "Task timed out after 900.00 seconds"}
    state = {"source": source, "plan": {"Payload": planned}, "error": error}
    assert split.step({"action": "abort", "state": state})["status"] == "failed"
    predictions, errors, record = split.outputs("incoming/killed.csv")
    assert (predictions, errors) == (None, None)
    assert record is not None and "Sandbox.Timedout" in record["reason"]
    assert split.left() == []


def test_a_dead_letter_that_cannot_be_sent_is_a_retryable_fault_of_the_step(
    split: Split,
) -> None:
    source = split.put("incoming/unsent.csv", b"island,island\n1,2\n")

    def throttled(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "x"}}, "Send")

    from sklambda import aws

    aws.client("sqs").meta.events.register("provide-client-params.sqs.SendMessage", throttled)
    with pytest.raises(shares.RetryableError, match="dead letter not sent"):
        split.step({"action": "plan", "source": source})
    aws.client("sqs").meta.events.unregister("provide-client-params.sqs.SendMessage", throttled)
    record = split.outputs("incoming/unsent.csv")[2]
    assert record is not None and record["dead_letter"] == "pending"
    # the retry of the step sends it, once
    assert split.step({"action": "plan", "source": source})["status"] == "failed"
    assert len(split.dead_letters()) == 1
    assert split.outputs("incoming/unsent.csv")[2]["dead_letter"] == "sent"  # type: ignore[index]


def test_a_file_not_utf8_early_fails_for_that_and_not_for_a_long_row_later(
    make_split: Callable[..., Split],
) -> None:
    split = make_split(SKLAMBDA_MAX_LINE_BYTES="1024")
    data = csv_of(BIRDS[:1]).encode() + b"Dr\xe9am,1,1,1,1,male\n"
    data += csv_of(BIRDS[:40]).split("\n", 1)[1].encode() + b"Biscoe," + b"9" * 2000 + b"\n"
    one = single(split, "incoming/single/two-faults.csv", data)
    assert one[2] is not None and "not UTF-8" in one[2]["reason"]
    assert split.run(split.put("incoming/split/two-faults.csv", data)) == "failed"
    record = split.outputs("incoming/split/two-faults.csv")[2]
    assert record is not None and record["reason"] == one[2]["reason"]


def test_an_object_overwritten_in_a_bucket_without_versions_is_not_planned_in_its_place(
    make_split: Callable[..., Split],
) -> None:
    split = make_split()
    split.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    first = split.put("incoming/over.csv", csv_of(BIRDS[:40]).encode())
    second = split.put("incoming/over.csv", csv_of(BIRDS[40:100]).encode())
    first["version_id"] = second["version_id"] = None
    gone = split.step({"action": "plan", "source": first})
    assert gone["status"] == "failed" and "no longer exists" in gone["reason"]
    assert split.run(second) == "succeeded"
    record = split.outputs("incoming/over.csv")[2]
    assert record is not None and record["source"]["etag"] == second["etag"]
    assert record["rows"]["read"] == 60


def test_a_share_out_of_time_fails_the_file_naming_the_first_such_share(
    make_split: Callable[..., Split],
) -> None:
    # Every worker finds too little time left (the guard above the timeout): each share's
    # result says so, and the file fails with the first share's reason, in file order
    split = make_split(SKLAMBDA_TIME_GUARD_SECONDS="100000")
    source = split.put("incoming/late.csv", messy_csv(8, 40, "\n", False))
    assert split.run(source, order=lambda items: items[::-1]) == "failed"
    predictions, errors, record = split.outputs("incoming/late.csv")
    assert (predictions, errors) == (None, None) and record is not None
    assert record["reason"].startswith("stopped after row 0:") and record["row_reached"] == 0
    assert split.left() == [] and len(split.dead_letters()) == 1
