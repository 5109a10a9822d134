"""Stream CSV and JSON Lines files in and out of S3 in chunks, with bounded memory.

Reading: an S3 object body (optionally gzip) is cut into chunks of rows. Memory is bounded
whatever the input: a line is never read past ``max_line_bytes``, a chunk holds at most
``chunk_rows`` rows and about ``CHUNK_CHARS`` characters (``MAX_CELLS`` CSV cells), and a gzip
stream that expands more than ``max_expansion`` times its compressed size is stopped as it
streams. CSV is decoded as UTF-8 as a whole (a byte-order mark is dropped); JSON Lines line by
line, so that one line that is not UTF-8 is one rejected row. Writing: bytes go to S3 through a
multipart upload that becomes visible only when it completes; an aborted upload leaves nothing
under the key.
"""

from __future__ import annotations

import bisect
import csv
import gzip
import io
import itertools
import json
import operator
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from sklambda.errors import FileError

Format = Literal["csv", "jsonl"]
PART_SIZE = 5 * 1024 * 1024  # the least S3 takes for a part but the last: the least memory
MAX_LINE_BYTES = 1_048_576  # the defaults of the batch settings of the same names
MAX_COLUMNS = 1000
MAX_EXPANSION = 100
# Output up to this size is never a bomb, whatever the ratio: small, very repetitive files pass.
EXPANSION_FLOOR = 16 * 1024 * 1024
CHUNK_CHARS = 8 * 1024 * 1024  # a chunk ends at this much text, even short of chunk_rows
MAX_CELLS = 2_000_000  # and a CSV chunk at this many cells (wide files: about 100 MB)
MAX_DEPTH = 100  # JSON nested deeper is a rejected row (the writers recurse too)
SKIP_BYTES = 1 << 20  # the rest of a line over the limit is read past this much at a time
BOM = "\ufeff"


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


def content_type(fmt: Format) -> str:
    """The media type of a file of ``fmt`` (an input's, its predictions', its parts')."""
    return "text/csv" if fmt == "csv" else "application/x-ndjson"


class _RawStream(io.RawIOBase):
    """A botocore StreamingBody as a file object that io and gzip can buffer; counts bytes."""

    def __init__(self, body: Any) -> None:
        self._body = body
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


class _Expansion(io.RawIOBase):
    """The decompressed bytes of a gzip stream, counted as they stream: more than ``ratio``
    times the compressed size (the object's, else what was read of it), and more than
    ``EXPANSION_FLOOR``, is a ``FileError``."""

    def __init__(
        self, inner: io.BufferedIOBase, source: _RawStream, size: int | None, ratio: int
    ) -> None:
        self._inner, self._source, self._size, self._ratio = inner, source, size, ratio
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._inner.readinto(buffer)
        self.count += n
        compressed = self._size if self._size else self._source.count
        if self.count > max(self._ratio * compressed, EXPANSION_FLOOR):
            raise FileError(
                f"the file decompresses to more than {self._ratio} times its compressed size "
                f"({compressed} bytes): refused as a likely decompression bomb"
            )
        return n


def open_bytes(
    body: Any, compressed: bool, *, size: int | None = None, max_expansion: int = MAX_EXPANSION
) -> IO[bytes]:
    """A byte stream (an S3 body or any object with ``read``), gunzipped when ``compressed``
    (its expansion bounded by ``max_expansion`` times ``size``, the compressed size)."""
    source = _RawStream(body)
    raw: IO[bytes] = io.BufferedReader(source, buffer_size=1024 * 1024)
    if compressed:
        unzipped = gzip.GzipFile(fileobj=raw, mode="rb")
        raw = io.BufferedReader(_Expansion(unzipped, source, size, max_expansion))
    return raw


def open_text(
    body: Any, compressed: bool, *, size: int | None = None, max_expansion: int = MAX_EXPANSION
) -> IO[str]:
    """Decode a byte stream (an S3 body or any object with ``read``) as UTF-8 text."""
    raw = open_bytes(body, compressed, size=size, max_expansion=max_expansion)
    return io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _too_long(text: str, limit: int) -> bool:
    """Whether ``text`` is more than ``limit`` bytes of UTF-8 (cheap for most texts)."""
    if len(text) > limit:
        return True
    return len(text) * 4 > limit and _utf8_len(text) > limit


def _unended(carry: str) -> str:
    """A row read so far without the CR that may end it: a block can end between the CR and
    the LF of a CRLF, and a record's limit never counts its line ending."""
    return carry[:-1] if carry.endswith("\r") else carry


def _ending(line: str) -> int:
    """How many characters of ``line`` are its line ending."""
    if line.endswith("\r\n"):
        return 2
    return 1 if line.endswith(("\n", "\r")) else 0


def _long_row(number: int, limit: int) -> FileError:
    return FileError(f"row {number} is longer than {limit} bytes (the line limit)")


