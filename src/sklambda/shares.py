"""The split path: a file too big for one invocation, scored by many through Step Functions.

``BatchFunction`` hands a file larger than ``BatchSplitBytes`` to the split state machine
(``statemachines/split.asl.json``; ``start_split``): the execution's name derives from the
bucket, key and version, so a second delivery of the same object version starts nothing. The
state machine invokes ``SplitFunction`` (``functions/split/app.py``) for each step:

- ``plan`` (``plan_file``): ``sklambda.split.plan`` cuts the file into shares of about
  ``BatchSplitBytes`` at safe points, with the batch settings' limits and the model's header
  check; a file that fails there gets the job record the single path would write.
- ``score`` (``score_share``), once per share in a Distributed Map: the batch core
  (``batch._Job``, the same reader, scoring and formatting as ``BatchFunction``) writes the
  share's predictions and rejected rows, numbered as in the whole file, to part objects under
  the plan's prefix, then its counts (``result-NNNNNN.json``). A share whose rows make the file
  fail (a row over the line limit, text that is not UTF-8, ...) says so in its result; only a
  fault of S3 or of the network is raised (``RetryableError``), for the map to retry.
- ``finish`` (``finish``): reads every share's result. A failed share fails the file, with the
  reason of the first failing share in file order (the reason the single path gives). Else it
  assembles ``errors/<path>.jsonl`` and then ``predictions/<path>`` from the parts (S3's
  ``UploadPartCopy`` for runs of at least 5 MiB, smaller runs joined in memory; a gzip input's
  predictions are compressed anew as one stream, so that the bytes are the single path's),
  merges the counts, the drift bins and the notes, writes the job record last, and deletes
  everything under the plan's prefix.
- ``abort`` (``abort``): a step failed for good (the state machine's ``Catch``): the failed job
  record, the outputs a finish stopped half-way had completed withdrawn (it notes each in
  ``finishing.json`` under the prefix as it completes it), the prefix deleted.

A failed file's job record says ``dead_letter: "pending"`` until the function has sent its
dead-letter message, as on the single path; the state machine then fails.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ParamSpec

from botocore.exceptions import ClientError

from sklambda import split
from sklambda.batch import (
    FILE_FAULTS,
    GONE,
    INCOMING,
    OBJECT_GONE,
    OutputKeys,
    Result,
    _code,
    _finished,
    _Job,
    _put_json,
    _read_json,
    bounded,
    file_failure,
    internal_error,
    output_keys,
    retryable,
    withdraw,
)
from sklambda.batchio import PART_SIZE, S3Writer, content_type, file_format, gzip_writer
from sklambda.errors import FileError, OutOfTime, SklambdaError
from sklambda.model import Model
from sklambda.settings import BatchSettings

EXECUTION_PREFIX = "sklambda-"
MAX_PART_BYTES = 5 * 1024**3  # S3's largest part
READ_BYTES = 1 << 20
RESULT_READERS = 16  # the finisher reads the shares' results this many at a time
ASSEMBLERS = 8  # and uploads or copies this many parts of an output at a time
FINISHING = "finishing.json"  # under the prefix: the outputs a finish has made visible
_log = logging.getLogger(__name__)
P = ParamSpec("P")


class RetryableError(SklambdaError):
    """A step met a fault of S3 or of the network: the state machine retries it (the error
    name its ``Retry`` matches)."""


def _retryable(step: Callable[P, Step]) -> Callable[P, Step]:
    """``step`` with a fault of S3 or of the network raised as ``RetryableError``."""

    @functools.wraps(step)
    def run(*args: P.args, **kwargs: P.kwargs) -> Step:
        try:
            return step(*args, **kwargs)
        except RetryableError:
            raise
        except Exception as exc:
            if retryable(exc):
                raise RetryableError(bounded(f"{type(exc).__name__}: {exc}")) from exc
            raise

    return run


def execution_name(bucket: str, key: str, version: str | None) -> str:
    """The split execution of one object version (or ETag): the same for every delivery of
    it, within Step Functions' 80 characters and alphabet whatever the key."""
    identity = json.dumps([bucket, key, version or ""]).encode()
    return EXECUTION_PREFIX + hashlib.sha256(identity).hexdigest()[:64]


