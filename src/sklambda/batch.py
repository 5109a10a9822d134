"""Score one file dropped under ``incoming/``: every row scored or rejected, exactly once.

For ``incoming/<path>`` the job writes ``predictions/<path>`` (the input's format and
compression), ``errors/<path>.jsonl`` (every rejected row with its reasons) and, last, the
job record ``manifests/<path>.json`` (what was done; the prefix predates the name). Outputs are
multipart uploads completed only at the end, so a failure leaves none of them half-written. The
job record makes a repeated delivery of the same object version a no-op. Rows are validated,
scored and formatted by the scoring core (``sklambda.scoring``), the same as online.
"""

from __future__ import annotations

import gzip
import json
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from sklambda.batchio import (
    Chunk,
    Format,
    S3Writer,
    TextSink,
    file_format,
    open_text,
    read_csv,
    read_jsonl,
)
from sklambda.drift import count as count_drift
from sklambda.drift import drift_counter
from sklambda.errors import FileError, OutOfTime
from sklambda.model import Model
from sklambda.schema import Header
from sklambda.scoring import Scored, csv_line, formatter, score_records, score_text
from sklambda.settings import BatchSettings

INCOMING = "incoming/"
JOB_RECORDS = "manifests/"
GONE = {"NoSuchKey", "NoSuchVersion", "404"}


@dataclass(frozen=True)
class OutputKeys:
    predictions: str
    errors: str
    record: str


