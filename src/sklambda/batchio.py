"""Stream CSV and JSON Lines files in and out of S3 in chunks, with bounded memory.

Reading: an S3 object body (optionally gzip) is decoded as UTF-8 (a byte-order mark is
dropped) and cut into chunks of rows. Writing: bytes go to S3 through a multipart upload that
becomes visible only when it completes; an aborted upload leaves nothing under the key.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import operator
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from sklambda.errors import FileError

Format = Literal["csv", "jsonl"]
PART_SIZE = 5 * 1024 * 1024  # the least S3 takes for a part but the last: the least memory


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
    """Rows of one chunk. ``numbers`` are the 1-based row numbers of the good rows.

    CSV chunks carry ``columns`` (one list of strings per header column, the good rows only)
    and ``broken`` rows (number, raw cells or text, reason); JSON Lines chunks carry parsed
    ``records``.
    """

    numbers: list[int] = field(default_factory=list)
    columns: list[list[str]] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)
    broken: list[tuple[int, Any, str]] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.numbers) + len(self.broken)

    def row_cells(self, position: int) -> list[str]:
        return [column[position] for column in self.columns]


BLOCK_CHARS = 256 * 1024


def read_csv(text: IO[str], chunk_rows: int) -> tuple[list[str], Iterator[Chunk]]:
    """The header and an iterator of chunks of at most ``chunk_rows`` rows.

    Rows whose width differs from the header's are ``broken``; quoted fields may hold commas
    and newlines; CRLF and LF both end a row; blank lines are no rows. Blocks of plain text
    (no quotes, every row of the header's width) are split with ``str.split``, several times
    faster than the ``csv`` module; the first quote sends the rest of the file to ``csv``.
    """
    first = text.readline()
    if first == "":
        raise FileError("the file is empty")
    try:
        header = next(csv.reader([first]))
    except (csv.Error, StopIteration) as exc:
        raise FileError(f"the header is not valid CSV: {exc}") from exc
    if any(h.strip() == "" for h in header):
        raise FileError("the header has an empty column name")
    duplicates = sorted(name for name, n in Counter(header).items() if n > 1)
    if duplicates:
        raise FileError(f"the header repeats the columns {duplicates}")
    return header, _chunks(text, len(header), chunk_rows)


class _ChunkBuilder:
    def __init__(self, width: int, chunk_rows: int) -> None:
        self.width, self.chunk_rows = width, chunk_rows
        self.chunk = self._new()
        self.number = 0  # rows seen so far

    def _new(self) -> Chunk:
        return Chunk(columns=[[] for _ in range(self.width)])

    def add_columns(self, columns: list[list[str]], n: int) -> Iterator[Chunk]:
        """Add ``n`` good rows given as columns; yield the chunks that fill up."""
        done = 0
        while done < n:
            room = self.chunk_rows - self.chunk.size
            take = min(room, n - done)
            for target, column in zip(self.chunk.columns, columns, strict=True):
                target.extend(column[done : done + take])
            self.chunk.numbers.extend(range(self.number + 1, self.number + take + 1))
            self.number += take
            done += take
            if self.chunk.size >= self.chunk_rows:
                yield self.chunk
                self.chunk = self._new()

    def add_row(self, row: list[str]) -> Iterator[Chunk]:
        if not row:
            return  # a blank line is no row
        self.number += 1
        if len(row) == self.width:
            for target, cell in zip(self.chunk.columns, row, strict=True):
                target.append(cell)
            self.chunk.numbers.append(self.number)
        else:
            reason = f"expected {self.width} fields, got {len(row)}"
            self.chunk.broken.append((self.number, row, reason))
        if self.chunk.size >= self.chunk_rows:
            yield self.chunk
            self.chunk = self._new()


def _chunks(text: IO[str], width: int, chunk_rows: int) -> Iterator[Chunk]:
    build = _ChunkBuilder(width, chunk_rows)
    carry = ""
    try:
        while True:
            block = text.read(BLOCK_CHARS)
            if block == "":
                break
            block = carry + block
            cut = block.rfind("\n") + 1
            if '"' in block:
                # Quoted fields may span lines and blocks: the csv module reads the rest.
                rest = itertools.chain(
                    io.StringIO(block[:cut], newline=""), _continue(block[cut:], text)
                )
                for row in csv.reader(rest):
                    yield from build.add_row(row)
                carry = ""
                break
            if cut == 0:
                carry = block
                continue
            lines, carry = block[:cut], block[cut:]
            yield from _plain_block(build, lines, width)
        if carry:
            yield from _plain_block(build, carry if carry.endswith("\n") else carry + "\n", width)
    except csv.Error as exc:
        raise FileError(f"row {build.number + 1} is not valid CSV: {exc}") from exc
    if build.chunk.size:
        yield build.chunk


def _continue(partial: str, text: IO[str]) -> Iterator[str]:
    """The lines of ``text``, the first one completing ``partial``."""
    yield from io.StringIO(partial + text.readline(), newline="")
    yield from text


_COMMAS = operator.methodcaller("count", ",")


def _plain_block(build: _ChunkBuilder, lines: str, width: int) -> Iterator[Chunk]:
    """Rows of a block without quotes; ``lines`` ends with a newline."""
    if "\r" in lines:
        lines = lines.replace("\r\n", "\n")
    body = lines[:-1]
    rows = body.split("\n")
    if (
        "\r" not in body
        and set(map(_COMMAS, rows)) == {width - 1}
        and (width > 1 or "" not in rows)
    ):
        cells = body.replace("\n", ",").split(",")
        yield from build.add_columns([cells[j::width] for j in range(width)], len(rows))
        return
    for row in csv.reader(io.StringIO(lines, newline="")):
        yield from build.add_row(row)


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
    everything: nothing ever appears under the key half-written.

    Parts are uploaded by one background thread while the caller goes on computing the next
    one; a part waits until the one before it is uploaded, so memory stays at about two parts.
    """

    def __init__(
        self, s3: Any, bucket: str, key: str, content_type: str, part_size: int | None = None
    ) -> None:
        super().__init__()
        self.s3, self.bucket, self.key = s3, bucket, key
        self.content_type = content_type
        self.part_size = part_size or PART_SIZE
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._upload_id: str | None = None
        self._pending: list[Future[dict[str, Any]]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._done = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._pieces.append(bytes(data))
        self._buffered += len(data)
        if self._buffered >= self.part_size:
            # A part may be larger than part_size: what is buffered goes whole, uncut.
            self._submit(self._take())
        return len(data)

    def _take(self) -> bytes:
        data = b"".join(self._pieces)
        self._pieces.clear()
        self._buffered = 0
        return data

    def _submit(self, data: bytes) -> None:
        if self._upload_id is None:
            started = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )
            self._upload_id = started["UploadId"]
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-part")
        assert self._pool is not None
        for earlier in self._pending:
            earlier.result()  # back-pressure: one part in flight while the next one fills
        number = len(self._pending) + 1
        self._pending.append(self._pool.submit(self._upload, number, data))

    def _upload(self, number: int, data: bytes) -> dict[str, Any]:
        part = self.s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, PartNumber=number, Body=data
        )
        return {"ETag": part["ETag"], "PartNumber": number}

    def close(self) -> None:
        """Make the object visible (complete the upload, or put a small object)."""
        if self._done:
            return
        try:
            if self._upload_id is None:
                self.s3.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=self._take(),
                    ContentType=self.content_type,
                )
            else:
                if self._pieces:
                    self._submit(self._take())
                parts = [f.result() for f in self._pending]
                self.s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": parts},
                )
        finally:
            self._shutdown()
        self._done = True
        super().close()

    def abort(self) -> None:
        """Discard what was written; the key is left as it was."""
        if self._done:
            return
        self._shutdown()
        if self._upload_id is not None:
            self.s3.abort_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
            )
        self._pieces.clear()
        self._done = True
        super().close()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


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
