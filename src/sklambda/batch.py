"""Score one file dropped under ``incoming/``: every row scored or rejected, exactly once.

For ``incoming/<path>`` the job writes ``errors/<path>.jsonl`` (every rejected row with its
reasons), ``predictions/<path>`` (the input's format and compression) and, last, the job record
``manifests/<path>.json`` (what was done; the prefix predates the name). Outputs are multipart
uploads completed only at the end, the errors file first; a failure after a completion deletes
the version it completed, so nothing is visible unless everything is. Rows are validated,
scored and formatted by the scoring core (``sklambda.scoring``), the same as online.

Exactly once: the job record makes a repeated delivery of the same object version a no-op.
Deliveries at the same time are serialised by a claim, ``claims/<sha256 of key and
version>.json``, created with a conditional write (``If-None-Match: *``): the invocation that
loses the race returns ``duplicate`` and writes nothing. The winner reads the job record again
under the claim and deletes the claim (its own version) when it is done. A claim left by an
invocation that crashed is taken over (a conditional write on its ETag) by the retry of the
same request (Lambda retries an asynchronous invocation under its request id) or, by anyone,
once the claimant's deadline has passed (its remaining time when it claimed, plus a minute).

Failures: a bad row is a rejected row; a file that cannot be scored is ``failed``, not
retryable, with a reason of at most ``REASON_CHARS`` characters, and its record says
``dead_letter: "pending"`` until the handler has sent the dead-letter message
(``dead_letter_sent``); a delivery that finds a letter pending returns the failure again, so
that it is sent. Only a fault of S3 or of the network is raised, for Lambda to retry.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import math
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sklambda.batchio import (
    Chunk,
    Format,
    S3Writer,
    TextSink,
    content_type,
    file_format,
    open_bytes,
    open_text,
    read_csv,
    read_jsonl,
)
from sklambda.drift import count as count_drift
from sklambda.drift import drift_counter
from sklambda.errors import (
    OUTSIDE_TRAINING_RANGE,
    UNSEEN_CATEGORY,
    ConfigurationError,
    FileError,
    NoteKind,
    OutOfTime,
    SklambdaError,
)
from sklambda.metrics import Dimension, MetricName, MetricSet, Unit
from sklambda.model import Model
from sklambda.schema import Header
from sklambda.scoring import Scored, csv_line, formatter, score_records, score_text, unscorable
from sklambda.settings import BatchSettings, variable

INCOMING = "incoming/"
JOB_RECORDS = "manifests/"
CLAIMS = "claims/"  # not watched by the trigger
GONE = {"NoSuchKey", "NoSuchVersion", "404"}
OBJECT_GONE = "the object no longer exists (deleted before it was read)"
REASON_CHARS = 500  # the longest reason a job record or a dead-letter message carries
CLAIM_SKEW_SECONDS = 60  # a claim outlives its claimant's deadline by this much
CLAIM_ATTEMPTS = 5
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputKeys:
    predictions: str
    errors: str
    record: str


def output_keys(key: str) -> OutputKeys:
    """Where the outputs of ``incoming/<path>`` go (prefixes the trigger does not watch)."""
    path = key[len(INCOMING) :]
    return OutputKeys(f"predictions/{path}", f"errors/{path}.jsonl", f"{JOB_RECORDS}{path}.json")


def claim_key(key: str, version: str | None) -> str:
    """The claim of one version (or ETag) of ``key``: of fixed length, however long the key."""
    identity = json.dumps([key, version or ""]).encode()
    return f"{CLAIMS}{hashlib.sha256(identity).hexdigest()}.json"


@dataclass
class Result:
    """What happened to one file (also what its job record says)."""

    key: str
    status: str  # succeeded, failed, duplicate, ignored
    reason: str | None = None
    retryable: bool = False
    rows_read: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    duration: float = 0.0
    record: dict[str, Any] = field(default_factory=dict)
    dead_letter: str | None = None  # "pending": the dead-letter message is still to be sent
    record_etag: str | None = None


def bounded(text: str, limit: int = REASON_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is a fault of S3, of another service or of the network (a retry may
    mend it), rather than one of the file or of ours (the same again on every retry)."""
    if isinstance(exc, (ClientError, BotoCoreError, ConnectionError, TimeoutError)):
        return True
    try:
        from urllib3.exceptions import HTTPError
    except ImportError:  # pragma: no cover - botocore depends on urllib3
        return False
    return isinstance(exc, HTTPError)


