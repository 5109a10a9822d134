"""Reading batch files in bounded memory: line limits, column limits, gzip expansion, chunk size."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklambda import batchio
from sklambda.batchio import Chunk, FileError, read_csv, read_jsonl


class CountedText(io.StringIO):
    """Text whose reads are counted: how much of it the reader ever asked for."""

    def __init__(self, text: str) -> None:
        super().__init__(text, newline="")
        self.handed = 0

    def read(self, size: int | None = -1) -> str:
        got = super().read(size)
        self.handed += len(got)
        return got

    def readline(self, size: int | None = -1) -> str:
        got = super().readline(size)
        self.handed += len(got)
        return got


class CountedBytes(io.BytesIO):
    """Bytes whose longest single read is kept."""

    longest = 0

    def readline(self, size: int | None = -1) -> bytes:
        got = super().readline(size)
        self.longest = max(self.longest, len(got))
        return got


def rows_of(chunks: list[Chunk]) -> list[tuple[int, list[str]]]:
    good = [(n, c.row_cells(i)) for c in chunks for i, n in enumerate(c.numbers)]
    broken = [(n, list(raw)) for c in chunks for n, raw, _ in c.broken]
    return sorted(good + broken)


# --- CSV: every record within the limit, or a FileError naming the first that is not ---------

cell = st.text(alphabet='ab1.,"\n\r -', max_size=12)


@settings(max_examples=400, deadline=None)
@given(
    rows=st.lists(st.lists(cell, min_size=1, max_size=4), max_size=12),
    newline=st.sampled_from(["\n", "\r\n"]),
    block=st.integers(min_value=1, max_value=64),
    limit=st.integers(min_value=5, max_value=40),
)
def test_a_record_over_the_limit_fails_naming_it_and_the_others_read_as_before(
    rows: list[list[str]], newline: str, block: int, limit: int
) -> None:
    def record(row: list[str]) -> str:
        """One record's text (a field holding CR or LF quoted, so it is one record)."""
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerow(row)
        return out.getvalue()[:-2]

    text = "x,y,z" + newline + "".join(record(r) + newline for r in rows)
    lengths = [len(record(r)) for r in rows if record(r) != ""]  # blank lines are no rows
    too_long = [n for n, size in enumerate(lengths, start=1) if size > limit]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(batchio, "BLOCK_CHARS", block)
        header, chunks = read_csv(CountedText(text), 3, max_line_bytes=limit)
        if too_long:
            with pytest.raises(FileError, match=rf"^row {too_long[0]} is longer than {limit} "):
                list(chunks)
            return
        got = list(chunks)
    assert header == ["x", "y", "z"]
    reference = list(csv.reader(io.StringIO(text, newline="")))[1:]
    assert rows_of(got) == [(n, r) for n, r in enumerate((r for r in reference if r), start=1)]


@pytest.mark.parametrize("block", range(1, 20))
def test_a_crlf_record_of_exactly_the_limit_reads_wherever_a_block_ends(block: int) -> None:
    # Given a record of exactly the limit, ended by CRLF, and blocks that end anywhere,
    # between its CR and its LF too (block 13)
    text = "x,y,z\r\naaaaa\r\nb,c\r\n"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(batchio, "BLOCK_CHARS", block)
        _, chunks = read_csv(CountedText(text), 3, max_line_bytes=5)
        got = list(chunks)
    # Then it is a row like any other: the limit never counts the line ending
    assert rows_of(got) == [(1, ["aaaaa"]), (2, ["b", "c"])]


def test_an_endless_line_is_read_no_further_than_the_limit() -> None:
    text = CountedText("a,b\n1,2\n" + "9" * 20_000_000)
    _, chunks = read_csv(text, 10, max_line_bytes=100_000)
    with pytest.raises(FileError, match=r"^row 2 is longer than 100000 bytes"):
        list(chunks)
    assert text.handed < 100_000 + 2 * batchio.BLOCK_CHARS


