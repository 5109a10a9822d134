"""Stream CSV and JSON Lines files in and out of S3 in chunks, with bounded memory.

Reading: an S3 object body (optionally gzip) is decoded as UTF-8 (a byte-order mark is
dropped) and cut into chunks of rows. Writing: bytes go to S3 through a multipart upload that
becomes visible only when it completes; an aborted upload leaves nothing under the key.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Literal

Format = Literal["csv", "jsonl"]
PART_SIZE = 8 * 1024 * 1024  # S3 needs at least 5 MiB per part but the last


class FileError(Exception):
    """The file as a whole cannot be read (empty, not UTF-8, corrupt gzip, bad header...)."""


def file_format(key: str) -> tuple[Format, bool] | None:
    """``(format, gzip)`` from the key's suffix, or ``None`` for a file we do not read."""
    name = key.lower()
    compressed = name.endswith(".gz")
    if compressed:
        name = name[:-3]
    if name.endswith(".csv"):
        return "csv", compressed
    if name.endswith(".jsonl"):
        return "jsonl", compressed
    return None


class _RawStream(io.RawIOBase):
    """A botocore StreamingBody as a file object that io and gzip can buffer."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_text(body: Any, compressed: bool) -> IO[str]:
    """Decode a byte stream (an S3 body or any object with ``read``) as UTF-8 text."""
    raw: IO[bytes] = io.BufferedReader(_RawStream(body), buffer_size=1024 * 1024)
    if compressed:
        raw = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


@dataclass
class Chunk:
    """Rows of one chunk. ``numbers`` are 1-based row numbers in the file.

    CSV chunks carry ``cells`` (one list of strings per row, all of the header's width) and
    ``broken`` rows (number, raw text, reason); JSON Lines chunks carry parsed ``records``.
    """

    numbers: list[int] = field(default_factory=list)
    cells: list[list[str]] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)
    raw: list[Any] = field(default_factory=list)
    broken: list[tuple[int, Any, str]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.numbers) + len(self.broken)


def read_csv(text: IO[str], chunk_rows: int) -> tuple[list[str], Iterator[Chunk]]:
    """The header and an iterator of chunks. Rows whose width differs from the header's are
    ``broken``; quoted fields may hold commas and newlines; CRLF and LF both end a row."""
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        raise FileError("the file is empty") from None
    except csv.Error as exc:
        raise FileError(f"the header is not valid CSV: {exc}") from exc
    width = len(header)
    if any(h.strip() == "" for h in header):
        raise FileError("the header has an empty column name")
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise FileError(f"the header repeats the columns {duplicates}")

    def chunks() -> Iterator[Chunk]:
        chunk = Chunk()
        number = 0
        try:
            for row in reader:
                number += 1
                if len(row) == width:
                    chunk.numbers.append(number)
                    chunk.cells.append(row)
                elif row:
                    chunk.broken.append((number, row, f"expected {width} fields, got {len(row)}"))
                else:
                    number -= 1  # a blank line is no row
                if chunk.size >= chunk_rows:
                    yield chunk
                    chunk = Chunk()
        except csv.Error as exc:
            raise FileError(f"row {number + 1} is not valid CSV: {exc}") from exc
        if chunk.size:
            yield chunk

    return header, chunks()


def read_jsonl(text: IO[str], chunk_rows: int) -> Iterator[Chunk]:
    """Chunks of parsed lines; a line that is not JSON is ``broken`` with the reason; blank
    lines are skipped. Row numbers are line numbers."""
    chunk = Chunk()
    for number, line in enumerate(text, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        try:
            record = json.loads(stripped)
        except json.JSONDecodeError as exc:
            chunk.broken.append(
                (number, stripped, f"not valid JSON: {exc.msg} (column {exc.colno})")
            )
        else:
            chunk.numbers.append(number)
            chunk.records.append(record)
        if chunk.size >= chunk_rows:
            yield chunk
            chunk = Chunk()
    if chunk.size:
        yield chunk


class S3Writer(io.RawIOBase):
    """Bytes to one S3 key. Small outputs are one ``put_object`` at ``close()``; larger ones a
    multipart upload of ``part_size`` parts, completed at ``close()``. ``abort()`` discards
    everything: nothing ever appears under the key half-written."""

    def __init__(
        self, s3: Any, bucket: str, key: str, content_type: str, part_size: int | None = None
    ) -> None:
        super().__init__()
        self.s3, self.bucket, self.key = s3, bucket, key
        self.content_type = content_type
        self.part_size = part_size or PART_SIZE
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self.bytes_written = 0
        self._done = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buffer += data
        self.bytes_written += len(data)
        while len(self._buffer) >= self.part_size:
            self._upload_part(bytes(self._buffer[: self.part_size]))
            del self._buffer[: self.part_size]
        return len(data)

    def _upload_part(self, data: bytes) -> None:
        if self._upload_id is None:
            started = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )
            self._upload_id = started["UploadId"]
        number = len(self._parts) + 1
        part = self.s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=data
        )
        self._parts.append({"ETag": part["ETag"], "PartNumber": number})

    def close(self) -> None:
        """Make the object visible (complete the upload, or put a small object)."""
        if self._done:
            return
        if self._upload_id is None:
            self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=bytes(self._buffer),
                ContentType=self.content_type,
            )
        else:
            if self._buffer:
                self._upload_part(bytes(self._buffer))
            self.s3.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        self._buffer.clear()
        self._done = True
        super().close()

    def abort(self) -> None:
        """Discard what was written; the key is left as it was."""
        if self._done:
            return
        if self._upload_id is not None:
            self.s3.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
            )
        self._buffer.clear()
        self._done = True
        super().close()


class TextSink:
    """UTF-8 text (optionally gzip) into an ``S3Writer``; ``finish`` or ``abort`` ends it."""

    def __init__(self, writer: S3Writer, compressed: bool) -> None:
        self.writer = writer
        self._gzip = gzip.GzipFile(fileobj=writer, mode="wb", mtime=0) if compressed else None

    def write(self, text: str) -> None:
        data = text.encode("utf-8")
        if self._gzip is not None:
            self._gzip.write(data)
        else:
            self.writer.write(data)

    def finish(self) -> None:
        if self._gzip is not None:
            self._gzip.close()
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


def csv_field(value: Any) -> str:
    """One CSV field (RFC 4180 quoting only where needed)."""
    text = "" if value is None else str(value)
    if any(c in text for c in ',"\r\n') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_line(fields: Sequence[Any]) -> str:
    return ",".join(csv_field(f) for f in fields) + "\n"