def start_split(sfn: Any, state_machine_arn: str, source: dict[str, Any]) -> Result:
    """Start the split execution of ``source`` (bucket, key, version_id, etag, size): a
    ``split`` result, or ``duplicate`` when this object version's execution exists (running
    or ended: Step Functions would answer a start of a running one with that one)."""
    version = source.get("version_id") or source.get("etag")
    name = execution_name(source["bucket"], source["key"], version)
    arn = state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":" + name
    try:
        sfn.describe_execution(executionArn=arn)
    except ClientError as exc:
        if _code(exc) != "ExecutionDoesNotExist":
            raise
    else:
        return Result(source["key"], "duplicate", reason=f"already split (execution {name})")
    try:
        sfn.start_execution(
            stateMachineArn=state_machine_arn,
            name=name,
            input=json.dumps({"source": source}, sort_keys=True),
        )
    except ClientError as exc:
        if _code(exc) != "ExecutionAlreadyExists":
            raise
        return Result(source["key"], "duplicate", reason=f"already split (execution {name})")
    return Result(source["key"], "split", reason=f"split: execution {name}")


@dataclass
class Step:
    """What a step returns to the state machine (``payload``) and, for a file that failed or
    ended, its ``Result`` (the function sends a pending dead-letter message)."""

    payload: dict[str, Any]
    result: Result | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _job(s3: Any, source: dict[str, Any], model: Model, settings: BatchSettings) -> _Job:
    kind = file_format(source["key"])
    if kind is None or not source["key"].startswith(INCOMING):
        raise FileError("not a .csv, .csv.gz, .jsonl or .jsonl.gz file under incoming/")
    keys = output_keys(source["key"])
    return _Job(s3, source["bucket"], keys, model, settings, kind[0], kind[1], lambda: 900_000)