def test_an_endless_quoted_field_is_read_no_further_than_the_limit() -> None:
    text = CountedText('a,b\n1,"' + "x\n" * 10_000_000)
    _, chunks = read_csv(text, 10, max_line_bytes=100_000)
    with pytest.raises(FileError, match=r"^row 1 is longer than 100000 bytes"):
        list(chunks)
    assert text.handed < 100_000 + 2 * batchio.BLOCK_CHARS


def test_a_quoted_field_may_be_as_long_as_a_line() -> None:
    # the csv module's own field limit (131072 characters) gives way to the line limit
    note = "n" * 500_000
    _, chunks = read_csv(io.StringIO(f'a,b\n1,"{note}"\n', newline=""), 10)
    (chunk,) = list(chunks)
    assert chunk.row_cells(0) == ["1", note]


def test_a_non_ascii_line_is_measured_in_bytes() -> None:
    text = "a\n" + "é" * 600 + "\n"  # 600 characters, 1200 bytes
    _, chunks = read_csv(io.StringIO(text, newline=""), 10, max_line_bytes=1024)
    with pytest.raises(FileError, match=r"^row 1 is longer than 1024 bytes"):
        list(chunks)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("h" * 2000 + "\n1\n", r"^the header is longer than 1024 bytes \(the line limit\)$"),
        (",".join(f"c{i}" for i in range(11)) + "\n", r"^the header has 11 columns, more than "),
    ],
)
def test_a_header_too_long_or_too_wide_is_a_file_error(text: str, message: str) -> None:
    stream = CountedText(text + "9" * 5_000_000)
    with pytest.raises(FileError, match=message):
        read_csv(stream, 10, max_line_bytes=1024, max_columns=10)
    assert stream.handed <= 1025


def test_a_chunk_ends_at_its_share_of_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batchio, "CHUNK_CHARS", 1000)
    monkeypatch.setattr(batchio, "MAX_CELLS", 300)
    wide = ",".join(f"c{i}" for i in range(50))
    _, chunks = read_csv(io.StringIO(wide + "\n" + ("1," * 49 + "1\n") * 40), 1000)
    sizes = [c.size for c in chunks]
    assert sum(sizes) == 40 and max(sizes) <= 6  # 300 cells of 50 columns
    _, chunks = read_csv(io.StringIO("a,b\n" + f"{'x' * 98},1\n" * 40), 1000)  # 101 each
    sizes = [c.size for c in chunks]
    assert sum(sizes) == 40 and max(sizes) == 10
    (first, *_) = read_jsonl(io.BytesIO((b'{"a": "' + b"x" * 92 + b'"}\n') * 40), 1000)
    assert first.size == 10


# --- JSON Lines: a line over the limit is one rejected row ------------------------------------


def test_a_json_line_over_the_limit_is_one_rejected_row_read_a_piece_at_a_time() -> None:
    data = CountedBytes(b'{"a": 1}\n' + b'["' + b"x" * 5_000_000 + b'"]\n' + b'{"a": 3}\n')
    (chunk,) = list(read_jsonl(data, 10, max_line_bytes=2048))
    assert chunk.numbers == [1, 3] and chunk.records == [{"a": 1}, {"a": 3}]
    ((number, raw, reason),) = chunk.broken
    assert (number, reason) == (2, "the line is longer than 2048 bytes")
    assert raw.startswith('["xxx') and len(raw) == 201
    assert data.longest <= batchio.SKIP_BYTES


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"a": "\xff"}', "not UTF-8 text"),
        (b'{"a": ' + b"1" * 4301 + b"}", "not valid JSON: a number of more than 4300 digits"),
        (b"[" * 50_000 + b"]" * 50_000, "not valid JSON: nested more than 100 levels deep"),
        (b'{"a": ' + b"[" * 101 + b"]" * 101 + b"}", "not valid JSON: nested more than 100 "),
        (b'{"a": 1', "not valid JSON: Expecting ',' delimiter (column 8)"),
    ],
)
def test_a_bad_json_line_is_a_rejected_row_with_a_fixed_reason(line: bytes, reason: str) -> None:
    data = io.BytesIO(b'{"a": 0}\n' + line + b'\n{"a": 2}\n')
    (chunk,) = list(read_jsonl(data, 10))
    assert chunk.numbers == [1, 3]
    ((number, _, got),) = chunk.broken
    assert number == 2 and got.startswith(reason)


