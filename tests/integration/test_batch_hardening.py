"""The batch function against hostile and unlucky input, on moto: a bad row is a rejected row,
only a fault of S3 (or SQS) is retried, nothing is lost or doubled, memory stays bounded."""

# ruff: noqa: F811 - the tests take the fixtures imported from test_batch as arguments

from __future__ import annotations

import gzip
import json
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_batch import (  # env and make_env: the fixtures of the mocked account
    BIRDS,
    BUCKET,
    FEATURES,
    Env,
    csv_text,
    env,  # noqa: F401
    jsonl_text,
    make_env,  # noqa: F401
)

HEADER = ",".join(FEATURES) + "\n"


def gzipped(head: bytes, filler: bytes, total: int) -> bytes:
    """gzip of ``head`` and ``total`` bytes of ``filler`` (streamed: never ``total`` in memory)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [c.compress(head)]
    block = filler * (1 << 20)
    for _ in range(total // len(block)):
        out.append(c.compress(block))
    out.append(c.flush())
    return b"".join(out)


@contextmanager
def peak_traced() -> Iterator[list[int]]:
    """The peak of Python's traced allocations inside the block, in bytes."""
    tracemalloc.start()
    got: list[int] = []
    try:
        yield got
    finally:
        got.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def the_failure(env: Env, key: str, reason: str) -> dict[str, Any]:
    """The job record of a file that failed for good, for ``reason`` (its start): no outputs,
    one dead letter, sent."""
    out = env.outputs(key)
    assert out.record is not None and out.record["status"] == "failed"
    assert out.record["reason"].startswith(reason), out.record["reason"][:200]
    assert out.predictions is None and out.errors is None and env.pending_uploads() == []
    assert out.record["retryable"] is False
    letters = env.dead_letters()
    assert [letter["reason"] for letter in letters] == [out.record["reason"]]
    assert out.record["dead_letter"] == "sent"
    return out.record


def prefix_count(env: Env, prefix: str) -> int:
    listed = env.s3.list_object_versions(Bucket=BUCKET, Prefix=prefix)
    return len(listed.get("Versions", [])) + len(listed.get("DeleteMarkers", []))


# --- 1. bounded reading ------------------------------------------------------------------------


def test_an_endless_csv_line_fails_the_file_at_the_line_limit(env: Env) -> None:
    # Given a gzipped CSV file: a header, then 64 MiB without a newline (64 KB compressed)
    key = "incoming/endless.csv.gz"
    body = gzipped(HEADER.encode(), b"a", 64 << 20)
    event = env.drop(key, body)
    # When it is scored
    started = time.perf_counter()
    with peak_traced() as peak:
        result = env.invoke(event)
    took = time.perf_counter() - started
    # Then it fails for good, naming the row and the limit, having held about the limit
    assert peak[0] < 24 << 20, f"{peak[0] / 2**20:.0f} MiB traced, {took:.1f} s"
    assert took < 10
    assert result["results"][0]["status"] == "failed"
    the_failure(env, key, "row 1 is longer than 1048576 bytes (the line limit)")


def test_a_header_over_the_line_limit_fails_the_file(make_env: Callable[..., Env]) -> None:
    env = make_env(SKLAMBDA_MAX_LINE_BYTES="2048")
    key = "incoming/long-header.csv"
    env.invoke(env.drop(key, ",".join(f"column_{i}" for i in range(400)) + "\n1\n"))
    the_failure(env, key, "the header is longer than 2048 bytes (the line limit)")


def test_a_quoted_record_over_the_line_limit_fails_naming_its_row(
    make_env: Callable[..., Env],
) -> None:
    env = make_env(SKLAMBDA_MAX_LINE_BYTES="4096")
    key = "incoming/quoted.csv"
    long_note = '"' + "many\nlines " * 1000 + '"'
    text = csv_text(BIRDS[:3], [*FEATURES, "note"]) + f"Dream,39,18,190,3500,male,{long_note}\n"
    env.invoke(env.drop(key, text))
    the_failure(env, key, "row 4 is longer than 4096 bytes (the line limit)")