def _fail(
    s3: Any,
    job: _Job,
    source: dict[str, Any],
    reason: str,
    started: str,
    row_reached: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Result:
    """Write the failed job record of ``source`` (its dead-letter message pending)."""
    record = job.record(source, "failed", bounded(reason), False, row_reached, started, 0.0)
    _timed(record, started)
    record.update(extra or {})
    record["dead_letter"] = "pending"
    etag = _put_json(s3, job.bucket, job.keys.record, record)
    return Result(
        source["key"],
        "failed",
        reason=record["reason"],
        rows_read=job.read,
        rows_scored=job.scored,
        rows_rejected=job.rejected,
        duration=record["duration_seconds"],
        record=record,
        dead_letter="pending",
        record_etag=etag,
    )


def _timed(record: dict[str, Any], started: str) -> None:
    """The record's times: from the plan's start to now (the whole execution's)."""
    seconds = (datetime.now(UTC) - datetime.fromisoformat(started)).total_seconds()
    record["started"] = started
    record["duration_seconds"] = round(seconds, 3)
    read = record["rows"]["read"]
    record["rows_per_second"] = round(read / seconds, 1) if seconds > 0 else None


# --- plan -------------------------------------------------------------------------------------


@_retryable
def plan_file(s3: Any, source: dict[str, Any], model: Model, settings: BatchSettings) -> Step:
    """Plan ``source``: ``{"status": "planned", ...}`` (where the items are, how many, at what
    concurrency), or ``{"status": "failed"}`` with the file's failed job record written. A
    fault of S3 is raised as ``RetryableError``."""
    started = _now()
    job = _job(s3, source, model, settings)
    fmt, compressed = job.fmt, job.compressed

    def header_check(names: list[str]) -> None:
        model.schema.check_header(
            names, unknown=settings.unknown_columns, passthrough=list(settings.passthrough)
        )

    try:
        made = split.plan(
            s3,
            source["bucket"],
            source["key"],
            source.get("version_id"),
            etag=source.get("etag"),
            share_bytes=settings.split_bytes,
            fmt=fmt,
            compressed=compressed,
            max_line_bytes=settings.max_line_bytes,
            max_columns=settings.max_columns,
            max_expansion=settings.max_expansion,
            header_check=header_check,
            chunk_rows=settings.chunk_rows,
        )
    except FILE_FAULTS as exc:
        return _failed_step(s3, job, source, file_failure(exc), started)
    except ClientError as exc:
        if _code(exc) in (*GONE, "PreconditionFailed"):  # deleted, or replaced (no versions)
            return _failed_step(s3, job, source, OBJECT_GONE, started)
        raise
    except Exception as exc:
        if retryable(exc):
            raise
        _log.exception("internal error planning s3://%s/%s", source["bucket"], source["key"])
        return _failed_step(s3, job, source, internal_error(exc), started)
    return Step(
        {
            "status": "planned",
            "started": started,
            "prefix": made.prefix,
            "items": {"bucket": made.source.bucket, "key": made.items_key},
            "shares": len(made.shares),
            "share_bytes": made.share_bytes,
            "bytes": made.content_bytes,
            "max_concurrency": settings.split_concurrency,
            "written": [list(written) for written in made.written],
        }
    )


def _failed_step(
    s3: Any, job: _Job, source: dict[str, Any], reason: str, started: str, **kwargs: Any
) -> Step:
    result = _fail(s3, job, source, reason, started, **kwargs)
    return Step({"status": "failed", "reason": result.reason}, result)


# --- score ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareKeys:
    predictions: str
    errors: str
    result: str


def share_keys(prefix: str, index: int) -> ShareKeys:
    """Where share ``index`` of the plan under ``prefix`` writes."""
    name = f"{prefix}part-{index:06d}"
    return ShareKeys(f"{name}.predictions", f"{name}.errors", f"{prefix}result-{index:06d}.json")


class _Joined:
    """``head`` (bytes), then a body: a CSV share's body is the file's header and its range."""

    def __init__(self, head: bytes, body: Any) -> None:
        self._head, self._body = head, body

    def read(self, size: int = -1) -> bytes:
        if self._head:
            n = len(self._head) if size < 0 else size
            out, self._head = self._head[:n], self._head[n:]
            return out
        if self._body is None:
            return b""
        return bytes(self._body.read(size if size >= 0 else None))


def _get(s3: Any, ref: dict[str, Any]) -> Any:
    """The body of an item's range of its object: that version, or, where there is none,
    that ETag."""
    args: dict[str, Any] = {"Bucket": ref["bucket"], "Key": ref["key"], "Range": ref["range"]}
    if ref.get("version_id"):
        args["VersionId"] = ref["version_id"]
    elif ref.get("etag"):
        args["IfMatch"] = ref["etag"]
    try:
        return s3.get_object(**args)["Body"]
    except ClientError as exc:
        if _code(exc) in (*GONE, "PreconditionFailed"):
            raise FileError(OBJECT_GONE) from exc
        raise


def _share_body(s3: Any, item: dict[str, Any]) -> Any:
    head = b""
    if item.get("header"):
        head = _get(s3, item["header"]).read()
    body = _get(s3, item) if item.get("range") else None
    return _Joined(head, body)


def score_share(
    s3: Any,
    item: dict[str, Any],
    model: Model,
    settings: BatchSettings,
    remaining_ms: Callable[[], int] = lambda: 15 * 60 * 1000,
) -> dict[str, Any]:
    """Score one share (a plan's item) into its parts and its result; what the map keeps of
    it (``{"share": i, "status": ...}``). A result already there (an earlier attempt's) is
    kept: the share is not scored twice."""
    bucket, prefix, index = item["bucket"], item["prefix"], int(item["share"])
    keys = share_keys(prefix, index)
    found = _read_json(s3, bucket, keys.result)
    if found is not None:
        return {"share": index, "status": found[0].get("status")}
    outputs = OutputKeys(keys.predictions, keys.errors, keys.result)
    job = _Job(s3, bucket, outputs, model, settings, item["format"], False, remaining_ms)
    reason, row_reached = None, None
    try:
        job.run(_share_body(s3, item), None, share=index, first_row=int(item["first_row"]))
        if item.get("rows") is not None and job.read != item["rows"]:
            raise AssertionError(f"read {job.read} rows where the plan counted {item['rows']}")
    except FILE_FAULTS as exc:
        reason = file_failure(exc)
        row_reached = exc.row if isinstance(exc, OutOfTime) else None
    except Exception as exc:
        job.discard()
        if retryable(exc):
            raise RetryableError(bounded(f"{type(exc).__name__}: {exc}")) from exc
        _log.exception("internal error scoring share %d of %s", index, prefix)
        reason = internal_error(exc)
    if reason is not None:
        job.discard()
    result: dict[str, Any] = {
        "share": index,
        "status": "failed" if reason is not None else "succeeded",
        "reason": bounded(reason) if reason is not None else None,
        "row_reached": row_reached,
        "first_row": item["first_row"],
        "rows": {"read": job.read, "scored": job.scored, "rejected": job.rejected},
        "drift": job.drift.to_json(),
        "noted": {kind: dict(counts) for kind, counts in job.noted.items()},
        "ignored_columns": job.ignored_columns,
        "staged": _staged(item),
    }
    if reason is None:
        result["parts"] = job.outputs()
    try:
        _put_json(s3, bucket, keys.result, result)
    except Exception as exc:
        job.discard()
        raise RetryableError(bounded(f"{type(exc).__name__}: {exc}")) from exc
    return {"share": index, "status": result["status"]}


def _staged(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The staged objects a share read (a gzip input's): its own, and the first share the
    header's."""
    refs = [item] if item.get("staged") else []
    header = item.get("header")
    if header and item.get("staged") and int(item["share"]) == 0:
        refs.append(header)
    return [{"key": ref["key"], "version_id": ref.get("version_id")} for ref in refs]


# --- finish -----------------------------------------------------------------------------------


class _Assembly:
    """One output made of parts in order, server-side where S3 allows: a run of at least
    ``PART_SIZE`` bytes of a part is copied (``UploadPartCopy``, at most 5 GiB a part); the
    bytes between are read and uploaded as parts of at least ``PART_SIZE`` (but the last).
    Part numbers are given in order as the parts are planned; the uploads and copies run
    ``ASSEMBLERS`` at a time (S3 copies in parallel; one at a time would take the finisher
    minutes for an output of many gigabytes)."""

    def __init__(self, s3: Any, bucket: str, key: str, content_type: str) -> None:
        self.s3, self.bucket, self.key, self.content_type = s3, bucket, key, content_type
        self._upload: str | None = None
        self._parts: list[Future[dict[str, Any]]] = []
        self._pending = bytearray()
        self._pool: ThreadPoolExecutor | None = None
        self.version_id: str | None = None

    def _begin(self) -> tuple[str, ThreadPoolExecutor]:
        if self._upload is None:
            made = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )
            self._upload = str(made["UploadId"])
            self._pool = ThreadPoolExecutor(ASSEMBLERS, thread_name_prefix="s3-assembly")
        assert self._pool is not None
        return self._upload, self._pool

    def _flush(self) -> None:
        upload, pool = self._begin()
        number, body = len(self._parts) + 1, bytes(self._pending)
        self._pending.clear()

        def send() -> dict[str, Any]:
            part = self.s3.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=upload, PartNumber=number, Body=body
            )
            return {"ETag": part["ETag"], "PartNumber": number}

        self._parts.append(pool.submit(send))

    def _copy(self, ref: dict[str, Any], start: int, stop: int) -> None:
        upload, pool = self._begin()
        number = len(self._parts) + 1
        source: dict[str, Any] = {"Bucket": self.bucket, "Key": ref["key"]}
        if ref.get("version_id"):
            source["VersionId"] = ref["version_id"]

        def copy() -> dict[str, Any]:
            copied = self.s3.upload_part_copy(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=upload,
                PartNumber=number,
                CopySource=source,
                CopySourceRange=f"bytes={start}-{stop - 1}",
            )
            return {"ETag": copied["CopyPartResult"]["ETag"], "PartNumber": number}

        self._parts.append(pool.submit(copy))

    def _read(self, ref: dict[str, Any], start: int, end: int) -> None:
        args = {"Bucket": self.bucket, "Key": ref["key"], "Range": f"bytes={start}-{end - 1}"}
        if ref.get("version_id"):
            args["VersionId"] = ref["version_id"]
        self._pending += self.s3.get_object(**args)["Body"].read()

    def add(self, ref: dict[str, Any]) -> None:
        size, at = int(ref["bytes"]), 0
        while at < size:
            if self._pending or size - at < PART_SIZE:
                # bytes to read: up to a whole part with what is pending, or a short tail
                take = min(size - at, PART_SIZE - len(self._pending))
                self._read(ref, at, at + take)
                at += take
                if len(self._pending) >= PART_SIZE:
                    self._flush()
                continue
            stop = min(size, at + MAX_PART_BYTES)
            if 0 < size - stop < PART_SIZE:
                stop = size - PART_SIZE  # leave a tail long enough to copy
            self._copy(ref, at, stop)
            at = stop

    def complete(self) -> None:
        if self._upload is None:  # under one part in all: one object
            made = self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=bytes(self._pending),
                ContentType=self.content_type,
            )
        else:
            if self._pending:
                self._flush()
            parts = [part.result() for part in self._parts]
            made = self.s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload,
                MultipartUpload={"Parts": parts},
            )
            self._shutdown()
        self._pending.clear()
        self.version_id = made.get("VersionId")

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def abort(self) -> None:
        self._shutdown()
        if self._upload is not None:
            try:
                self.s3.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload
                )
            except Exception:  # the bucket's lifecycle rule ends an upload left behind
                _log.warning("could not abort the upload of %s", self.key, exc_info=True)
            self._upload = None