def long_row(number: int, limit: int) -> FileError:
    """The failure of a CSV file whose row ``number`` (a record, quoted newlines included, its
    line ending aside) is over ``limit`` bytes: one reason, whoever finds it (the reader here,
    the split planner)."""
    return _long_row(number, limit)


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


def read_csv(
    text: IO[str],
    chunk_rows: int,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_columns: int = MAX_COLUMNS,
    first_row: int = 1,
) -> tuple[list[str], Iterator[Chunk]]:
    """The header and an iterator of chunks of at most ``chunk_rows`` rows, the first of them
    numbered ``first_row`` (a share of a split file: its number in the whole file).

    Rows whose width differs from the header's are ``broken``; quoted fields may hold commas
    and newlines; CRLF and LF both end a row; blank lines are no rows. Blocks of plain text
    (no quotes, every row of the header's width) are split with ``str.split``, several times
    faster than the ``csv`` module; the first quote sends the rest of the file to ``csv``.

    A header over ``max_line_bytes`` or of more than ``max_columns`` columns, and a row (a
    record: quoted newlines included) over ``max_line_bytes``, are a ``FileError``: past a
    line that has no end in sight there is no telling where the next row begins.
    """
    first = text.readline(max_line_bytes + 1)
    if first == "":
        raise FileError("the file is empty")
    if _too_long(first[: len(first) - _ending(first)], max_line_bytes):
        raise FileError(f"the header is longer than {max_line_bytes} bytes (the line limit)")
    try:
        header = next(csv.reader([first]))
    except (csv.Error, StopIteration) as exc:
        raise FileError(f"the header is not valid CSV: {exc}") from exc
    if len(header) > max_columns:
        raise FileError(
            f"the header has {len(header)} columns, more than the {max_columns} allowed"
        )
    if any(h.strip() == "" for h in header):
        raise FileError("the header has an empty column name")
    duplicates = sorted(name for name, n in Counter(header).items() if n > 1)
    if duplicates:
        raise FileError(f"the header repeats the columns {duplicates}")
    if csv.field_size_limit() < max_line_bytes:  # a quoted field may be as long as a line
        csv.field_size_limit(max_line_bytes)
    return header, _chunks(text, len(header), chunk_rows, max_line_bytes, first_row)