# What a file can do that a retry cannot mend (the reasons: ``file_failure``).
FILE_FAULTS = (FileError, OutOfTime, UnicodeDecodeError, gzip.BadGzipFile, zlib.error, EOFError)


def file_failure(exc: BaseException) -> str:
    """Why a file fails for ``exc``, one of ``FILE_FAULTS``: the same words whichever path
    (one invocation, or the planner and the workers of a split file) met it."""
    if isinstance(exc, UnicodeDecodeError):
        return f"the file is not UTF-8 text ({exc.reason})"
    if isinstance(exc, (gzip.BadGzipFile, zlib.error, EOFError)):
        return f"the file is not valid gzip ({exc})"
    return str(exc)


def internal_error(exc: BaseException) -> str:
    """Why a file fails for a fault of ours (the same on every retry)."""
    return f"internal error ({type(exc).__name__}: {exc})"


def withdraw(s3: Any, bucket: str, completed: list[tuple[str, str | None]]) -> None:
    """Delete the outputs a job made visible, newest first, each by the version it wrote (what
    was there before comes back); one that cannot be deleted is logged."""
    for key, version in reversed(completed):
        try:
            s3.delete_object(Bucket=bucket, Key=key, **({"VersionId": version} if version else {}))
        except Exception:
            _log.error("could not delete %s (version %s)", key, version, exc_info=True)