def output_keys(key: str) -> OutputKeys:
    """Where the outputs of ``incoming/<path>`` go (prefixes the trigger does not watch)."""
    path = key[len(INCOMING) :]
    return OutputKeys(f"predictions/{path}", f"errors/{path}.jsonl", f"{JOB_RECORDS}{path}.json")


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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def read_job_record(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in GONE:
            return None
        raise
    loaded: dict[str, Any] = json.loads(body)
    return loaded


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
) -> Result:
    """Score ``s3://bucket/key`` (a decoded key) and write its outputs and job record.

    Raises only for failures that a retry may mend (S3 errors); those leave a ``failed``,
    ``retryable`` job record. Everything a retry cannot mend is returned as ``failed``.
    """
    if not key.startswith(INCOMING):
        return Result(key, "ignored", reason=f"not under {INCOMING}")
    kind = file_format(key)
    if kind is None:
        return Result(key, "ignored", reason="not a .csv, .csv.gz, .jsonl or .jsonl.gz file")
    fmt, compressed = kind
    keys = output_keys(key)
    source = {"bucket": bucket, "key": key, "version_id": version_id, "etag": etag, "size": size}

    if not (version_id or etag):
        # An event without them (a hand-made one): ask S3 which object this is.
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
            source["version_id"] = head.get("VersionId")
            source["etag"] = head.get("ETag", "").strip('"')
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in GONE:
                raise
    previous = read_job_record(s3, bucket, keys.record)
    if previous is not None and _same_object(previous.get("source", {}), source):
        done = previous.get("status") == "succeeded" or not previous.get("retryable", True)
        if done:
            return Result(
                key, "duplicate", reason=f"already {previous.get('status')}", record=previous
            )

    started, clock = _now(), time.perf_counter()
    job = _Job(s3, bucket, keys, model, settings, fmt, compressed, remaining_ms)
    retryable, reason, row_reached = False, None, None
    try:
        try:
            obj = s3.get_object(
                Bucket=bucket, Key=key, **({"VersionId": version_id} if version_id else {})
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in GONE:
                raise FileError("the object no longer exists (deleted before it was read)") from exc
            raise
        source["etag"] = source["etag"] or obj.get("ETag", "").strip('"')
        source["version_id"] = source["version_id"] or obj.get("VersionId")
        source["size"] = source["size"] if source["size"] is not None else obj.get("ContentLength")
        job.run(obj["Body"])
        status = "succeeded"
    except FileError as exc:
        status, reason = "failed", str(exc)
    except OutOfTime as exc:
        status, reason, row_reached = "failed", str(exc), exc.row
    except UnicodeDecodeError as exc:
        status, reason = "failed", f"the file is not UTF-8 text ({exc.reason})"
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        status, reason = "failed", f"the file is not valid gzip ({exc})"
    except Exception as exc:
        # S3 trouble (or a fault of ours): worth a retry; record it, then let Lambda retry.
        job.abort()
        status, reason, retryable = "failed", f"{type(exc).__name__}: {exc}", True
        record = job.record(source, status, reason, retryable, None, started, clock)
        _put_json(s3, bucket, keys.record, record)
        raise
    if status != "succeeded":
        job.abort()
    record = job.record(source, status, reason, retryable, row_reached, started, clock)
    _put_json(s3, bucket, keys.record, record)
    return Result(
        key,
        status,
        reason=reason,
        retryable=retryable,
        rows_read=job.read,
        rows_scored=job.scored,
        rows_rejected=job.rejected,
        duration=record["duration_seconds"],
        record=record,
    )


def _same_object(previous: dict[str, Any], source: dict[str, Any]) -> bool:
    if source.get("version_id"):
        return bool(previous.get("version_id") == source["version_id"])
    return bool(source.get("etag")) and previous.get("etag") == source["etag"]


def _put_json(s3: Any, bucket: str, key: str, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, indent=2).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


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
        return "".join(
            json.dumps({"row": n, "raw": self.raw[n], "errors": self.reasons[n]}, default=str)
            + "\n"
            for n in sorted(self.reasons)
        )


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
        self.passthrough = [settings.id_column] if settings.id_column else []
        self.ignored_columns: list[str] = []
        self._sinks: list[TextSink] = []
        self.format = formatter(model)
        self.drift = drift_counter(model.manifest.baselines)
        self.unseen: Counter[str] = Counter()  # rows scored with a category never seen, by feature

    # --- outputs ------------------------------------------------------------------------

    def _open(self, key: str, compressed: bool, content_type: str) -> TextSink:
        sink = TextSink(S3Writer(self.s3, self.bucket, key, content_type), compressed)
        self._sinks.append(sink)
        return sink

    def abort(self) -> None:
        for sink in self._sinks:
            sink.abort()

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
        """The job record: what was read, scored and rejected, by which model, and why not."""
        duration = time.perf_counter() - clock
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
                "chunk_rows": self.settings.chunk_rows,
                "id_column": self.settings.id_column,
                "unknown_columns": self.settings.unknown_columns,
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
        if self.unseen:
            # scored as the pipeline handles unseen categories (the API says so per instance)
            record["unseen_categories"] = dict(sorted(self.unseen.items()))
        return record

    # --- the loop -----------------------------------------------------------------------

    def run(self, body: Any) -> None:
        text = open_text(body, self.compressed)
        content = "text/csv" if self.fmt == "csv" else "application/x-ndjson"
        predictions = self._open(self.keys.predictions, self.compressed, content)
        errors = self._open(self.keys.errors, False, "application/x-ndjson")
        if self.fmt == "csv":
            names, chunks = read_csv(text, self.settings.chunk_rows)
            header = self.model.schema.check_header(
                names, unknown=self.settings.unknown_columns, passthrough=self.passthrough
            )
            self.ignored_columns = header.ignored
            predictions.write(csv_line(self.format.csv_header(self.passthrough)))
            for chunk in self._guarded(chunks):
                self._csv_chunk(chunk, names, header, predictions, errors)
            if self.read == 0:
                raise FileError("the file has a header but no rows")
        else:
            for chunk in self._guarded(read_jsonl(text, self.settings.chunk_rows)):
                self._jsonl_chunk(chunk, predictions, errors)
            if self.read == 0:
                raise FileError("the file is empty")
        predictions.finish()
        errors.finish()

    def _guarded(self, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        guard_ms = self.settings.time_guard_seconds * 1000
        for chunk in chunks:
            left = self.remaining_ms()
            if left < guard_ms:
                raise OutOfTime(self.read, left / 1000)
            yield chunk

    def _count(self, scored: Scored) -> None:
        count_drift(self.drift, scored)
        self.unseen.update(note.field for note in scored.notes if note.field)
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
            scored = score_text(self.model, cells, n)
            for e in scored.errors:
                raw = dict(zip(names, chunk.row_cells(e.row), strict=True))
                rejected.add(chunk.numbers[e.row], e.field, e.reason, raw)
            keep = (lambda column: column) if not scored.errors else _picker(scored.rows)
            passthrough = [keep(chunk.columns[at[name]]) for name in header.passthrough]
            out.write(self.format.csv_rows(keep(chunk.numbers), passthrough, scored.scores))
            self._count(scored)
        self._write_errors(errors, rejected)

    def _jsonl_chunk(self, chunk: Chunk, out: TextSink, errors: TextSink) -> None:
        self.read += chunk.size
        rejected = _Rejected(chunk.broken)
        copied: dict[str, list[Any]] = {name: [] for name in self.passthrough}
        records = []
        for record in chunk.records:
            if copied and isinstance(record, dict):
                for name, values in copied.items():
                    values.append(record.get(name))
                record = {k: v for k, v in record.items() if k not in copied}
            else:
                for values in copied.values():
                    values.append(None)
            records.append(record)
        scored = score_records(self.model, records, unknown=self.settings.unknown_columns)
        for e in scored.errors:
            rejected.add(chunk.numbers[e.row], e.field, e.reason, chunk.records[e.row])
        pick = _picker(scored.rows)
        passthrough = {name: pick(values) for name, values in copied.items()}
        out.write(self.format.json_rows(pick(chunk.numbers), passthrough, scored.scores))
        self._count(scored)
        self._write_errors(errors, rejected)

    def _write_errors(self, errors: TextSink, rejected: _Rejected) -> None:
        if rejected.reasons:
            errors.write(rejected.lines())
            self.rejected += len(rejected.reasons)


def _picker(rows: list[int]) -> Callable[[list[Any]], list[Any]]:
    """Select the scored rows' entries of a chunk-long column."""
    return lambda column: [column[i] for i in rows]