def chunk_rows_of(width: int, chunk_rows: int) -> int:
    """The rows of a CSV chunk of ``width`` columns: ``chunk_rows``, fewer for wide files."""
    return max(1, min(chunk_rows, MAX_CELLS // width))


class _ChunkBuilder:
    """Rows into chunks. Where a chunk ends is a function of the rows alone (never of where a
    block of text ended): after every row whose number is a multiple of ``chunk_rows``, and
    after the row that brings the chunk's text to ``CHUNK_CHARS`` (a row's text: its cells and
    a separator after each). So a reader that starts after such a multiple (a share of a split
    file) cuts the rest of the file into the very chunks a reader of the whole file does, and
    the scoring core sees the same batches."""

    def __init__(self, width: int, chunk_rows: int, first_row: int = 1) -> None:
        self.width = width
        self.chunk_rows = chunk_rows_of(width, chunk_rows)
        self.chunk = self._new()
        self.chars = 0  # text in the current chunk
        self.number = first_row - 1  # the number of the last row seen

    def _new(self) -> Chunk:
        self.chars = 0
        return Chunk(columns=[[] for _ in range(self.width)])

    def _full(self) -> bool:
        return self.number % self.chunk_rows == 0 or self.chars >= CHUNK_CHARS

    def add_columns(self, columns: list[list[str]], rows: list[str], chars: int) -> Iterator[Chunk]:
        """Add good rows given as columns, and as their lines (``rows``, ``chars`` of text
        with a newline each); yield the chunks that fill up."""
        n = len(rows)
        done = done_chars = 0
        ends: list[int] | None = None  # ends[i]: the text of rows[: i + 1]
        while done < n:
            take = min(self.chunk_rows - self.number % self.chunk_rows, n - done)
            if take < n - done or self.chars + chars - done_chars >= CHUNK_CHARS:
                if ends is None:
                    ends = list(itertools.accumulate(len(row) + 1 for row in rows))
                # the first row at which the chunk's text reaches CHUNK_CHARS ends it
                full = bisect.bisect_left(ends, CHUNK_CHARS - self.chars + done_chars, lo=done)
                take = min(take, full - done + 1)
                taken = ends[done + take - 1] - done_chars
            else:
                taken = chars - done_chars
            for target, column in zip(self.chunk.columns, columns, strict=True):
                target.extend(column[done : done + take])
            self.chunk.numbers.extend(range(self.number + 1, self.number + take + 1))
            self.number += take
            done += take
            done_chars += taken
            self.chars += taken
            if self._full():
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
        self.chars += sum(map(len, row)) + len(row)
        if self._full():
            yield self.chunk
            self.chunk = self._new()


def _chunks(
    text: IO[str], width: int, chunk_rows: int, limit: int, first_row: int
) -> Iterator[Chunk]:
    build = _ChunkBuilder(width, chunk_rows, first_row)
    carry = ""  # the start of a row whose end is in a later block
    try:
        while True:
            block = text.read(BLOCK_CHARS)
            if block == "":
                break
            if '"' in block:
                # Quoted fields may span lines and blocks: the csv module reads the rest.
                records = _Records(carry + block, text, limit, build)
                carry = block = ""
                for row in csv.reader(records):
                    records.size = 0
                    yield from build.add_row(row)
                break
            cut = block.rfind("\n") + 1 or block.rfind("\r") + 1
            if cut == 0:
                carry += block  # bounded: past the limit the file fails
                if _too_long(_unended(carry), limit):
                    raise _long_row(build.number + 1, limit)
                continue
            lines, carry = carry + block[:cut], block[cut:]
            yield from _plain_block(build, lines, width, limit)
            if _too_long(_unended(carry), limit):
                raise _long_row(build.number + 1, limit)
        if carry:
            yield from _plain_block(
                build, carry if carry.endswith("\n") else carry + "\n", width, limit
            )
    except csv.Error as exc:
        raise FileError(f"row {build.number + 1} is not valid CSV: {exc}") from exc
    if build.chunk.size:
        yield build.chunk


class _Records:
    """Lines for the csv module: ``head`` (text already read), then the rest of ``text`` read
    at most ``limit + 1`` characters at a time. The caller sets ``size`` to 0 at each row; a
    record over ``limit`` bytes (its last line ending aside) is a ``FileError``."""

    def __init__(self, head: str, text: IO[str], limit: int, build: _ChunkBuilder) -> None:
        self.head, self.text, self.limit, self.build = head, text, limit, build
        self.size = 0

    def __iter__(self) -> Iterator[str]:
        partial = ""
        for line in io.StringIO(self.head, newline=""):
            if _ending(line):
                yield self._counted(line)
            else:
                partial = line  # the last line of the head, completed by the text
        self.head = ""
        if partial:
            yield self._counted(partial + self.text.readline(self.limit + 1))
        while line := self.text.readline(self.limit + 1):
            yield self._counted(line)

    def _counted(self, line: str) -> str:
        self.size += _utf8_len(line)
        if self.size - _ending(line) > self.limit:
            raise _long_row(self.build.number + 1, self.limit)
        return line


_COMMAS = operator.methodcaller("count", ",")


def _plain_block(build: _ChunkBuilder, lines: str, width: int, limit: int) -> Iterator[Chunk]:
    """Rows of a block without quotes; ``lines`` ends with a newline."""
    if "\r" in lines:
        lines = lines.replace("\r\n", "\n")
    body = lines[:-1]
    rows = body.split("\n")
    lone_cr = "\r" in body
    if not lone_cr and _too_long(body, limit):
        for i, line in enumerate(rows):
            if _too_long(line, limit):
                raise _long_row(build.number + 1 + sum(1 for r in rows[:i] if r), limit)
    if not lone_cr and set(map(_COMMAS, rows)) == {width - 1} and (width > 1 or "" not in rows):
        cells = body.replace("\n", ",").split(",")
        yield from build.add_columns([cells[j::width] for j in range(width)], rows, len(lines))
        return
    for cells_of_row in csv.reader(io.StringIO(lines, newline="")):
        # a lone CR ends rows here: each row's bytes (its cells and commas) against the limit,
        # as every other reader of a record measures it
        if lone_cr and sum(map(_utf8_len, cells_of_row)) + len(cells_of_row) - 1 > limit:
            raise _long_row(build.number + 1, limit)
        yield from build.add_row(cells_of_row)


def read_jsonl(
    stream: IO[bytes] | IO[str],
    chunk_rows: int,
    *,
    max_line_bytes: int = MAX_LINE_BYTES,
    first_row: int = 1,
) -> Iterator[Chunk]:
    """Chunks of parsed lines; a line that is not JSON (or not UTF-8, over ``max_line_bytes``,
    nested more than ``MAX_DEPTH`` deep, a number of too many digits) is ``broken`` with a
    fixed reason; blank lines are skipped. Row numbers are line numbers, the first line's
    ``first_row`` (a share of a split file: its number in the whole file; a byte-order mark is
    dropped from line 1 only). ``stream`` is bytes (each line decoded on its own) or text;
    lines end with LF or CRLF."""
    limit = max_line_bytes
    text_mode = isinstance(stream, io.TextIOBase)
    newline: Any = ("\n", "\r") if text_mode else b"\n"
    too_long = f"the line is longer than {limit} bytes"
    readline: Callable[[int], Any] = stream.readline  # str or bytes
    loads = json.loads
    text: str
    chunk, chars, number = Chunk(), 0, first_row - 1
    numbers, records, broken = chunk.numbers, chunk.records, chunk.broken
    while line := readline(limit + 1):
        # A chunk ends after every line whose number is a multiple of chunk_rows (blank
        # lines too), or at CHUNK_CHARS: where it ends depends on the lines alone.
        if number % chunk_rows == 0 or chars >= CHUNK_CHARS:
            if chunk.size:
                yield chunk
                chunk = Chunk()
                numbers, records, broken = chunk.numbers, chunk.records, chunk.broken
            chars = 0
        number += 1
        if len(line) > limit and not line.endswith(newline):
            _skip_line(stream, newline)
            broken.append((number, _preview(line), too_long))
        else:
            if text_mode:
                text = line
                if len(text) * 4 > limit and _too_long(text[: len(text) - _ending(text)], limit):
                    broken.append((number, _preview(text), too_long))
                    continue
            else:
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    broken.append((number, line.decode("utf-8", "replace").strip(), NOT_UTF8))
                    continue
            if number == 1 and text.startswith(BOM):
                text = text[1:]
            stripped = text.strip()
            if not stripped:
                continue  # a blank line is no row (its number is skipped)
            chars += len(stripped)
            try:
                record = loads(stripped)
            except ValueError as exc:
                broken.append((number, stripped, _not_json(exc)))
            except RecursionError:
                broken.append((number, stripped, NESTED))
            else:
                # nesting deeper than MAX_DEPTH takes more than 2 * MAX_DEPTH characters
                if len(stripped) > 2 * MAX_DEPTH and _deeper(record, MAX_DEPTH):
                    broken.append((number, stripped, NESTED))
                else:
                    numbers.append(number)
                    records.append(record)
    if chunk.size:
        yield chunk


def _skip_line(stream: IO[Any], newline: Any) -> None:
    """Read past the rest of a line, a bounded piece at a time."""
    while piece := stream.readline(SKIP_BYTES):
        if piece.endswith(newline):
            return


def _preview(line: str | bytes) -> str:
    """The start of a line too long to keep, for the errors file."""
    head = line[:200]
    text = head if isinstance(head, str) else head.decode("utf-8", "replace")
    return text + "…"


NESTED = f"not valid JSON: nested more than {MAX_DEPTH} levels deep"
NOT_UTF8 = "not UTF-8 text"


def _not_json(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON: {exc.msg} (column {exc.colno})"
    # an integer literal of more digits than Python converts
    return f"not valid JSON: a number of more than {sys.get_int_max_str_digits()} digits"


def _deeper(value: Any, depth: int) -> bool:
    """Whether arrays and objects nest in ``value`` more than ``depth`` levels (no recursion)."""
    if not isinstance(value, (dict, list)):
        return False
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if level > depth:
            return True
        stack.extend((c, level + 1) for c in children if isinstance(c, (dict, list)))
    return False


class S3Writer(io.RawIOBase):
    """Bytes to one S3 key. Small outputs are one ``put_object`` at ``close()``; larger ones a
    multipart upload of ``part_size`` parts, completed at ``close()``. ``abort()`` discards
    everything: nothing ever appears under the key half-written. ``version_id`` is the version
    ``close()`` made (``None`` in a bucket without versioning).

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
        self.version_id: str | None = None
        self.written = 0  # bytes written so far

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._pieces.append(bytes(data))
        self._buffered += len(data)
        self.written += len(data)
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
                made = self.s3.put_object(
                    Bucket=self.bucket,
                    Key=self.key,
                    Body=self._take(),
                    ContentType=self.content_type,
                )
            else:
                if self._pieces:
                    self._submit(self._take())
                parts = [f.result() for f in self._pending]
                made = self.s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": parts},
                )
        finally:
            self._shutdown()
        self.version_id = made.get("VersionId")
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


GZIP_LEVEL = 6  # zlib's default: about 4x the speed of gzip's 9 on CSV, nearly as small


def gzip_writer(writer: IO[bytes] | io.RawIOBase) -> gzip.GzipFile:
    """A gzip stream into ``writer``: the same bytes for the same content, whoever writes it
    (no timestamp, no name; one level), so the two batch paths' outputs are identical."""
    return gzip.GzipFile(fileobj=writer, mode="wb", mtime=0, compresslevel=GZIP_LEVEL)


class TextSink:
    """UTF-8 text (optionally gzip) into an ``S3Writer``; ``finish`` or ``abort`` ends it."""

    def __init__(self, writer: S3Writer, compressed: bool) -> None:
        self.writer = writer
        self._gzip = gzip_writer(writer) if compressed else None

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