def _assembled(
    s3: Any, bucket: str, key: str, kind: str, parts: list[dict[str, Any]]
) -> str | None:
    """The parts as one object, server-side where S3 allows; the version written (nothing is
    left under the key when it fails)."""
    assembly = _Assembly(s3, bucket, key, kind)
    try:
        for ref in parts:
            assembly.add(ref)
        assembly.complete()
    except BaseException:
        assembly.abort()
        raise
    return assembly.version_id


def _compressed(
    s3: Any, bucket: str, key: str, kind: str, parts: list[dict[str, Any]]
) -> str | None:
    """The parts as one gzip stream (as the single path writes it, byte for byte); the
    version written."""
    writer = S3Writer(s3, bucket, key, kind)
    try:
        stream = gzip_writer(writer)
        for ref in parts:
            if not ref["bytes"]:
                continue
            args = {"Bucket": bucket, "Key": ref["key"]}
            if ref.get("version_id"):
                args["VersionId"] = ref["version_id"]
            body = s3.get_object(**args)["Body"]
            while data := body.read(READ_BYTES):
                stream.write(data)
        stream.close()
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return writer.version_id


def _results(
    s3: Any, bucket: str, prefix: str, shares: int
) -> list[tuple[dict[str, Any], str | None] | None]:
    """Each share's result and its version (``None``: the share left none)."""

    def read(index: int) -> tuple[dict[str, Any], str | None] | None:
        try:
            got = s3.get_object(Bucket=bucket, Key=share_keys(prefix, index).result)
        except ClientError as exc:
            if _code(exc) in GONE:
                return None
            raise
        return json.loads(got["Body"].read()), got.get("VersionId")

    with ThreadPoolExecutor(max_workers=RESULT_READERS) as pool:
        return list(pool.map(read, range(shares)))