def read_job_record(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    found = _read_json(s3, bucket, key)
    return None if found is None else found[0]


def _read_json(s3: Any, bucket: str, key: str) -> tuple[dict[str, Any], str] | None:
    """An object's JSON and its ETag, or ``None`` when there is none."""
    try:
        got = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _code(exc) in GONE:
            return None
        raise
    loaded: dict[str, Any] = json.loads(got["Body"].read())
    return loaded, str(got.get("ETag", ""))


def _put_json(s3: Any, bucket: str, key: str, payload: dict[str, Any], **condition: str) -> str:
    """Write ``payload``; its ETag."""
    body = json.dumps(payload, indent=2).encode()
    put = s3.put_object(
        Bucket=bucket, Key=key, Body=body, ContentType="application/json", **condition
    )
    return str(put.get("ETag", ""))


def check_settings(model: Model, settings: BatchSettings) -> None:
    """Refuse, at init, passthrough columns named as an output column is."""
    reserved = {*formatter(model).csv_header([]), "label", "probabilities", "value"}
    clash = [name for name in settings.passthrough if name in reserved]
    if clash:
        raise ConfigurationError(
            f"{variable('passthrough_columns')} names {clash}, which the predictions already "
            f"carry ({sorted(reserved)})"
        )


def dead_letter_sent(s3: Any, bucket: str, result: Result) -> None:
    """Record that the dead-letter message of a failed file was sent (unless a newer job
    record has taken the place of the one it reports)."""
    record = {**result.record, "dead_letter": "sent"}
    condition = {"IfMatch": result.record_etag} if result.record_etag else {}
    try:
        result.record_etag = _put_json(
            s3, bucket, output_keys(result.key).record, record, **condition
        )
    except ClientError as exc:
        if _code(exc) not in ("PreconditionFailed", *GONE):
            raise
        return
    result.record, result.dead_letter = record, "sent"


def file_metrics(metrics: MetricSet, result: Result) -> None:
    """What one file adds to an invocation's metrics (the batch function's, or the split
    path's step that ends the file)."""
    if result.status == "succeeded":
        metrics.add(MetricName.FILES_PROCESSED, 1)
    elif result.status == "failed":
        metrics.add(MetricName.FILES_FAILED, 1)
    elif result.status == "split":
        metrics.add(MetricName.FILES_SPLIT, 1)
    else:  # a duplicate delivery, or a key that is not ours
        metrics.add(MetricName.FILES_SKIPPED, 1)
    if result.status in ("succeeded", "failed"):
        metrics.add(MetricName.ROWS_SCORED, result.rows_scored)
        metrics.add(MetricName.ROWS_REJECTED, result.rows_rejected)
        metrics.add(MetricName.BATCH_DURATION, result.duration, Unit.SECONDS)
        if result.duration > 0:
            rate = result.rows_read / result.duration
            metrics.add(MetricName.ROWS_PER_SECOND, rate, Unit.PER_SECOND)
    if result.status != "split":  # the file's outcome is the split path's to publish
        metrics.add_alarmed(MetricName.FILES_FAILED, 1.0 if result.status == "failed" else 0.0)
    drift = result.record.get("drift") or {}
    if result.status == "succeeded" and drift.get("status") in ("ok", "drift"):
        metrics.add_alarmed(MetricName.MAX_FEATURE_DRIFT, drift["max_psi"])
        metrics.add(MetricName.MAX_FEATURE_DRIFT, drift["max_psi"], Unit.NONE)
        if drift.get("prediction_psi") is not None:
            metrics.add(MetricName.PREDICTION_DRIFT, drift["prediction_psi"], Unit.NONE)
        metrics.add_per(MetricName.FEATURE_DRIFT, Dimension.FEATURE, drift["psi"], Unit.NONE)


def send_dead_letter(s3: Any, sqs: Any, queue_url: str, result: Result) -> None:
    """Send a failed file's dead-letter message, then record in its job record (in the
    source's bucket) that it was sent. Raises when either fails: the retry finds the letter
    pending and sends it."""
    bucket = result.record["source"]["bucket"]
    body = {
        "reason": bounded(str(result.reason)),
        "source": result.record.get("source"),
        "record": f"s3://{bucket}/{output_keys(result.key).record}",
    }
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    dead_letter_sent(s3, bucket, result)


def process_object(
    s3: Any,
    bucket: str,
    key: str,
    model: Model,
    settings: BatchSettings,
    *,
    version_id: str | None = None,
    etag: str | None = None,
    size: int | None = None,
    remaining_ms: Callable[[], int] = lambda: 15 * 60 * 1000,
    request_id: str | None = None,
    split: Callable[[dict[str, Any]], Result] | None = None,
) -> Result:
    """Score ``s3://bucket/key`` (a decoded key) and write its outputs and job record.

    Raises only for failures that a retry may mend (S3 errors); those leave a ``failed``,
    ``retryable`` job record. Everything a retry cannot mend is returned as ``failed``.
    ``request_id`` (the Lambda request's) lets a retry of the same request take over the
    claim its crashed attempt left. A file larger than ``settings.split_bytes`` is handed to
    ``split`` (when given: ``sklambda.shares.start_split``) with its source, unless its job
    record says it is done.
    """
    if not key.startswith(INCOMING):
        return Result(key, "ignored", reason=f"not under {INCOMING}")
    kind = file_format(key)
    if kind is None:
        return Result(key, "ignored", reason="not a .csv, .csv.gz, .jsonl or .jsonl.gz file")
    keys = output_keys(key)
    source: dict[str, Any] = {
        "bucket": bucket,
        "key": key,
        "version_id": version_id,
        "etag": etag,
        "size": size,
    }

    if not (version_id or etag) or (split is not None and size is None):
        # An event without them (a hand-made one): ask S3 which object this is.
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
            if not (version_id or etag):
                source["version_id"] = head.get("VersionId")
                source["etag"] = head.get("ETag", "").strip('"')
            if size is None:
                source["size"] = head.get("ContentLength")
        except ClientError as exc:
            if _code(exc) not in GONE:
                raise
    done = _finished(s3, bucket, key, keys, source)
    if done is not None:
        return done
    if split is not None and (source["size"] or 0) > settings.split_bytes:
        return split(source)
    claim = _Claim(s3, bucket, key, source, request_id)
    holder = claim.acquire(remaining_ms())
    if holder is not None:
        reason = f"being scored by another invocation (request {holder})"
        return Result(key, "duplicate", reason=bounded(reason))
    try:
        done = _finished(s3, bucket, key, keys, source)  # done while this one was claiming
        if done is not None:
            return done
        return _score(s3, bucket, key, keys, source, model, settings, kind, remaining_ms)
    finally:
        claim.release()


def _finished(
    s3: Any, bucket: str, key: str, keys: OutputKeys, source: dict[str, Any]
) -> Result | None:
    """The outcome of an earlier delivery of this object version, when nothing is left to do
    but, perhaps, send its dead-letter message."""
    found = _read_json(s3, bucket, keys.record)
    if found is None:
        return None
    previous, etag = found
    if not _same_object(previous.get("source", {}), source):
        return None
    status = previous.get("status")
    if not (status == "succeeded" or not previous.get("retryable", True)):
        return None  # a failure worth a retry: do it again
    if status == "failed" and previous.get("dead_letter") == "pending":
        rows = previous.get("rows") or {}
        return Result(
            key,
            "failed",
            reason=bounded(str(previous.get("reason"))),
            rows_read=rows.get("read", 0),
            rows_scored=rows.get("scored", 0),
            rows_rejected=rows.get("rejected", 0),
            duration=previous.get("duration_seconds") or 0.0,
            record=previous,
            dead_letter="pending",
            record_etag=etag,
        )
    return Result(key, "duplicate", reason=f"already {status}", record=previous)


def _score(
    s3: Any,
    bucket: str,
    key: str,
    keys: OutputKeys,
    source: dict[str, Any],
    model: Model,
    settings: BatchSettings,
    kind: tuple[Format, bool],
    remaining_ms: Callable[[], int],
) -> Result:
    started, clock = _now(), time.perf_counter()
    fmt, compressed = kind
    version_id = source["version_id"]
    job = _Job(s3, bucket, keys, model, settings, fmt, compressed, remaining_ms)
    reason, row_reached = None, None
    try:
        try:
            obj = s3.get_object(
                Bucket=bucket, Key=key, **({"VersionId": version_id} if version_id else {})
            )
        except ClientError as exc:
            if _code(exc) in GONE:
                raise FileError(OBJECT_GONE) from exc
            raise
        source["etag"] = source["etag"] or obj.get("ETag", "").strip('"')
        source["version_id"] = source["version_id"] or obj.get("VersionId")
        source["size"] = source["size"] if source["size"] is not None else obj.get("ContentLength")
        job.run(obj["Body"], source["size"])
        status = "succeeded"
    except FILE_FAULTS as exc:
        status, reason = "failed", file_failure(exc)
        row_reached = exc.row if isinstance(exc, OutOfTime) else None
    except Exception as exc:
        job.discard()
        if retryable(exc):
            # S3 trouble: worth a retry; record it, then let Lambda retry.
            reason = bounded(f"{type(exc).__name__}: {exc}")
            record = job.record(source, "failed", reason, True, None, started, clock)
            _put_json(s3, bucket, keys.record, record)
            raise
        # A fault of ours (or memory): the same on every retry, so not retried.
        _log.exception("internal error scoring s3://%s/%s", bucket, key)
        status, reason = "failed", internal_error(exc)
    if status != "succeeded":
        job.discard()
    reason = bounded(reason) if reason is not None else None
    record = job.record(source, status, reason, False, row_reached, started, clock)
    if status == "failed":
        record["dead_letter"] = "pending"  # until the handler has sent it
    try:
        record_etag = _put_json(s3, bucket, keys.record, record)
    except Exception:
        job.discard()  # outputs are visible only beside the record that names them
        raise
    return Result(
        key,
        status,
        reason=reason,
        retryable=False,
        rows_read=job.read,
        rows_scored=job.scored,
        rows_rejected=job.rejected,
        duration=record["duration_seconds"],
        record=record,
        dead_letter="pending" if status == "failed" else None,
        record_etag=record_etag,
    )


def _same_object(previous: dict[str, Any], source: dict[str, Any]) -> bool:
    if source.get("version_id"):
        return bool(previous.get("version_id") == source["version_id"])
    return bool(source.get("etag")) and previous.get("etag") == source["etag"]


class ClaimContention(SklambdaError):
    """The claim of an object version changed hands too often to take it (worth a retry)."""


class _Claim:
    """The right to score one object version, taken with S3 conditional writes."""

    def __init__(
        self, s3: Any, bucket: str, key: str, source: dict[str, Any], request_id: str | None
    ) -> None:
        self.s3, self.bucket, self.source, self.request_id = s3, bucket, source, request_id
        self.key = claim_key(key, source.get("version_id") or source.get("etag"))
        self._version: str | None = None
        self._etag: str | None = None
        self._replaced: list[str] = []  # versions of a dead claimant's claim we took over
        self.held = False

    def acquire(self, remaining_ms: int) -> str | None:
        """Take the claim: ``None`` once it is ours, else the request id of its live holder."""
        now = time.time()
        body = json.dumps(
            {
                "source": self.source,
                "request_id": self.request_id,
                "claimed_at": _iso(now),
                "expires_at": _iso(now + remaining_ms / 1000 + CLAIM_SKEW_SECONDS),
            }
        ).encode()
        put = {"Bucket": self.bucket, "Key": self.key, "Body": body}
        put["ContentType"] = "application/json"
        for attempt in range(CLAIM_ATTEMPTS):
            if attempt:
                time.sleep(0.05 * attempt)
            try:
                self._took(self.s3.put_object(**put, IfNoneMatch="*"))
                return None
            except ClientError as exc:
                if _code(exc) == "ConditionalRequestConflict":
                    continue  # a concurrent write of the same claim: look again
                if _code(exc) != "PreconditionFailed":
                    raise
            try:
                got = self.s3.get_object(Bucket=self.bucket, Key=self.key)
            except ClientError as exc:
                if _code(exc) in GONE:
                    continue  # released meanwhile
                raise
            holder, etag = _claim_body(got["Body"].read()), got["ETag"]
            if not self._may_take_over(holder, now):
                return str(holder.get("request_id") or "unknown")
            try:
                self._took(self.s3.put_object(**put, IfMatch=etag))
                if got.get("VersionId"):
                    self._replaced.append(got["VersionId"])
                return None
            except ClientError as exc:
                if _code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict", *GONE):
                    raise
                # another invocation took it over (or it was released) first: look again
        raise ClaimContention(f"could not take the claim {self.key} in {CLAIM_ATTEMPTS} attempts")

    def _took(self, put: dict[str, Any]) -> None:
        self.held, self._version, self._etag = True, put.get("VersionId"), put.get("ETag")

    def _may_take_over(self, holder: dict[str, Any], now: float) -> bool:
        if self.request_id and holder.get("request_id") == self.request_id:
            return True  # Lambda retrying this request: its earlier attempt has ended
        try:
            expires = datetime.fromisoformat(str(holder["expires_at"])).timestamp()
        except (KeyError, ValueError):
            return True  # a claim that says no deadline holds nothing
        return now > expires

    def release(self) -> None:
        """Delete this claim: the versions this invocation wrote and took over, each by its
        id (a later claimant's stays); without versioning, the object if it is still ours.
        A claim that stays only delays a later delivery of the same version until its
        deadline."""
        if not self.held:
            return
        self.held = False
        if self._version:
            doomed = [{"VersionId": v} for v in (*self._replaced, self._version)]
        else:
            doomed = [{"IfMatch": self._etag} if self._etag else {}]
        for condition in doomed:
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=self.key, **condition)
            except Exception:
                _log.warning("could not release the claim %s", self.key, exc_info=True)