def test_nesting_up_to_the_limit_is_read() -> None:
    deep = b'{"a": ' + b"[" * 99 + b"]" * 99 + b"}"
    (chunk,) = list(read_jsonl(io.BytesIO(deep + b"\n"), 10))
    assert chunk.broken == [] and len(chunk.records) == 1


def test_json_lines_as_bytes_drop_the_byte_order_mark_and_keep_crlf() -> None:
    data = io.BytesIO(b'\xef\xbb\xbf{"a": 1}\r\n\r\n{"a": "\xc3\xa9"}\r\n')
    (chunk,) = list(read_jsonl(data, 10))
    assert chunk.numbers == [1, 3] and chunk.records == [{"a": 1}, {"a": "é"}]


def test_json_lines_as_text_are_read_the_same() -> None:
    text = '{"a": 1}\n' + json.dumps(["é" * 1400], ensure_ascii=False) + "\n"  # 2,804 bytes
    (chunk,) = list(read_jsonl(io.StringIO(text), 10, max_line_bytes=2048))
    assert chunk.numbers == [1]
    assert chunk.broken[0][0] == 2 and chunk.broken[0][2] == "the line is longer than 2048 bytes"


# --- gzip: expansion counted as it streams ----------------------------------------------------


def open_bytes(*args: Any, **kwargs: Any) -> Any:
    return batchio.open_bytes(*args, **kwargs)


def bomb(total: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(b"\x00" * total) + c.flush()


def test_a_gzip_stream_that_expands_too_much_is_stopped_as_it_streams() -> None:
    body = bomb(50_000_000)  # about 50 KB
    stream = open_bytes(io.BytesIO(body), True, size=len(body), max_expansion=20)
    taken: list[int] = []

    def drain() -> None:
        while piece := stream.read(65536):
            taken.append(len(piece))

    with pytest.raises(FileError, match=r"^the file decompresses to more than 20 times its co"):
        drain()
    assert sum(taken) <= max(20 * len(body), batchio.EXPANSION_FLOOR)


def test_a_small_file_may_expand_past_the_ratio_up_to_the_floor() -> None:
    # very repetitive but small: 4 MiB from a few KB is no bomb
    body = bomb(4 << 20)
    assert 20 * len(body) < (4 << 20)
    assert len(open_bytes(io.BytesIO(body), True, size=len(body), max_expansion=20).read()) == (
        4 << 20
    )


def test_a_gzip_stream_within_its_expansion_reads_whole() -> None:
    text = b"a,b\n" + b"1,2\n" * 1000
    body = gzip.compress(text)
    assert len(text) < 200 * len(body)
    assert open_bytes(io.BytesIO(body), True, size=len(body)).read() == text


def test_without_a_size_the_expansion_is_measured_against_what_was_read() -> None:
    body = bomb(50_000_000)
    with pytest.raises(FileError, match=rf"more than 20 times its compressed size \({len(body)} "):
        open_bytes(io.BytesIO(body), True, max_expansion=20).read()


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_a_row_is_measured_in_bytes_whatever_ends_it(ending: str) -> None:
    # 600 characters of two bytes each: 1,200 bytes, over a limit of 1,024, with any line ending
    text = ending.join(["a,b", "1,2", "3," + "é" * 600, "4,5"]) + ending
    with pytest.raises(FileError, match="row 2 is longer than 1024 bytes"):
        list(read_csv(io.StringIO(text, newline=""), 10, max_line_bytes=1024)[1])
    fits = ending.join(["a,b", "3," + "é" * 511]) + ending  # 1,024 bytes
    (chunk,) = read_csv(io.StringIO(fits, newline=""), 10, max_line_bytes=1024)[1]
    assert chunk.numbers == [1]