def _made(
    planned: dict[str, Any], found: list[tuple[dict[str, Any], str | None] | None]
) -> list[tuple[str, str | None]]:
    """Every object the plan and the shares wrote under the prefix: key and version."""
    made = [(str(key), version) for key, version in planned.get("written", [])]
    for entry in found:
        if entry is None:
            continue
        result, version = entry
        made.append((share_keys(planned["prefix"], int(result["share"])).result, version))
        made += [(ref["key"], ref.get("version_id")) for ref in result.get("parts", {}).values()]
        made += [(ref["key"], ref.get("version_id")) for ref in result.get("staged", [])]
    return made


@_retryable
def finish(
    s3: Any,
    source: dict[str, Any],
    planned: dict[str, Any],
    model: Model,
    settings: BatchSettings,
    execution: str | None = None,
) -> Step:
    """Assemble the outputs of a planned file whose shares have all been scored, write its
    job record, and delete the plan's prefix. A fault of S3 is raised as ``RetryableError``
    (nothing made visible stays: the record is written last)."""
    bucket, prefix, started = source["bucket"], planned["prefix"], planned["started"]
    job = _job(s3, source, model, settings)
    earlier = _finished(s3, bucket, source["key"], job.keys, source)
    if earlier is not None:  # a retry of a finish that wrote the record
        cleanup(s3, bucket, prefix)
        return Step({"status": earlier.record.get("status", earlier.status)}, earlier)
    about = {"split": {"shares": planned["shares"], "share_bytes": planned["share_bytes"]}}
    if execution:
        about["split"]["execution"] = execution
    found = _results(s3, bucket, prefix, int(planned["shares"]))
    done: list[dict[str, Any]] = []
    for index, entry in enumerate(found):
        if entry is None:
            reason = internal_error(AssertionError(f"share {index} left no result"))
            return _ended(s3, job, source, reason, started, prefix, about)
        share = entry[0]
        if share["status"] != "succeeded":
            _tally(job, done)
            reached = share.get("row_reached")
            return _ended(s3, job, source, share["reason"], started, prefix, about, reached)
        done.append(share)
    _tally(job, done)
    try:
        job.check_rows()
    except FileError as exc:
        return _ended(s3, job, source, str(exc), started, prefix, about)
    completed: list[tuple[str, str | None]] = []
    try:
        errors = [r["parts"]["errors"] for r in done]
        version = _assembled(s3, bucket, job.keys.errors, content_type("jsonl"), errors)
        completed.append((job.keys.errors, version))
        marks = [_mark(s3, bucket, prefix, completed)]
        parts = [r["parts"]["predictions"] for r in done]
        if job.compressed:
            version = _compressed(s3, bucket, job.keys.predictions, content_type(job.fmt), parts)
        else:
            version = _assembled(s3, bucket, job.keys.predictions, content_type(job.fmt), parts)
        completed.append((job.keys.predictions, version))
        marks.append(_mark(s3, bucket, prefix, completed))
        record = job.record(source, "succeeded", None, False, None, started, 0.0)
        _timed(record, started)
        record.update(about)
        _put_json(s3, bucket, job.keys.record, record)
    except Exception:
        withdraw(s3, bucket, completed)
        raise
    cleanup(s3, bucket, prefix, [*_made(planned, found), *marks])
    result = Result(
        source["key"],
        "succeeded",
        rows_read=job.read,
        rows_scored=job.scored,
        rows_rejected=job.rejected,
        duration=record["duration_seconds"],
        record=record,
    )
    return Step({"status": "succeeded"}, result)


