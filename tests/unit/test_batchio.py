"""CSV and JSON Lines reading: the fast path and the csv module agree on every file."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklambda import batchio
from sklambda.batchio import Chunk, FileError, read_csv, read_jsonl


def rows_of(
    chunks: list[Chunk],
) -> tuple[list[tuple[int, list[str]]], list[tuple[int, object, str]]]:
    good = [(n, c.row_cells(i)) for c in chunks for i, n in enumerate(c.numbers)]
    broken = [b for c in chunks for b in c.broken]
    return good, broken


def reference(text: str) -> tuple[list[tuple[int, list[str]]], list[tuple[int, object, str]]]:
    """What the csv module alone makes of the same text."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    good, broken, number = [], [], 0
    for row in reader:
        if not row:
            continue
        number += 1
        if len(row) == len(header):
            good.append((number, row))
        else:
            broken.append((number, row, f"expected {len(header)} fields, got {len(row)}"))
    return good, broken


cell = st.text(alphabet='ab1.,"\n\r -', max_size=5)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.lists(cell, min_size=1, max_size=4), max_size=12),
    newline=st.sampled_from(["\n", "\r\n"]),
    block=st.integers(min_value=1, max_value=64),
    chunk_rows=st.integers(min_value=1, max_value=5),
)
def test_the_fast_path_reads_what_the_csv_module_reads(
    rows: list[list[str]], newline: str, block: int, chunk_rows: int
) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(["x", "y", "z"])
    writer.writerows(rows)
    text = out.getvalue()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(batchio, "BLOCK_CHARS", block)  # many block boundaries
        header, chunks = read_csv(io.StringIO(text, newline=""), chunk_rows)
        got = list(chunks)
    assert header == ["x", "y", "z"]
    assert all(c.size <= chunk_rows for c in got)
    assert rows_of(got) == reference(text)


def test_plain_rows_split_without_the_csv_module(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the csv module read a plain block")

    text = "a,b\n" + "1,2\n" * 10
    _, chunks = read_csv(io.StringIO(text), 4)
    monkeypatch.setattr(batchio.csv, "reader", refuse)
    got = list(chunks)
    assert [c.numbers for c in got] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the file is empty"),
        ("a,,b\n1,2,3\n", "empty column name"),
        ("a,b,a\n", r"repeats the columns \['a'\]"),
    ],
)
def test_a_bad_header_is_a_file_error(text: str, message: str) -> None:
    with pytest.raises(FileError, match=message):
        read_csv(io.StringIO(text), 10)


def test_json_lines_keep_line_numbers_and_broken_lines() -> None:
    chunks = list(read_jsonl(io.StringIO('{"a": 1}\n\n{"a": \n[1]\n'), 10))
    assert chunks[0].numbers == [1, 4] and chunks[0].records == [{"a": 1}, [1]]
    assert chunks[0].broken[0][0] == 3 and chunks[0].broken[0][2].startswith("not valid JSON")