def _claim_body(data: bytes) -> dict[str, Any]:
    """A claim's content; one that is not a JSON object claims nothing (it may be taken)."""
    try:
        loaded = json.loads(data)
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def _strict_json(value: Any) -> Any:
    """``value`` with the numbers JSON cannot carry (NaN, infinities) as their names."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict_json(v) for v in value]
    return value


def _json_safe(value: Any) -> bool:
    """Whether ``value`` can be written as strict JSON (no NaN, no infinity)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (dict, list)):
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            return False
    return True


UNSAFE_PASSTHROUGH = "NaN or an infinity cannot be copied to the predictions"


class _Rejected:
    """The rejected rows of one chunk: each row's raw content and every reason."""

    def __init__(self, broken: list[tuple[int, Any, str]]) -> None:
        self.reasons: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.raw: dict[int, Any] = {}
        for number, content, reason in broken:
            self.add(number, None, reason, content)

    def add(self, number: int, field: str | None, reason: str, content: Any) -> None:
        self.reasons[number].append({"field": field, "reason": reason})
        self.raw[number] = content

    def lines(self) -> str:
        out = []
        for n in sorted(self.reasons):
            line = {"row": n, "raw": self.raw[n], "errors": self.reasons[n]}
            try:
                out.append(json.dumps(line, default=str, allow_nan=False))
            except ValueError:  # NaN or an infinity in the row: the errors file stays JSON
                line["raw"] = _strict_json(self.raw[n])
                out.append(json.dumps(line, default=str))
        return "".join(text + "\n" for text in out)