def _tally(job: _Job, results: Sequence[dict[str, Any]]) -> None:
    """Merge the shares' counts into ``job`` (what the single path counts as it goes)."""
    ignored: dict[str, None] = {}
    for found in results:
        rows = found["rows"]
        job.read += rows["read"]
        job.scored += rows["scored"]
        job.rejected += rows["rejected"]
        job.drift.load_json(found["drift"])
        for kind, counts in found["noted"].items():
            job.noted[kind].update(counts)
        for name in found["ignored_columns"]:  # in the order the share met them
            if len(ignored) >= job.settings.max_columns:
                break
            ignored.setdefault(name)
    job.ignored_columns = sorted(ignored) if job.fmt == "jsonl" else list(ignored)


def _ended(
    s3: Any,
    job: _Job,
    source: dict[str, Any],
    reason: str,
    started: str,
    prefix: str,
    about: dict[str, Any],
    row_reached: int | None = None,
) -> Step:
    step = _failed_step(s3, job, source, reason, started, row_reached=row_reached, extra=about)
    cleanup(s3, source["bucket"], prefix)
    return step


def _mark(
    s3: Any, bucket: str, prefix: str, completed: list[tuple[str, str | None]]
) -> tuple[str, str | None]:
    """Note the outputs made visible so far under the prefix (``finishing.json``): a finish
    stopped before its job record (a Lambda timeout: no ``except`` runs) leaves them there for
    the abort to withdraw. Its key and version."""
    key = prefix + FINISHING
    made = s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps({"completed": completed}).encode(),
        ContentType="application/json",
    )
    return key, made.get("VersionId")


