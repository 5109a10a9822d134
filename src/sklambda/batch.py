"""Score one file dropped under ``incoming/``: every row scored or rejected, exactly once.

For ``incoming/<path>`` the job writes ``predictions/<path>`` (the input's format and
compression), ``errors/<path>.jsonl`` (every rejected row with its reasons) and, last,
``manifests/<path>.json`` (what was done). Outputs are multipart uploads completed only at the
end, so a failure leaves none of them half-written. The manifest makes a repeated delivery of
the same object version a no-op.
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

import numpy as np
from botocore.exceptions import ClientError

from sklambda.batchio import (
    Chunk,
    FileError,
    Format,
    S3Writer,
    TextSink,
    csv_field,
    csv_line,
    file_format,
    open_text,
    read_csv,
    read_jsonl,
)
from sklambda.model import Model, Scores
from sklambda.monitor import count as count_drift
from sklambda.monitor import drift_counter
from sklambda.predict import format_predictions
from sklambda.settings import Settings

INCOMING = "incoming/"
GONE = {"NoSuchKey", "NoSuchVersion", "404"}


class TimeGuard(Exception):
    """Too little Lambda time is left to finish the file."""

    def __init__(self, row: int, seconds_left: float) -> None:
        super().__init__(
            f"stopped after row {row}: {seconds_left:.0f} s of Lambda time left, too little to "
            "finish the file in this invocation"
        )
        self.row = row


@dataclass(frozen=True)
class OutputKeys:
    predictions: str
    errors: str
    manifest: str


def output_keys(key: str) -> OutputKeys:
    """Where the outputs of ``incoming/<path>`` go (prefixes the trigger does not watch)."""
    path = key[len(INCOMING) :]
    return OutputKeys(f"predictions/{path}", f"errors/{path}.jsonl", f"manifests/{path}.json")


@dataclass
class Result:
    """What happened to one file (also what its manifest says)."""

    key: str
    status: str  # succeeded, failed, duplicate, ignored
    reason: str | None = None
    retryable: bool = False
    rows_read: int = 0
    rows_scored: int = 0
    rows_rejected: int = 0
    duration: float = 0.0
    manifest: dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def read_batch_manifest(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
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
    settings: Settings,
    *,
    version_id: str | None = None,
    etag: str | None = None,
    size: int | None = None,
    remaining_ms: Callable[[], int] = lambda: 15 * 60 * 1000,
) -> Result:
    """Score ``s3://bucket/key`` (a decoded key) and write its outputs and manifest.

    Raises only for failures that a retry may mend (S3 errors); those leave a ``failed``,
    ``retryable`` manifest. Everything a retry cannot mend is returned as ``failed``.
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
    previous = read_batch_manifest(s3, bucket, keys.manifest)
    if previous is not None and _same_object(previous.get("source", {}), source):
        done = previous.get("status") == "succeeded" or not previous.get("retryable", True)
        if done:
            return Result(
                key, "duplicate", reason=f"already {previous.get('status')}", manifest=previous
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
    except TimeGuard as exc:
        status, reason, row_reached = "failed", str(exc), exc.row
    except UnicodeDecodeError as exc:
        status, reason = "failed", f"the file is not UTF-8 text ({exc.reason})"
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        status, reason = "failed", f"the file is not valid gzip ({exc})"
    except Exception as exc:
        # S3 trouble (or a fault of ours): worth a retry; record it, then let Lambda retry.
        job.abort()
        status, reason, retryable = "failed", f"{type(exc).__name__}: {exc}", True
        manifest = job.manifest(source, status, reason, retryable, None, started, clock)
        _put_json(s3, bucket, keys.manifest, manifest)
        raise
    if status != "succeeded":
        job.abort()
    manifest = job.manifest(source, status, reason, retryable, row_reached, started, clock)
    _put_json(s3, bucket, keys.manifest, manifest)
    return Result(
        key,
        status,
        reason=reason,
        retryable=retryable,
        rows_read=job.read,
        rows_scored=job.scored,
        rows_rejected=job.rejected,
        duration=manifest["duration_seconds"],
        manifest=manifest,
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
    """The streaming part: read chunks, validate, score, write."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        keys: OutputKeys,
        model: Model,
        settings: Settings,
        fmt: Format,
        compressed: bool,
        remaining_ms: Callable[[], int],
    ) -> None:
        self.s3, self.bucket, self.keys, self.model, self.settings = (
            s3,
            bucket,
            keys,
            model,
            settings,
        )
        self.fmt, self.compressed, self.remaining_ms = fmt, compressed, remaining_ms
        self.read = self.scored = self.rejected = 0
        self.ignored_columns: list[str] = []
        self._sinks: list[TextSink] = []
        classes = [str(c) for c in model.classes or ()]
        self._label_text = {c: csv_field(c) for c in classes}
        self._classes = classes
        # Nine significant digits give back every float32 exactly (the onnx runtime's outputs,
        # when it runs in float32) at a third of the cost of repr; doubles keep all their digits.
        onnx = model.manifest.runtime.onnx
        single = model.runtime == "onnx" and onnx is not None and onnx.input_dtype == "float32"
        self._number = "%.9g" if single else "%r"
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

    def manifest(
        self,
        source: dict[str, Any],
        status: str,
        reason: str | None,
        retryable: bool,
        row_reached: int | None,
        started: str,
        clock: float,
    ) -> dict[str, Any]:
        duration = time.perf_counter() - clock
        manifest: dict[str, Any] = {
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
            manifest["outputs"] = {"predictions": self.keys.predictions, "errors": self.keys.errors}
            report = self.drift.report()
            manifest["drift"] = {
                "status": report["status"],
                "max_psi": report.get("max_psi"),
                "max_feature": report.get("max_feature"),
                "psi": {k: v["psi"] for k, v in report["features"].items()},
                "prediction_psi": report.get("prediction", {}).get("psi"),
                # bin counts of the scored rows, to merge into a window's drift report
                "counts": self.drift.to_json(),
            }
        else:
            manifest["reason"] = reason
            manifest["retryable"] = retryable
            if row_reached is not None:
                manifest["row_reached"] = row_reached
        if self.ignored_columns:
            manifest["ignored_columns"] = self.ignored_columns
        if self.unseen:
            # scored as the pipeline handles unseen categories (the API says so per instance)
            manifest["unseen_categories"] = dict(sorted(self.unseen.items()))
        return manifest

    # --- the loop -----------------------------------------------------------------------

    def run(self, body: Any) -> None:
        text = open_text(body, self.compressed)
        content = "text/csv" if self.fmt == "csv" else "application/x-ndjson"
        predictions = self._open(self.keys.predictions, self.compressed, content)
        errors = self._open(self.keys.errors, False, "application/x-ndjson")
        if self.fmt == "csv":
            header, chunks = read_csv(text, self.settings.chunk_rows)
            layout = self._check_header(header)
            predictions.write(csv_line(self._prediction_header()))
            for chunk in self._guarded(chunks):
                self._csv_chunk(chunk, header, layout, predictions, errors)
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
                raise TimeGuard(self.read, left / 1000)
            yield chunk

    def _check_header(self, header: list[str]) -> dict[str, int]:
        names = self.model.schema.names
        missing = [n for n in names if n not in header]
        if missing:
            raise FileError(f"missing required columns {missing}")
        extra = [h for h in header if h not in names and h != self.settings.id_column]
        if extra and self.settings.unknown_columns == "reject":
            raise FileError(
                f"unknown columns {extra} (SKLAMBDA_UNKNOWN_COLUMNS=ignore would drop them)"
            )
        self.ignored_columns = extra
        return {h: i for i, h in enumerate(header)}

    def _prediction_header(self) -> list[str]:
        head = ["row"]
        if self.settings.id_column:
            head.append(self.settings.id_column)
        if self.model.task == "regression":
            return [*head, "value"]
        head.append("label")
        if self.model.manifest.output.probabilities:
            head += [f"probability_{c}" for c in self._classes]
        return head

    def _csv_chunk(
        self,
        chunk: Chunk,
        header: list[str],
        layout: dict[str, int],
        out: TextSink,
        errors: TextSink,
    ) -> None:
        self.read += chunk.size
        rejected = _Rejected(chunk.broken)
        n = len(chunk.numbers)
        if n:
            by_name = {name: chunk.columns[layout[name]] for name in self.model.schema.names}
            checked = self.model.schema.validate_text(by_name, n)
            for e in checked.errors:
                cells = dict(zip(header, chunk.row_cells(e.row), strict=True))
                rejected.add(chunk.numbers[e.row], e.field, e.reason, cells)
            scores = self.model.score_columns(checked.columns)
            count_drift(self.drift, self.model, checked.columns, scores)
            self.unseen.update(note.field for note in checked.notes if note.field)
            numbers = (
                chunk.numbers if not checked.errors else [chunk.numbers[i] for i in checked.rows]
            )
            id_index = layout.get(self.settings.id_column or "")
            ids = None
            if id_index is not None:
                column = chunk.columns[id_index]
                ids = column if not checked.errors else [column[i] for i in checked.rows]
            out.write(self._csv_rows(numbers, ids, scores))
            self.scored += len(checked.rows)
        self._write_errors(errors, rejected)

    def _csv_rows(self, numbers: list[int], ids: list[str] | None, scores: Scores) -> str:
        """Prediction lines of a chunk, formatted in one pass of the % operator."""
        columns: list[list[Any]] = [numbers]
        template = ["%d"]
        if ids is not None:
            columns.append([csv_field(i) for i in ids])
            template.append("%s")
        if scores.values is not None:
            columns.append(scores.values.tolist())
            template.append(self._number)
        else:
            assert scores.labels is not None
            labels = scores.labels.tolist()
            texts = list(map(self._label_text.get, labels))
            if None in texts:  # labels that are not strings (ints, booleans)
                texts = [self._label_text.get(str(x)) or csv_field(x) for x in labels]
            columns.append(texts)
            template.append("%s")
            if scores.probabilities is not None:
                columns.extend(scores.probabilities.T.tolist())
                template.extend([self._number] * scores.probabilities.shape[1])
        line = ",".join(template) + "\n"
        table = np.empty((len(numbers), len(columns)), dtype=object)
        for j, column in enumerate(columns):
            table[:, j] = column
        return (line * len(numbers)) % tuple(table.ravel().tolist())

    def _jsonl_chunk(self, chunk: Chunk, out: TextSink, errors: TextSink) -> None:
        self.read += chunk.size
        rejected = _Rejected(chunk.broken)
        id_column = self.settings.id_column
        ids: list[Any] = []
        records = []
        for record in chunk.records:
            if id_column and isinstance(record, dict) and id_column in record:
                ids.append(record[id_column])
                record = {k: v for k, v in record.items() if k != id_column}
            else:
                ids.append(None)
            records.append(record)
        checked = self.model.validate(records, unknown=self.settings.unknown_columns)
        for e in checked.errors:
            rejected.add(chunk.numbers[e.row], e.field, e.reason, chunk.records[e.row])
        scores = self.model.score_columns(checked.columns)
        count_drift(self.drift, self.model, checked.columns, scores)
        self.unseen.update(note.field for note in checked.notes if note.field)
        predictions = format_predictions(self.model, scores)
        lines = []
        for i, prediction in zip(checked.rows, predictions, strict=True):
            entry: dict[str, Any] = {"row": chunk.numbers[i]}
            if id_column:
                entry[id_column] = ids[i]
            entry.update(prediction)
            lines.append(json.dumps(entry, separators=(",", ":")) + "\n")
        out.write("".join(lines))
        self.scored += len(checked.rows)
        self._write_errors(errors, rejected)

    def _write_errors(self, errors: TextSink, rejected: _Rejected) -> None:
        if rejected.reasons:
            errors.write(rejected.lines())
            self.rejected += len(rejected.reasons)