class _Job:
    """The streaming part: read chunks, hand them to the scoring core, write what it says."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        keys: OutputKeys,
        model: Model,
        settings: BatchSettings,
        fmt: Format,
        compressed: bool,
        remaining_ms: Callable[[], int],
    ) -> None:
        self.s3, self.bucket, self.keys = s3, bucket, keys
        self.model, self.settings = model, settings
        self.fmt, self.compressed, self.remaining_ms = fmt, compressed, remaining_ms
        self.read = self.scored = self.rejected = 0
        self.first_row = 1
        self.passthrough = list(settings.passthrough)
        features = set(model.schema.names)
        self._stripped = {name for name in self.passthrough if name not in features}
        self._known = features | set(self.passthrough)
        self.ignored_columns: list[str] = []
        self._ignored: dict[str, None] = {}  # in the order they were met
        self._sinks: list[TextSink] = []
        self._completed: list[tuple[str, str | None]] = []  # (key, version) made visible
        self.format = formatter(model)
        self.drift = drift_counter(model.manifest.baselines)
        # rows scored with a category never seen, or a number outside the training range, by
        # feature
        self.noted: dict[NoteKind, Counter[str]] = {
            UNSEEN_CATEGORY: Counter(),
            OUTSIDE_TRAINING_RANGE: Counter(),
        }

    # --- outputs ------------------------------------------------------------------------

    def _open(self, key: str, compressed: bool, content_type: str) -> TextSink:
        sink = TextSink(S3Writer(self.s3, self.bucket, key, content_type), compressed)
        self._sinks.append(sink)
        return sink

    def _complete(self, sink: TextSink) -> None:
        sink.finish()
        self._completed.append((sink.writer.key, sink.writer.version_id))

    def outputs(self) -> dict[str, dict[str, Any]]:
        """The outputs written (``errors``, ``predictions``): key, version and size of each."""
        return {
            name: {
                "key": sink.writer.key,
                "version_id": sink.writer.version_id,
                "bytes": sink.writer.written,
            }
            for name, sink in zip(("errors", "predictions"), self._sinks, strict=True)
        }

    def discard(self) -> None:
        """Abort the uploads under way and delete the outputs already completed (the version
        this job wrote: what was there before comes back), so that none is left visible."""
        for sink in self._sinks:
            try:
                sink.abort()
            except Exception:  # the bucket's lifecycle rule ends an upload left behind
                _log.warning("could not abort the upload of %s", sink.writer.key, exc_info=True)
        withdraw(self.s3, self.bucket, self._completed)
        self._completed.clear()

    def record(
        self,
        source: dict[str, Any],
        status: str,
        reason: str | None,
        retryable: bool,
        row_reached: int | None,
        started: str,
        clock: float,
    ) -> dict[str, Any]:
        """The job record: what was read, scored and rejected, by which model, and why not;
        how many rows were scored with a category never seen in training or a number outside
        the training range, by feature (``unseen_categories``, ``outside_training_range``)."""
        duration = time.perf_counter() - clock
        settings = self.settings
        record: dict[str, Any] = {
            "source": source,
            "model": {
                "name": self.model.name,
                "version": self.model.version,
                "runtime": self.model.runtime,
            },
            "status": status,
            "rows": {"read": self.read, "scored": self.scored, "rejected": self.rejected},
            "started": started,
            "finished": _now(),
            "duration_seconds": round(duration, 3),
            "rows_per_second": round(self.read / duration, 1) if duration > 0 else None,
            "settings": {
                "chunk_rows": settings.chunk_rows,
                "passthrough_columns": list(settings.passthrough),
                "unknown_columns": settings.unknown_columns,
                "max_line_bytes": settings.max_line_bytes,
                "max_columns": settings.max_columns,
                "max_expansion": settings.max_expansion,
            },
        }
        if status == "succeeded":
            record["outputs"] = {"predictions": self.keys.predictions, "errors": self.keys.errors}
            report = self.drift.report()
            record["drift"] = {
                "status": report["status"],
                "max_psi": report.get("max_psi"),
                "max_feature": report.get("max_feature"),
                "psi": {k: v["psi"] for k, v in report["features"].items()},
                "prediction_psi": report.get("prediction", {}).get("psi"),
                # bin counts of the scored rows, to merge into a window's drift report
                "counts": self.drift.to_json(),
            }
        else:
            record["reason"] = reason
            record["retryable"] = retryable
            if row_reached is not None:
                record["row_reached"] = row_reached
        if self.ignored_columns:
            record["ignored_columns"] = self.ignored_columns
        # scored as the pipeline handles them (the API notes them per instance)
        unseen, outside = self.noted[UNSEEN_CATEGORY], self.noted[OUTSIDE_TRAINING_RANGE]
        if unseen:
            record["unseen_categories"] = dict(sorted(unseen.items()))
        if outside:
            record["outside_training_range"] = dict(sorted(outside.items()))
        return record

    # --- the loop -----------------------------------------------------------------------

    def run(
        self, body: Any, size: int | None, *, share: int | None = None, first_row: int = 1
    ) -> None:
        """Score ``body``: the whole file, or (``share``: its index) one share of a split
        file, whose rows are numbered from ``first_row`` on; a CSV share's body is the file's
        header, then its own bytes. Only the whole file and the first share write the
        predictions' header, and only the whole file fails for having no rows (a share may
        have none: the finisher says whether the file has)."""
        settings = self.settings
        self.first_row = first_row
        errors = self._open(self.keys.errors, False, content_type("jsonl"))
        predictions = self._open(self.keys.predictions, self.compressed, content_type(self.fmt))
        expansion = settings.max_expansion
        if self.fmt == "csv":
            text = open_text(body, self.compressed, size=size, max_expansion=expansion)
            names, chunks = read_csv(
                text,
                settings.chunk_rows,
                max_line_bytes=settings.max_line_bytes,
                max_columns=settings.max_columns,
                first_row=first_row,
            )
            header = self.model.schema.check_header(
                names, unknown=settings.unknown_columns, passthrough=self.passthrough
            )
            self.ignored_columns = header.ignored
            if not share:
                predictions.write(csv_line(self.format.csv_header(self.passthrough)))
            for chunk in self._guarded(chunks):
                self._csv_chunk(chunk, names, header, predictions, errors)
        else:
            data = open_bytes(body, self.compressed, size=size, max_expansion=expansion)
            lines = read_jsonl(
                data,
                settings.chunk_rows,
                max_line_bytes=settings.max_line_bytes,
                first_row=first_row,
            )
            for chunk in self._guarded(lines):
                self._jsonl_chunk(chunk, predictions, errors)
            # a share keeps the order they were met in, for the finisher to merge as the
            # single path meets them (the first max_columns, chunk by chunk)
            self.ignored_columns = sorted(self._ignored) if share is None else list(self._ignored)
        if share is None:
            self.check_rows()
        # The errors first: predictions are never visible without them.
        self._complete(errors)
        self._complete(predictions)

    def check_rows(self) -> None:
        """A file without a row fails (the reasons of both paths)."""
        if self.read == 0:
            raise FileError(
                "the file has a header but no rows" if self.fmt == "csv" else "the file is empty"
            )

    def _guarded(self, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        guard_ms = self.settings.time_guard_seconds * 1000
        for chunk in chunks:
            left = self.remaining_ms()
            if left < guard_ms:
                raise OutOfTime(self.first_row - 1 + self.read, left / 1000)
            yield chunk

    def _count(self, scored: Scored) -> None:
        count_drift(self.drift, scored)
        for note in scored.notes:
            if note.field is not None:
                self.noted[note.kind][note.field] += 1
        self.scored += len(scored.rows)

    def _csv_chunk(
        self,
        chunk: Chunk,
        names: list[str],
        header: Header,
        out: TextSink,
        errors: TextSink,
    ) -> None:
        self.read += chunk.size
        rejected = _Rejected(chunk.broken)
        n = len(chunk.numbers)
        if n:
            at = header.positions
            cells = {name: chunk.columns[at[name]] for name in self.model.schema.names}

            def score(start: int, stop: int) -> Scored:
                part = {k: _window(v, start, stop, n) for k, v in cells.items()}
                return score_text(self.model, part, stop - start)

            parts, failed = _bisected(score, n)
            for i, exc in failed:
                raw = dict(zip(names, chunk.row_cells(i), strict=True))
                rejected.add(chunk.numbers[i], None, unscorable(exc), raw)
            for start, stop, scored in parts:
                numbers = _window(chunk.numbers, start, stop, n)
                for e in scored.errors:
                    raw = dict(zip(names, chunk.row_cells(start + e.row), strict=True))
                    rejected.add(numbers[e.row], e.field, e.reason, raw)
                keep = (lambda column: column) if not scored.errors else _picker(scored.rows)
                passthrough = [
                    keep(_window(chunk.columns[at[name]], start, stop, n))
                    for name in header.passthrough
                ]
                out.write(self.format.csv_rows(keep(numbers), passthrough, scored.scores))
                self._count(scored)
        self._write_errors(errors, rejected)

    def _jsonl_chunk(self, chunk: Chunk, out: TextSink, errors: TextSink) -> None:
        self.read += chunk.size
        rejected = _Rejected(chunk.broken)
        numbers, records, raws = chunk.numbers, chunk.records, chunk.records
        copied: dict[str, list[Any]] = {name: [] for name in self.passthrough}
        if copied:
            numbers, records, raws = [], [], []
            for number, record in zip(chunk.numbers, chunk.records, strict=True):
                is_dict = isinstance(record, dict)
                values = [record.get(n) for n in copied] if is_dict else [None] * len(copied)
                unsafe = [n for n, v in zip(copied, values, strict=True) if not _json_safe(v)]
                if unsafe:
                    for name in unsafe:
                        rejected.add(number, name, UNSAFE_PASSTHROUGH, record)
                    continue
                for column, value in zip(copied.values(), values, strict=True):
                    column.append(value)
                numbers.append(number)
                raws.append(record)
                if is_dict and self._stripped:
                    record = {k: v for k, v in record.items() if k not in self._stripped}
                records.append(record)
        if self.settings.unknown_columns == "ignore":
            self._note_ignored(records)
        n = len(records)
        unknown = self.settings.unknown_columns

        def score(start: int, stop: int) -> Scored:
            return score_records(self.model, _window(records, start, stop, n), unknown=unknown)

        parts, failed = _bisected(score, n) if n else ([], [])
        for i, exc in failed:
            rejected.add(numbers[i], None, unscorable(exc), raws[i])
        for start, stop, scored in parts:
            part_numbers = _window(numbers, start, stop, n)
            for e in scored.errors:
                rejected.add(part_numbers[e.row], e.field, e.reason, raws[start + e.row])
            pick = _picker(scored.rows)
            passthrough = {
                name: pick(_window(values, start, stop, n)) for name, values in copied.items()
            }
            out.write(self.format.json_rows(pick(part_numbers), passthrough, scored.scores))
            self._count(scored)
        self._write_errors(errors, rejected)

    def _note_ignored(self, records: list[Any]) -> None:
        """Collect the keys the model lacks (at most ``max_columns`` names)."""
        if len(self._ignored) >= self.settings.max_columns:
            return
        keys: set[str] = set()
        for record in records:
            if type(record) is dict:
                keys.update(record)
        for name in sorted(keys - self._known):
            if len(self._ignored) >= self.settings.max_columns:
                break
            self._ignored.setdefault(name)

    def _write_errors(self, errors: TextSink, rejected: _Rejected) -> None:
        if rejected.reasons:
            errors.write(rejected.lines())
            self.rejected += len(rejected.reasons)


def _picker(rows: list[int]) -> Callable[[list[Any]], list[Any]]:
    """Select the scored rows' entries of a chunk-long column."""
    return lambda column: [column[i] for i in rows]