def _marked(s3: Any, bucket: str, prefix: str) -> list[tuple[str, str | None]]:
    """The outputs a finish made visible before it stopped (none: it did not get so far)."""
    found = _read_json(s3, bucket, prefix + FINISHING)
    if found is None:
        return []
    return [(str(key), version) for key, version in found[0].get("completed", [])]


@_retryable
def abort(
    s3: Any,
    source: dict[str, Any],
    error: dict[str, Any] | None,
    model: Model,
    settings: BatchSettings,
    planned: dict[str, Any] | None = None,
    execution: str | None = None,
) -> Step:
    """A step failed for good: the file's failed job record (the error's name and cause), and
    nothing left under the plan's prefix. A record a step already wrote for this object
    version stands. A fault of S3 is raised as ``RetryableError``."""
    bucket = source["bucket"]
    job = _job(s3, source, model, settings)
    prefix = (planned or {}).get("prefix") or _prefix(source)
    earlier = _finished(s3, bucket, source["key"], job.keys, source)
    if earlier is not None:  # a step wrote the record (a failure, or the outputs): it stands
        cleanup(s3, bucket, prefix)
        return Step({"status": earlier.record.get("status", earlier.status)}, earlier)
    withdraw(s3, bucket, _marked(s3, bucket, prefix))  # a finish stopped half-way
    error = error or {}
    cause = _cause(error.get("Cause"))
    reason = f"a step of the split path failed: {error.get('Error', 'unknown error')}"
    if cause:
        reason += f" ({cause})"
    started = (planned or {}).get("started") or _now()
    about: dict[str, Any] = {"split": {"shares": (planned or {}).get("shares")}}
    if execution:
        about["split"]["execution"] = execution
    return _ended(s3, job, source, reason, started, prefix, about)


def _cause(cause: Any) -> str:
    """The message of a Lambda error's cause (a JSON object with ``errorMessage``)."""
    if not isinstance(cause, str):
        return ""
    try:
        loaded = json.loads(cause)
    except ValueError:
        return cause
    if isinstance(loaded, dict):
        return str(loaded.get("errorMessage") or loaded.get("errorType") or "")
    return cause


def _prefix(source: dict[str, Any]) -> str:
    version = source.get("version_id") or source.get("etag") or "unversioned"
    return split.staging_prefix(source["key"], version)


def cleanup(
    s3: Any, bucket: str, prefix: str, made: list[tuple[str, str | None]] | None = None
) -> None:
    """Delete what a plan and its shares wrote: the versions in ``made`` (a file that
    succeeded: what the plan and the results name, without listing), else every version
    under the prefix (a failure may have left anything there). A version a retried attempt
    left is the bucket's lifecycle rule's to expire."""
    if not prefix.startswith(split.STAGING):
        raise ValueError(f"not a plan's prefix: {prefix}")
    if made is not None:
        named = [
            {"Key": key, **({"VersionId": version} if version else {})}
            for key, version in dict.fromkeys(made)
            if key.startswith(prefix)
        ]
        batches: Iterator[list[dict[str, str]]] = iter(
            [named[i : i + 1000] for i in range(0, len(named), 1000)]
        )
    else:
        batches = _versions(s3, bucket, prefix)
    for batch in batches:
        gone = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        for failed in gone.get("Errors", []):
            _log.warning("could not delete %s: %s", failed.get("Key"), failed.get("Message"))


def _versions(s3: Any, bucket: str, prefix: str) -> Iterator[list[dict[str, str]]]:
    """Every version and delete marker under ``prefix``, 1,000 at a time."""
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        listed = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        batch = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in listed]
        for start in range(0, len(batch), 1000):
            yield batch[start : start + 1000]