def test_a_gzip_bomb_fails_as_it_streams(env: Env) -> None:
    # Given 64 MiB of zeros gzipped to 64 KB, as JSON Lines
    key = "incoming/zeros.jsonl.gz"
    body = gzipped(b"", b"\x00", 64 << 20)
    event = env.drop(key, body)
    with peak_traced() as peak:
        result = env.invoke(event)
    # Then the file fails for good once it has expanded 100 times (and past 16 MiB), saying so
    assert peak[0] < 24 << 20, f"{peak[0] / 2**20:.0f} MiB traced"
    assert result["results"][0]["status"] == "failed"
    the_failure(
        env,
        key,
        f"the file decompresses to more than 100 times its compressed size ({len(body)} bytes)",
    )


def test_a_json_line_over_the_limit_is_a_rejected_row_read_in_bounded_memory(
    make_env: Callable[..., Env],
) -> None:
    # Given a file whose second line is 48 MiB of zeros, the expansion limit out of the way
    env = make_env(SKLAMBDA_MAX_EXPANSION="100000")
    key = "incoming/one-long-line.jsonl.gz"
    good = jsonl_text(BIRDS[:2]).encode()
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [c.compress(good[: good.index(b"\n") + 1])]
    for _ in range(48):
        parts.append(c.compress(b"0" * (1 << 20)))
    parts += [c.compress(b"\n" + good[good.index(b"\n") + 1 :]), c.flush()]
    event = env.drop(key, b"".join(parts))
    with peak_traced() as peak:
        env.invoke(event)
    # Then that line is one rejected row and the rows around it are scored
    out = env.outputs(key)
    assert out.record is not None and out.record["status"] == "succeeded"
    assert out.record["rows"] == {"read": 3, "scored": 2, "rejected": 1}
    (error,) = out.error_lines()
    assert error["row"] == 2
    assert error["errors"] == [{"field": None, "reason": "the line is longer than 1048576 bytes"}]
    assert len(error["raw"]) <= 201
    assert peak[0] < 24 << 20, f"{peak[0] / 2**20:.0f} MiB traced"


def test_a_header_of_too_many_columns_fails_with_a_short_reason(env: Env) -> None:
    # Given a 10,000-column header (its unknown columns once made a 220,000-character reason)
    key = "incoming/wide.csv"
    columns = [*FEATURES, *(f"extra_column_{i:05d}" for i in range(10_000 - len(FEATURES)))]
    env.invoke(env.drop(key, ",".join(columns) + "\n" + ",".join("1" * len(columns)) + "\n"))
    record = the_failure(env, key, "the header has 10000 columns, more than the 1000 allowed")
    assert len(record["reason"]) == 56


def test_reasons_are_cut_to_500_characters(make_env: Callable[..., Env]) -> None:
    env = make_env(SKLAMBDA_UNKNOWN_COLUMNS="reject", SKLAMBDA_MAX_COLUMNS="20000")
    key = "incoming/very-wide.csv"
    columns = [*FEATURES, *(f"extra_column_{i:05d}" for i in range(10_000))]
    result = env.invoke(env.drop(key, ",".join(columns) + "\n" + ",".join("1" * len(columns))))
    record = the_failure(env, key, "unknown columns ['extra_column_00000', ")
    assert len(record["reason"]) == 500 and record["reason"].endswith("…")
    assert result["results"][0]["reason"] == record["reason"]


# --- 2. one bad JSON line is one rejected row --------------------------------------------------


def bird_line(**values: Any) -> str:
    return json.dumps({**BIRDS[0], **values})


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"island": ' + "9" * 5000 + "}", "not valid JSON: a number of more than 4300 digits"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON: nested more than 100 levels deep"),
        ("[" * 900 + "]" * 900, "not valid JSON: nested more than 100 levels deep"),
        (bird_line(sex={"a": [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]}), None),
        (bird_line(island="Dream").replace("Dream", "Dr\udcffam"), "not UTF-8 text"),
        (bird_line(island="\ud800"), None),  # a lone surrogate: the core's reason
    ],
    ids=["huge-integer", "recursion", "deep", "nested-value", "not-utf8", "lone-surrogate"],
)
def test_one_bad_json_line_is_one_rejected_row(env: Env, line: str, reason: str | None) -> None:
    # Given good rows around one line that once failed the whole file (retried, in vain)
    key = "incoming/one-bad-line.jsonl"
    body = (
        jsonl_text(BIRDS[:2]).encode()
        + line.encode("utf-8", "surrogateescape")
        + b"\n"
        + jsonl_text(BIRDS[2:4]).encode()
    )
    result = env.invoke(env.drop(key, body))
    # Then the file succeeds: that line is rejected, the others are scored
    assert result["results"][0]["status"] == "succeeded"
    out = env.outputs(key)
    assert out.record is not None and out.record["rows"] == {"read": 5, "scored": 4, "rejected": 1}
    (error,) = out.error_lines()
    assert error["row"] == 3
    if reason is not None:
        assert error["errors"] == [{"field": None, "reason": reason}]
    assert [json.loads(x)["row"] for x in (out.predictions or b"").decode().splitlines()] == [
        1,
        2,
        4,
        5,
    ]


