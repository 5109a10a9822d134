"""Plan how one S3 object is cut into shares that workers score independently (the split path).

``plan`` streams the object once, in pieces of at most ``read_size`` bytes (a CSV file: also at
most ``max_line_bytes``), holding no more than one piece, and cuts it at the first record end
at or after every ``share_bytes`` of content. A cut is where a reader of the whole file would
start a new record:

- CSV: after a record's line ending (LF, CRLF or a lone CR, never between the CR and the LF of
  a CRLF), never inside a quoted field (which may hold commas, newlines, CRLF and doubled
  quotes). Quoting is followed the way the ``csv`` module follows it: a quote opens a quoted
  field only at the start of a field; anywhere else it is a character. The header is the first
  line (what ``batchio.read_csv`` reads); it is checked with ``read_csv`` itself (the same
  reasons) and then by ``header_check`` (the batch function passes its model's header check,
  so that a file fails for the same reason, in the same order, as on the single path). Row
  numbers count the records that are not blank, as the single path does: a share's
  ``first_row`` is the number of its first row in the original file.
- JSON Lines: after an LF (what ``batchio.read_jsonl`` splits on). Row numbers are line
  numbers. Lines are not read: a blank, invalid or over-long line is still a line (the worker
  rejects it, with the single path's reason).

A CSV record longer than ``max_line_bytes`` (quoted newlines included, its line ending aside)
fails the plan with ``batchio.long_row``, the single path's reason. What the planner does not
look at is the worker's to find: bad JSON, rows of the wrong width. A CSV file's text is
checked to be UTF-8 as it streams (``UnicodeDecodeError``, raised before the faults of later
pieces). What it raises: ``FileError`` for the file (the single path's reasons:
an empty file, a bad header, a long record, a decompression bomb); ``UnicodeDecodeError`` for a
header that is not UTF-8 and gzip's errors (``gzip.BadGzipFile``, ``zlib.error``,
``EOFError``) as they are, which the caller turns into the reasons ``batch`` gives them; S3's
errors as they are (worth a retry). A file whose header is valid always has at least one
share, possibly of 0 bytes: whether a file with no rows fails is the finisher's to say (for
the same reason as the single path, after the header has been checked against the model).

Where things go (``staging_prefix``): ``shares/<sha256 of key and version>/`` (``<version>``
the version id, or the ETag in a bucket without versioning). A hash, not the key itself: no
file's prefix may hold another's (``incoming/a.csv/<ETag>/b.csv`` would sit inside
``incoming/a.csv``'s), and every name under it fits S3's 1,024 bytes whatever the key. The
summary names the source. Under it:

- ``plan.json``: the items, a JSON array (one share per line), for a Distributed Map
  ``ItemReader`` (``arn:aws:states:::s3:getObject``, ``ReaderConfig: {InputType: JSON}``);
- ``summary.json``: the plan's summary (``Plan.summary()``), written last: its presence says
  the plan is complete;
- for a gzip input only: ``header`` (a CSV file's BOM and header line) and ``share-000000``,
  ``share-000001``, ... (each share's content, uncompressed: a byte offset of a gzip stream
  cannot be read on its own, so the planner streams the decompressed content, within the
  ``max_expansion`` limit, and writes the shares; ``share_bytes`` counts decompressed bytes).
  A failed plan deletes the shares it wrote. Plain inputs are not copied: workers read their
  range of the original object.

One item (``Share.item()``), what one worker needs::

    {"share": 3, "shares": 12,           # 0-based index, and how many there are
     "bucket": "b", "key": "incoming/day.csv", "version_id": "v1" | null, "etag": "..." | null,
     "range": "bytes=4194304-5242937" | null,  # the GET's Range (null: 0 bytes, read nothing)
     "start": 4194304, "end": 5242938, "bytes": 1048634,   # [start, end) of that object
     "offset": 4194304,                  # where the share begins in the file's content
     "first_row": 40001, "rows": 10000 | null,   # rows: CSV (records not blank); null: JSON Lines
     "format": "csv", "compressed": false,   # the input's (the outputs keep it)
     "staged": false,                    # true: key is a staged, uncompressed copy (gzip input)
     "header": {"bucket", "key", "version_id", "etag", "range", "start", "end", "bom"} | null,
     "prefix": "shares/3f1c...e2/"}       # sha256 of key and version

``key`` and ``version_id`` name the object to read: the input itself (``etag`` for an
``IfMatch`` where there is no version), or its staged share. A CSV worker reads the header's
range (the BOM, if any, and the header line with its line ending) and its own range, and
parses the two as one file (``open_text`` drops the BOM; ``read_csv`` reads the header): its
rows are then the original file's rows from ``first_row`` on.
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import io
import itertools
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sklambda.batchio import (
    MAX_COLUMNS,
    MAX_EXPANSION,
    MAX_LINE_BYTES,
    Format,
    S3Writer,
    chunk_rows_of,
    content_type,
    long_row,
    open_bytes,
    read_csv,
)

STAGING = "shares/"  # not watched by the trigger
ITEMS = "plan.json"
SUMMARY = "summary.json"
HEADER = "header"
READ_SIZE = 1 << 20
CHUNK_ROWS = 10_000  # the batch setting's default
_BOM = b"\xef\xbb\xbf"
_CR, _LF, _QUOTE, _COMMA = 13, 10, 34, 44
_FIELD_START = frozenset(b",\r\n")  # a byte after which a field starts (outside quotes)
# CR and LF as LF, every other byte as "a": newlines are found with one search, and the records
# that are not blank counted as b"a\n" (a byte that is not a newline, then one).
_NEWLINES = bytes(_LF if b in (_CR, _LF) else ord("a") for b in range(256))
# Fields from a field start on, each quoted (quotes doubled within) or holding no quote, comma
# or newline, with their commas: a run in which no record ends. Possessive: no backtracking.
_FIELD = rb'(?:"[^"]*+(?:""[^"]*+)*+"|[^",\r\n]*+)'
_FIELDS = re.compile(_FIELD + rb"(?:," + _FIELD + rb")*+")
# Records ending with LF or CRLF whose quoted fields hold no newline (blank lines too).
_LINE_FIELD = rb'(?:"[^"\r\n]*+(?:""[^"\r\n]*+)*+"|[^",\r\n]*+)'
_RECORDS = re.compile(rb"(?:" + _LINE_FIELD + rb"(?:," + _LINE_FIELD + rb")*+\r?\n)*+")
_RECORD_ENDS = re.compile(rb"a\n")  # in the translated bytes: the end of a record not blank
_LINE_ENDS = re.compile(rb"\n")
_UNQUOTED, _QUOTED, _CLOSING = 0, 1, 2  # _CLOSING: just after a quote inside a quoted field
_log = logging.getLogger(__name__)


def staging_prefix(key: str, version: str) -> str:
    """Where the plan of one version (or ETag) of ``key`` and its staged shares go: one
    prefix per object version, none inside another."""
    identity = json.dumps([key, version]).encode()
    return f"{STAGING}{hashlib.sha256(identity).hexdigest()}/"


def _byte_range(start: int, end: int) -> str | None:
    return f"bytes={start}-{end - 1}" if end > start else None


@dataclass(frozen=True)
class Source:
    """The object planned: the very version that was read."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    size: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class HeaderRef:
    """Where a CSV file's header is: ``[start, end)`` of an object (the BOM, if any, and the
    header line with its line ending)."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    start: int
    end: int
    bom: bool

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "range": _byte_range(self.start, self.end)}


@dataclass(frozen=True)
class Share:
    """One worker's part: ``[start, end)`` of ``key`` (the input, or its staged copy), which
    is ``[offset, offset + bytes)`` of the file's content, its first row numbered
    ``first_row``."""

    index: int
    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    start: int
    end: int
    offset: int
    first_row: int
    rows: int | None
    staged: bool

    @property
    def bytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Plan:
    """How one object is cut: its shares, in order, covering its content exactly once."""

    source: Source
    format: Format
    compressed: bool
    share_bytes: int
    prefix: str
    header: HeaderRef | None
    shares: tuple[Share, ...]
    content_bytes: int  # the file's content: decompressed, for a gzip input
    rows: int | None  # CSV: rows (records not blank), what the single path reads
    lines: int | None  # JSON Lines: lines (the single path reads those not blank)
    written: tuple[tuple[str, str | None], ...] = ()  # plan.json, summary.json: key, version

    @property
    def items_key(self) -> str:
        return self.prefix + ITEMS

    @property
    def summary_key(self) -> str:
        return self.prefix + SUMMARY

    def item(self, share: Share) -> dict[str, Any]:
        return {
            "share": share.index,
            "shares": len(self.shares),
            "bucket": share.bucket,
            "key": share.key,
            "version_id": share.version_id,
            "etag": share.etag,
            "range": _byte_range(share.start, share.end),
            "start": share.start,
            "end": share.end,
            "bytes": share.bytes,
            "offset": share.offset,
            "first_row": share.first_row,
            "rows": share.rows,
            "format": self.format,
            "compressed": self.compressed,
            "staged": share.staged,
            "header": self.header.to_json() if self.header else None,
            "prefix": self.prefix,
        }

    def items(self) -> list[dict[str, Any]]:
        return [self.item(share) for share in self.shares]

    def summary(self) -> dict[str, Any]:
        """What the state machine passes on (small, whatever the number of shares)."""
        return {
            "source": self.source.to_json(),
            "format": self.format,
            "compressed": self.compressed,
            "share_bytes": self.share_bytes,
            "shares": len(self.shares),
            "bytes": self.content_bytes,
            "rows": self.rows,
            "lines": self.lines,
            "header": self.header.to_json() if self.header else None,
            "prefix": self.prefix,
            "items": {"bucket": self.source.bucket, "key": self.items_key},
        }


# --- finding the cuts -------------------------------------------------------------------------


class _Cuts:
    """Where the shares start (content offsets) and the number of each one's first row.

    A share ends at the first record end at or after ``share_bytes`` of content at which the
    number of rows (CSV: records not blank; JSON Lines: lines) is a multiple of ``per_chunk``,
    the rows of the reader's chunks: the reader ends a chunk at every such multiple, so each
    share is whole chunks of the single path's, scored in the same batches (a runtime's
    answer for a row can differ in its last bit with the batch it is in)."""

    def __init__(self, start: int, share_bytes: int, per_chunk: int) -> None:
        self.share_bytes, self.per_chunk = share_bytes, per_chunk
        self.starts = [start]
        self.first_rows = [1]
        self.rows: int | None = None  # past the target: the row count at which to cut

    @property
    def target(self) -> int:
        """The least offset at which the current share may end."""
        return self.starts[-1] + self.share_bytes

    def aim(self, count: int) -> int:
        """The target passed with ``count`` rows: the row count to cut at (a multiple of
        ``per_chunk``, past the share's first row)."""
        k = self.per_chunk
        rows = -(-count // k) * k
        if rows < self.first_rows[-1]:
            rows += k
        self.rows = rows
        return rows

    def cut(self, at: int, first_row: int) -> None:
        self.starts.append(at)
        self.first_rows.append(first_row)
        self.rows = None


class _Scanner:
    """Fed the content piece by piece (``feed``), it finds the cuts; ``pos`` is the offset of
    the next byte. ``feed`` returns the bytes it took in (a scanner may keep back the last
    byte until it sees the next) and the cuts among them, as offsets into those bytes."""

    def __init__(self, start: int, share_bytes: int, per_chunk: int) -> None:
        self.pos = start
        self.cuts = _Cuts(start, share_bytes, per_chunk)
        self.count = 0  # CSV: rows; JSON Lines: lines

    def feed(self, data: bytes, eof: bool) -> tuple[bytes, list[int]]:
        raise NotImplementedError


class _CsvScanner(_Scanner):
    """Records, as the ``csv`` module reads them from lines split at LF, CRLF and a lone CR.

    A piece is handled in runs, never byte by byte: records whose quoted fields hold no
    newline, and text between quotes, are runs in which every newline ends a record, counted
    and measured in bulk (``bytes.find``, ``count``); a quoted field that holds a newline is
    skipped from quote to quote. A piece is at most ``limit`` bytes (the caller's read size),
    so a record that starts and ends within one is within the limit: only a record that began
    in an earlier piece, and the record open at the end of a piece, are measured.
    """

    def __init__(self, start: int, share_bytes: int, limit: int, per_chunk: int) -> None:
        super().__init__(start, share_bytes, per_chunk)
        self.limit = limit
        self.record_start = start  # where the open record began
        self.mode = _UNQUOTED
        self.field_start = True  # (outside quotes) whether a field starts at the next byte
        self._held = b""  # a CR at the end of a piece: its LF may begin the next one

    def feed(self, data: bytes, eof: bool) -> tuple[bytes, list[int]]:
        buf, self._held = self._held + data, b""
        if not eof and buf.endswith(b"\r"):
            buf, self._held = buf[:-1], b"\r"
        before, origin = len(self.cuts.starts), self.pos
        if buf:
            self._scan(buf)
        self.pos += len(buf)
        if self.pos - self.record_start > self.limit:
            raise long_row(self.count + 1, self.limit)
        if eof and self.record_start < self.pos:  # a last record without a line ending
            self.count += 1
            self.record_start = self.pos
        return buf, [at - origin for at in self.cuts.starts[before:]]

    def _scan(self, buf: bytes) -> None:
        lines = buf.translate(_NEWLINES)
        i, n = 0, len(buf)
        while i < n:
            if self.mode == _QUOTED:
                q = buf.find(b'"', i)
                if q < 0:
                    return
                self.mode, i = _CLOSING, q + 1
                continue
            if self.mode == _CLOSING:
                if buf[i] == _QUOTE:  # a doubled quote: still quoted
                    self.mode, i = _QUOTED, i + 1
                    continue
                self.mode, self.field_start = _UNQUOTED, False
            if self.field_start:
                # whole records at once, where no quoted field holds a newline: every newline
                # in them ends a record, as between quotes
                j = _RECORDS.match(buf, i).end()  # type: ignore[union-attr]
                if j > i:
                    self._unquoted(buf, lines, i, j)
                    i = j
                    continue
                # else whole fields, quoted or not: no record ends within them
                j = _FIELDS.match(buf, i).end()  # type: ignore[union-attr]
                if j > i:
                    last, i = buf[j - 1], j
                    if last == _QUOTE:
                        self.mode = _CLOSING
                    else:
                        self.field_start = last == _COMMA
                    continue
                if buf[i] == _QUOTE:  # a quoted field that does not close in this piece
                    self.mode, self.field_start, i = _QUOTED, False, i + 1
                    continue
            q = buf.find(b'"', i)
            end = n if q < 0 else q
            if end > i:  # records may end here
                self._unquoted(buf, lines, i, end)
            if q < 0:
                return
            i = q if self.field_start else q + 1  # else a quote inside a field: a character

    def _unquoted(self, buf: bytes, lines: bytes, a: int, b: int) -> None:
        """Bytes ``a`` to ``b`` of ``buf``, from outside quotes to outside quotes, in which every
        newline ends a record (no quote, or whole quoted fields without newlines)."""
        origin, cuts = self.pos, self.cuts
        first = lines.find(b"\n", a, b)
        if first >= 0:
            if origin + first - self.record_start > self.limit:
                raise long_row(self.count + 1, self.limit)
            while a < b:
                if cuts.rows is None:
                    # the first line ending whose last byte is at target - 1 or later
                    g = lines.find(b"\n", max(a, cuts.target - 1 - origin), b)
                else:  # the end of the record that makes the rows a multiple
                    g = self._nth_end(lines, a, b, cuts.rows - self.count)
                if g < 0:
                    break
                crlf = buf[g] == _CR and g + 1 < len(buf) and buf[g + 1] == _LF
                at = g + 2 if crlf else g + 1
                self._ended(lines, a, at)
                if (cuts.rows if cuts.rows is not None else cuts.aim(self.count)) == self.count:
                    cuts.cut(origin + at, self.count + 1)
                a = at
            last = lines.rfind(b"\n", a, b)  # an LF, or a lone CR (a CR's LF would be later)
            if last >= 0:
                self._ended(lines, a, last + 1)
        self.field_start = buf[b - 1] in _FIELD_START

    def _nth_end(self, lines: bytes, a: int, b: int, need: int) -> int:
        """Where (the line ending's first byte) the ``need``-th record that is not blank ends
        within ``a`` to ``b``, or -1 (counted as ``_ended`` counts)."""
        if lines[a] == _LF and self.record_start < self.pos + a:  # the open record ends at a
            if need == 1:
                return a
            need -= 1
        for found in itertools.islice(_RECORD_ENDS.finditer(lines, a, b), need - 1, None):
            return found.start() + 1
        return -1

    def _ended(self, lines: bytes, a: int, b: int) -> None:
        """Count the records that end within ``a`` to ``b`` (which ends with a line ending)."""
        count = lines.count(b"a\n", a, b)
        if lines[a] == _LF and self.record_start < self.pos + a:
            count += 1  # the open record, which began before a, ends at a
        self.count += count
        self.record_start = self.pos + b


class _JsonlScanner(_Scanner):
    """Lines split at LF."""

    def __init__(self, start: int, share_bytes: int, per_chunk: int) -> None:
        super().__init__(start, share_bytes, per_chunk)
        self.line_start = start

    def feed(self, data: bytes, eof: bool) -> tuple[bytes, list[int]]:
        cuts, origin, before = self.cuts, self.pos, len(self.cuts.starts)
        a = 0
        while True:
            if cuts.rows is None:
                g = data.find(b"\n", max(a, cuts.target - 1 - origin))
                if g < 0:
                    break
                self.count += data.count(b"\n", a, g + 1)
                cuts.aim(self.count)
            else:  # the line that makes the lines a multiple
                need = cuts.rows - self.count
                g = next(
                    (
                        m.start()
                        for m in itertools.islice(_LINE_ENDS.finditer(data, a), need - 1, None)
                    ),
                    -1,
                )
                if g < 0:
                    break
                self.count += need
            if self.count == cuts.rows:
                cuts.cut(origin + g + 1, self.count + 1)
            a = g + 1
        self.count += data.count(b"\n", a)
        last = data.rfind(b"\n")
        if last >= 0:
            self.line_start = origin + last + 1
        self.pos += len(data)
        if eof and self.line_start < self.pos:  # a last line without a line ending
            self.count += 1
            self.line_start = self.pos
        return data, [at - origin for at in cuts.starts[before:]]


# --- the header -------------------------------------------------------------------------------


def _read_header(
    stream: Any, piece: int, limit: int, max_columns: int
) -> tuple[bytes, bool, list[str], bytes]:
    """``(BOM and header line, bom, column names, the bytes read past it)``: the header is the
    first line, checked by ``read_csv`` (the single path's reasons). Reads at most about
    ``limit`` bytes more than the header."""
    buf, eof = b"", False
    while True:
        skip = 3 if buf.startswith(_BOM) else 0
        head = buf[skip : skip + limit + 1]  # a header longer than this (its ending aside) fails
        ending = min((i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0), default=-1)
        if ending >= 0:
            end = skip + ending + 1
            if buf[end - 1] == _CR:
                if end == len(buf) and not eof:
                    pass  # its LF, if any, is in the next piece
                else:
                    end += buf[end : end + 1] == b"\n"
                    break
            else:
                break
        elif eof or (len(buf) >= 3 and len(buf) - skip > limit):
            end = -1
            break
        more = stream.read(piece)
        if more:
            buf += more
        else:
            eof = True
    if end < 0 and len(buf) - skip <= limit:
        end = len(buf)  # the whole file is one line without an ending
    if end < 0:  # too long: read_csv says so (stray bytes of a cut character count as 3)
        text = buf[skip : skip + limit + 1].decode("utf-8", "surrogateescape")
    else:
        text = buf[skip:end].decode("utf-8")
    names, _ = read_csv(
        io.StringIO(text, newline=""), 1, max_line_bytes=limit, max_columns=max_columns
    )
    assert end >= 0, "read_csv has refused a header over the line limit"
    return buf[:end], skip == 3, names, buf[end:]


# --- staged shares (gzip inputs) --------------------------------------------------------------


class _Staging:
    """The shares of a gzip input, written uncompressed under the plan's prefix as they
    stream; ``abort`` deletes what was written."""

    def __init__(self, s3: Any, bucket: str, prefix: str, content_type: str) -> None:
        self.s3, self.bucket, self.prefix, self.content_type = s3, bucket, prefix, content_type
        self.index = 0  # the share being written
        self.writer: S3Writer | None = None
        self.made: dict[int, tuple[str, str | None]] = {}  # share: (key, version)
        self.others: list[tuple[str, str | None]] = []

    def key(self, index: int) -> str:
        return f"{self.prefix}share-{index:06d}"

    def put(self, name: str, data: bytes) -> tuple[str, str | None]:
        key = self.prefix + name
        made = self.s3.put_object(
            Bucket=self.bucket, Key=key, Body=data, ContentType=self.content_type
        )
        self.others.append((key, made.get("VersionId")))
        return key, made.get("VersionId")

    def write(self, data: bytes, cuts: Iterable[int]) -> None:
        at = 0
        for cut in cuts:
            self._write(data[at:cut])
            self._close()
            self.index += 1
            at = cut
        self._write(data[at:])

    def _write(self, data: bytes) -> None:
        if not data:
            return
        if self.writer is None:
            self.writer = S3Writer(self.s3, self.bucket, self.key(self.index), self.content_type)
        self.writer.write(data)

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.made[self.index] = (self.writer.key, self.writer.version_id)
            self.writer = None

    def finish(self) -> None:
        self._close()
        if not self.made:  # an empty body: one share of 0 bytes, still an object
            made = self.s3.put_object(Bucket=self.bucket, Key=self.key(0), Body=b"")
            self.made[0] = (self.key(0), made.get("VersionId"))

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()
            self.writer = None
        for key, version in [*self.made.values(), *self.others]:
            try:
                self.s3.delete_object(
                    Bucket=self.bucket, Key=key, **({"VersionId": version} if version else {})
                )
            except Exception:  # the bucket's lifecycle rule ends what is left
                _log.warning("could not delete the staged share %s", key, exc_info=True)
        self.made.clear()
        self.others.clear()


# --- the plan ---------------------------------------------------------------------------------


def plan(
    s3: Any,
    bucket: str,
    key: str,
    version_id: str | None = None,
    *,
    etag: str | None = None,
    share_bytes: int,
    fmt: Format,
    compressed: bool | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
    max_columns: int = MAX_COLUMNS,
    max_expansion: int = MAX_EXPANSION,
    read_size: int = READ_SIZE,
    header_check: Callable[[list[str]], None] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> Plan:
    """Plan ``s3://bucket/key`` (that version; in a bucket without versioning, the object of
    that ``etag``; else the current one) in shares of about
    ``share_bytes`` of content (at least that, but for the last; at most that plus one chunk of
    rows, ``chunk_rows`` of them),
    and write the plan (``plan.json``, then ``summary.json``) under its staging prefix.

    ``compressed`` defaults to the key's ``.gz`` suffix. ``header_check`` is called with a CSV
    file's column names before its body is read. The limits are the batch settings of the same
    names. Reads are of at most ``read_size`` bytes (a CSV file: and ``max_line_bytes``).
    """
    if share_bytes < 1 or read_size < 1:
        raise ValueError("share_bytes and read_size must be at least 1")
    if compressed is None:
        compressed = key.lower().endswith(".gz")
    which = {"VersionId": version_id} if version_id else {"IfMatch": etag} if etag else {}
    got = s3.get_object(Bucket=bucket, Key=key, **which)  # that version: not a newer upload
    etag = str(got.get("ETag", "")).strip('"') or None
    source = Source(bucket, key, got.get("VersionId") or version_id, etag, got["ContentLength"])
    prefix = staging_prefix(key, source.version_id or source.etag or "unversioned")
    stream: Any = got["Body"]
    if compressed:
        stream = open_bytes(stream, True, size=source.size, max_expansion=max_expansion)
    piece = min(read_size, max(1, max_line_bytes)) if fmt == "csv" else read_size
    staging = _Staging(s3, bucket, prefix, content_type(fmt)) if compressed else None
    header: HeaderRef | None = None
    try:
        scanner: _Scanner
        if fmt == "csv":
            head, bom, names, rest = _read_header(stream, piece, max_line_bytes, max_columns)
            if header_check is not None:
                header_check(names)
            if staging is not None:
                staged, version = staging.put(HEADER, head)
                header = HeaderRef(bucket, staged, version, None, 0, len(head), bom)
            else:
                header = HeaderRef(bucket, key, source.version_id, etag, 0, len(head), bom)
            per_chunk = chunk_rows_of(len(names), chunk_rows)
            scanner = _CsvScanner(len(head), share_bytes, max_line_bytes, per_chunk)
        else:
            rest = b""
            scanner = _JsonlScanner(0, share_bytes, chunk_rows)
        # A CSV file is UTF-8 text as a whole: each piece is checked before it is scanned, so
        # that text that is not UTF-8 fails the file where the single path's reader fails it
        # (before a fault later in the file), with the same reason.
        text = codecs.getincrementaldecoder("utf-8")() if fmt == "csv" else None
        for data in itertools.chain([rest], iter(lambda: stream.read(piece), b"")):
            if data:
                if text is not None:
                    text.decode(data)
                taken, cuts = scanner.feed(data, eof=False)
                if staging is not None:
                    staging.write(taken, cuts)
        if text is not None:
            text.decode(b"", True)
        taken, cuts = scanner.feed(b"", eof=True)
        if staging is not None:
            staging.write(taken, cuts)
            staging.finish()
        made = _plan(source, fmt, compressed, share_bytes, prefix, header, scanner, staging)
        made = dataclasses.replace(made, written=_write(s3, made))
    except BaseException:
        if staging is not None:
            staging.abort()
        raise
    return made


def _plan(
    source: Source,
    fmt: Format,
    compressed: bool,
    share_bytes: int,
    prefix: str,
    header: HeaderRef | None,
    scanner: _Scanner,
    staging: _Staging | None,
) -> Plan:
    end, starts, first_rows = scanner.pos, scanner.cuts.starts, scanner.cuts.first_rows
    if len(starts) > 1 and starts[-1] == end:  # the content ended at a cut
        starts, first_rows = starts[:-1], first_rows[:-1]
    csv_rows = fmt == "csv"
    shares = []
    for index, start in enumerate(starts):
        stop = starts[index + 1] if index + 1 < len(starts) else end
        following = first_rows[index + 1] if index + 1 < len(starts) else scanner.count + 1
        rows = following - first_rows[index] if csv_rows else None
        if staging is not None:  # its own object, from its first byte
            key, version = staging.made[index]
            etag, begin = None, 0
        else:  # a range of the input
            key, version, etag, begin = source.key, source.version_id, source.etag, start
        shares.append(
            Share(
                index=index,
                bucket=source.bucket,
                key=key,
                version_id=version,
                etag=etag,
                start=begin,
                end=begin + stop - start,
                offset=start,
                first_row=first_rows[index],
                rows=rows,
                staged=staging is not None,
            )
        )
    return Plan(
        source=source,
        format=fmt,
        compressed=compressed,
        share_bytes=share_bytes,
        prefix=prefix,
        header=header,
        shares=tuple(shares),
        content_bytes=end,
        rows=scanner.count if csv_rows else None,
        lines=None if csv_rows else scanner.count,
    )


def _write(s3: Any, made: Plan) -> tuple[tuple[str, str | None], ...]:
    """The items (a JSON array, one item per line), then the summary; their versions."""
    lines = ",\n".join(json.dumps(item, separators=(",", ":")) for item in made.items())
    bucket = made.source.bucket
    items = s3.put_object(
        Bucket=bucket,
        Key=made.items_key,
        Body=f"[\n{lines}\n]\n".encode(),
        ContentType="application/json",
    )
    summary = s3.put_object(
        Bucket=bucket,
        Key=made.summary_key,
        Body=json.dumps(made.summary(), indent=2).encode(),
        ContentType="application/json",
    )
    return (
        (made.items_key, items.get("VersionId")),
        (made.summary_key, summary.get("VersionId")),
    )


def read_summary(s3: Any, bucket: str, prefix: str) -> dict[str, Any]:
    """A plan's summary (what the finisher starts from)."""
    loaded: dict[str, Any] = json.loads(
        s3.get_object(Bucket=bucket, Key=prefix + SUMMARY)["Body"].read()
    )
    return loaded