def _window(values: list[Any], start: int, stop: int, n: int) -> list[Any]:
    """``values[start:stop]``, without a copy when that is all ``n`` of them."""
    return values if start == 0 and stop == n else values[start:stop]


def _bisected(
    score: Callable[[int, int], Scored], n: int
) -> tuple[list[tuple[int, int, Scored]], list[tuple[int, BaseException]]]:
    """Score rows ``0..n`` in one go, or, when that raises, in halves and halves of halves:
    one row that makes the scoring core raise is one rejected row (found in about
    ``2 log2(n)`` more calls), not a failed file. When no row at all can be scored, the fault
    is not the rows': the first error is raised. S3's errors are always raised."""
    parts: list[tuple[int, int, Scored]] = []
    failed: list[tuple[int, BaseException]] = []
    first: BaseException | None = None
    todo = [(0, n)]
    while todo:
        start, stop = todo.pop()
        try:
            parts.append((start, stop, score(start, stop)))
        except Exception as exc:
            if retryable(exc):
                raise
            first = first or exc
            if stop - start == 1:
                failed.append((start, exc))
            else:
                middle = (start + stop) // 2
                todo += [(middle, stop), (start, middle)]
    if not parts and first is not None:
        raise first
    if failed:
        _log.warning("%d rows could not be scored", len(failed), exc_info=first)
    parts.sort(key=lambda part: part[0])
    return parts, failed