def test_a_row_that_makes_the_core_raise_is_one_rejected_row(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sklambda.batch

    real = sklambda.batch.score_text

    def fragile(model: Any, cells: Any, n: int) -> Any:
        if "Poison" in cells["island"]:
            raise RuntimeError("the core tripped on a value")
        return real(model, cells, n)

    monkeypatch.setattr(sklambda.batch, "score_text", fragile)
    rows = [{**b, "island": "Poison"} if i == 41 else b for i, b in enumerate(BIRDS[:100])]
    key = "incoming/poison.csv"
    env.invoke(env.drop(key, csv_text(rows)))
    out = env.outputs(key)
    assert out.record is not None and out.record["status"] == "succeeded"
    assert out.record["rows"] == {"read": 100, "scored": 99, "rejected": 1}
    (error,) = out.error_lines()
    assert error["row"] == 42
    assert error["errors"] == [
        {"field": None, "reason": "could not be scored (an internal error: RuntimeError)"}
    ]
    assert [int(r["row"]) for r in out.prediction_rows()] == [i for i in range(1, 101) if i != 42]


def test_a_fault_of_ours_fails_the_file_without_a_retry(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("sklambda.batch.score_text", broken)
    key = "incoming/bug.csv"
    result = env.invoke(env.drop(key, csv_text(BIRDS[:20])))
    assert result["results"][0]["status"] == "failed"
    the_failure(env, key, "internal error (RuntimeError: a bug)")


def test_nan_in_a_passthrough_column_is_a_rejected_row(make_env: Callable[..., Env]) -> None:
    env = make_env(SKLAMBDA_PASSTHROUGH_COLUMNS="tag")
    key = "incoming/nan-tag.jsonl"
    text = json.dumps({**BIRDS[0], "tag": 1}) + "\n" + json.dumps({**BIRDS[1], "tag": float("nan")})
    env.invoke(env.drop(key, text + "\n"))
    out = env.outputs(key)
    assert out.record is not None and out.record["rows"] == {"read": 2, "scored": 1, "rejected": 1}
    (error,) = out.error_lines()
    assert error["errors"] == [
        {"field": "tag", "reason": "NaN or an infinity cannot be copied to the predictions"}
    ]
    assert error["raw"]["tag"] == "nan"  # the errors file stays strict JSON


# --- 3. a failed file never vanishes from monitoring -------------------------------------------


def test_a_dead_letter_that_could_not_be_sent_is_sent_by_the_retry(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklambda import aws

    sqs = aws.client("sqs")  # the function's own client
    real = sqs.send_message

    def down(**kwargs: Any) -> Any:
        raise sqs.exceptions.ClientError(
            {"Error": {"Code": "ServiceUnavailable", "Message": "later"}}, "SendMessage"
        )

    key = "incoming/empty-and-unlucky.csv"
    event = env.drop(key, "")
    # When the file fails for good but the dead-letter queue is down
    monkeypatch.setattr(sqs, "send_message", down)
    with pytest.raises(Exception, match="ServiceUnavailable"):
        env.invoke(event)
    record = env.outputs(key).record
    assert record is not None and record["dead_letter"] == "pending"
    # Then Lambda's retry sends the message (and counts the failure), once
    monkeypatch.setattr(sqs, "send_message", real)
    assert env.invoke(event)["results"][0]["status"] == "failed"
    the_failure(env, key, "the file is empty")
    assert env.invoke(event)["results"][0]["status"] == "duplicate"
    assert env.dead_letters() == []


# --- 4. exactly once, even at the same time ----------------------------------------------------


class Paused:
    """An S3 client whose ``get_object`` of the input waits until it is let go."""

    def __init__(self, s3: Any, key: str) -> None:
        self._s3, self._key = s3, key
        self.reached, self.go = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def get_object(self, **kwargs: Any) -> Any:
        if kwargs["Key"] == self._key:
            self.reached.set()
            assert self.go.wait(30)
        return self._s3.get_object(**kwargs)


def score(env: Env, s3: Any, key: str, event: dict[str, Any], request_id: str) -> Any:
    from sklambda.batch import process_object

    obj = event["Records"][0]["s3"]["object"]
    return process_object(
        s3,
        BUCKET,
        key,
        env.app.model,
        env.app.settings,
        version_id=obj["versionId"],
        etag=obj["eTag"],
        size=obj["size"],
        request_id=request_id,
    )


def test_a_delivery_while_another_is_scoring_writes_nothing(env: Env) -> None:
    # Given a file whose first delivery has claimed it and is reading it
    key = "incoming/at-once.csv"
    event = env.drop(key, csv_text(BIRDS[:30]))
    first = Paused(env.s3, key)
    results: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: results.update(a=score(env, first, key, event, "request-a"))
    )
    worker.start()
    assert first.reached.wait(30)
    # When a second delivery of the same version comes meanwhile
    second = score(env, env.s3, key, event, "request-b")
    # Then it writes nothing and says who holds the file
    assert second.status == "duplicate"
    assert second.reason == "being scored by another invocation (request request-a)"
    assert prefix_count(env, "predictions/") == prefix_count(env, "manifests/") == 0
    first.go.set()
    worker.join(30)
    # And the first one scores it, once, and lets the claim go
    assert results["a"].status == "succeeded"
    assert prefix_count(env, "predictions/at-once.csv") == 1
    assert prefix_count(env, "manifests/at-once.csv.json") == 1
    assert prefix_count(env, "claims/") == 0


def test_deliveries_at_the_same_moment_score_a_file_once(env: Env) -> None:
    for attempt in range(8):
        key = f"incoming/race-{attempt}.csv"
        event = env.drop(key, csv_text(BIRDS[:10]))
        start = threading.Barrier(2)
        results: list[Any] = []

        def deliver(
            name: str,
            key: str = key,
            event: dict[str, Any] = event,
            start: threading.Barrier = start,
            results: list[Any] = results,
        ) -> None:
            start.wait(10)
            results.append(score(env, env.s3, key, event, name))

        threads = [threading.Thread(target=deliver, args=(f"r{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        statuses = sorted(r.status for r in results)
        assert statuses == ["duplicate", "succeeded"], [(r.status, r.reason) for r in results]
        assert prefix_count(env, f"predictions/race-{attempt}.csv") == 1


def plant_claim(
    env: Env, key: str, event: dict[str, Any], request_id: str, expires: datetime
) -> None:
    from sklambda.batch import claim_key

    obj = event["Records"][0]["s3"]["object"]
    body = {"request_id": request_id, "claimed_at": "", "expires_at": expires.isoformat()}
    env.s3.put_object(Bucket=BUCKET, Key=claim_key(key, obj["versionId"]), Body=json.dumps(body))


def test_a_claim_left_by_a_crash_blocks_others_until_its_deadline(env: Env) -> None:
    key = "incoming/crashed.csv"
    event = env.drop(key, csv_text(BIRDS[:10]))
    later = datetime.now(UTC) + timedelta(minutes=10)
    plant_claim(env, key, event, "crashed-request", later)
    # another request leaves it to the claimant (whose retry will come)
    other = score(env, env.s3, key, event, "another-request")
    assert other.status == "duplicate" and prefix_count(env, "manifests/") == 0
    # the retry of the crashed request takes it over
    assert score(env, env.s3, key, event, "crashed-request").status == "succeeded"
    assert prefix_count(env, "claims/") == 0


def test_a_claim_past_its_deadline_is_taken_over(env: Env) -> None:
    key = "incoming/stale.csv"
    event = env.drop(key, csv_text(BIRDS[:10]))
    plant_claim(env, key, event, "long-gone", datetime.now(UTC) - timedelta(seconds=1))
    assert score(env, env.s3, key, event, "a-redrive").status == "succeeded"


# --- 5. nothing is visible unless everything is ------------------------------------------------


@pytest.mark.parametrize("failing", ["errors/", "predictions/", "manifests/"])
def test_a_failed_write_leaves_no_output_visible(
    env: Env, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    from sklambda import aws

    s3 = aws.client("s3")  # the function's own client
    real = s3.put_object

    def flaky(**kwargs: Any) -> Any:
        if kwargs["Key"].startswith(failing):
            raise s3.exceptions.ClientError(
                {"Error": {"Code": "InternalError", "Message": "try again"}}, "PutObject"
            )
        return real(**kwargs)

    key = "incoming/unlucky.csv"
    event = env.drop(key, csv_text(BIRDS[:10]) + "Dream,x,1,2,3,male\n")  # an errors file too
    monkeypatch.setattr(s3, "put_object", flaky)
    with pytest.raises(Exception, match="InternalError"):
        env.invoke(event)
    listed = env.s3.list_objects_v2(Bucket=BUCKET)
    visible = [o["Key"] for o in listed.get("Contents", [])]
    assert [k for k in visible if k.startswith(("predictions/", "errors/"))] == []
    assert env.pending_uploads() == []
    monkeypatch.setattr(s3, "put_object", real)
    assert env.invoke(event)["results"][0]["status"] == "succeeded"
    out = env.outputs(key)
    assert len(out.prediction_rows()) == 10 and len(out.error_lines()) == 1


# --- 6. extra columns lose no file; chosen columns ride along ----------------------------------


def test_passthrough_columns_sit_between_the_row_and_the_prediction(
    make_env: Callable[..., Env],
) -> None:
    env = make_env(SKLAMBDA_PASSTHROUGH_COLUMNS="bird, batch ,island")
    rows = [{**b, "bird": f"b{i}", "batch": "7", "colour": "?"} for i, b in enumerate(BIRDS[:4])]
    env.invoke(
        env.drop("incoming/pass.csv", csv_text(rows, ["bird", *FEATURES, "batch", "colour"]))
    )
    env.invoke(env.drop("incoming/pass.jsonl", jsonl_text(rows)))
    csv_out = env.outputs("incoming/pass.csv")
    assert csv_out.predictions is not None
    head = csv_out.predictions.decode().splitlines()[0].split(",")
    assert head[:5] == ["row", "bird", "batch", "island", "label"]
    assert [r["bird"] for r in csv_out.prediction_rows()] == ["b0", "b1", "b2", "b3"]
    json_out = env.outputs("incoming/pass.jsonl")
    assert json_out.predictions is not None
    lines = [json.loads(x) for x in json_out.predictions.decode().splitlines()]
    assert [list(x)[:5] for x in lines] == [["row", "bird", "batch", "island", "label"]] * 4
    assert [x["island"] for x in lines] == [r["island"] for r in rows]
    for out in (csv_out, json_out):
        assert out.record is not None and out.record["rows"]["scored"] == 4
        assert out.record["ignored_columns"] == ["colour"]
        assert out.record["settings"] == {
            "chunk_rows": 10_000,
            "passthrough_columns": ["bird", "batch", "island"],
            "unknown_columns": "ignore",
            "max_line_bytes": 1_048_576,
            "max_columns": 1000,
            "max_expansion": 100,
        }


def test_a_passthrough_column_named_as_an_output_fails_the_init(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sklambda.errors import ConfigurationError
    from sklambda_tools.local import load_handler, new_execution_environment

    from support import PENGUINS_DIR, REPO

    monkeypatch.setenv("SKLAMBDA_MODEL_DIR", str(PENGUINS_DIR))
    monkeypatch.setenv("SKLAMBDA_DEAD_LETTER_QUEUE_URL", "queue")
    monkeypatch.setenv("SKLAMBDA_PASSTHROUGH_COLUMNS", "bird,label")
    with pytest.raises(
        ConfigurationError, match=r"^SKLAMBDA_PASSTHROUGH_COLUMNS names \['label'\]"
    ):
        load_handler(REPO / "functions" / "batch" / "app.py")
    new_execution_environment()


def test_gzip_output_of_a_file_with_passthrough(make_env: Callable[..., Env]) -> None:
    env = make_env(SKLAMBDA_PASSTHROUGH_COLUMNS="bird")
    rows = [{**b, "bird": f"b{i}"} for i, b in enumerate(BIRDS[:3])]
    key = "incoming/pass.csv.gz"
    env.invoke(env.drop(key, gzip.compress(csv_text(rows, [*FEATURES, "bird"]).encode())))
    assert [r["bird"] for r in env.outputs(key).prediction_rows(compressed=True)] == [
        "b0",
        "b1",
        "b2",
    ]
