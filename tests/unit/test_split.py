"""The split planner: shares that cover a file exactly once, cut only between records, whose
rows keep their numbers, read by a worker as the single path reads the whole file."""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklambda import split
from sklambda.batchio import FileError, open_bytes, open_text, read_csv, read_jsonl
from sklambda.split import Plan

from support import mocked_bucket

BUCKET = "split-bucket"
_keys = itertools.count()


@pytest.fixture
def s3() -> Iterator[Any]:
    with mocked_bucket(BUCKET) as client:
        yield client


def put(s3: Any, data: bytes, suffix: str = ".csv") -> str:
    key = f"incoming/file-{next(_keys)}{suffix}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    return key


def planned(s3: Any, data: bytes, suffix: str = ".csv", **options: Any) -> Plan:
    key = put(s3, gzip.compress(data) if suffix.endswith(".gz") else data, suffix)
    fmt = "jsonl" if ".jsonl" in suffix else "csv"
    return split.plan(s3, BUCKET, key, **{"fmt": fmt, "chunk_rows": 1, **options})


def get(s3: Any, ref: dict[str, Any]) -> bytes:
    """What a worker reads: the range of the object the item (or its header) names."""
    if ref["range"] is None:
        return b""
    where = {"VersionId": ref["version_id"]} if ref["version_id"] else {}
    if ref["etag"]:
        where["IfMatch"] = ref["etag"]
    got = s3.get_object(Bucket=BUCKET, Key=ref["key"], Range=ref["range"], **where)
    data: bytes = got["Body"].read()
    assert len(data) == ref["end"] - ref["start"]
    return data


def items_of(s3: Any, plan: Plan) -> list[dict[str, Any]]:
    """The items as the ItemReader reads them: the JSON array in plan.json."""
    loaded: list[dict[str, Any]] = json.loads(
        s3.get_object(Bucket=BUCKET, Key=plan.items_key)["Body"].read()
    )
    assert loaded == plan.items()
    return loaded


def covered(s3: Any, plan: Plan, content: bytes) -> list[bytes]:
    """Each share's bytes, checked to be the content after the header, in order, exactly once."""
    items = items_of(s3, plan)
    head = get(s3, items[0]["header"]) if items[0]["header"] else b""
    at = len(head)
    assert content[:at] == head
    shares = []
    for n, item in enumerate(items):
        assert (item["share"], item["shares"], item["offset"]) == (n, len(items), at)
        data = get(s3, item)
        assert len(data) == item["bytes"] and content[at : at + len(data)] == data
        shares.append(data)
        at += len(data)
    assert at == len(content) == plan.content_bytes
    assert all(len(s) >= plan.share_bytes for s in shares[:-1])
    return shares


def csv_records(text: str) -> list[list[str]]:
    """The csv module's records of a file after its header, blank lines aside: its rows."""
    return [row for row in list(csv.reader(io.StringIO(text, newline="")))[1:] if row]


def worker_rows(s3: Any, plan: Plan) -> list[tuple[int, list[str]]]:
    """Every share read the way a worker reads it (header and range as one file, through
    batchio), its rows numbered from the share's first row on."""
    rows: list[tuple[int, list[str]]] = []
    for item in items_of(s3, plan):
        header = get(s3, item["header"])
        text = open_text(io.BytesIO(header + get(s3, item)), False)
        chunks = list(read_csv(text, 3)[1])
        got = [
            (item["first_row"] - 1 + n, c.row_cells(i))
            for c in chunks
            for i, n in enumerate(c.numbers)
        ]
        got += [(item["first_row"] - 1 + n, list(raw)) for c in chunks for n, raw, _ in c.broken]
        assert len(got) == item["rows"]
        rows += sorted(got)
    return rows


def single_rows(content: bytes) -> list[tuple[int, list[str]]]:
    """What the single path reads of the whole file."""
    chunks = list(read_csv(open_text(io.BytesIO(content), False), 3)[1])
    got = [(n, c.row_cells(i)) for c in chunks for i, n in enumerate(c.numbers)]
    return sorted(got + [(n, list(raw)) for c in chunks for n, raw, _ in c.broken])


def check_csv(s3: Any, plan: Plan, content: bytes) -> list[bytes]:
    shares = covered(s3, plan, content)
    text = content.decode("utf-8-sig")
    expected = csv_records(text)
    assert plan.rows == len(expected)
    # each share alone, with the header, is whole records: they add up to the file's records
    head = get(s3, plan.items()[0]["header"]).decode("utf-8-sig")
    assert list(itertools.chain(*(csv_records(head + s.decode()) for s in shares))) == expected
    first = 1
    for item, data in zip(plan.items(), shares, strict=True):
        assert item["first_row"] == first
        first += len(csv_records(head + data.decode()))
    assert worker_rows(s3, plan) == single_rows(content)
    return shares


# --- every share is whole chunks of the single path's ------------------------------------------


def chunk_rows_of_reader(chunks: Iterator[Any]) -> list[list[int]]:
    """The row numbers of each chunk a reader yields (good and broken rows)."""
    return [sorted([*c.numbers, *(n for n, _, _ in c.broken)]) for c in chunks]


def test_a_share_of_a_csv_file_is_whole_chunks_of_the_single_path(s3: Any) -> None:
    # A runtime's answer for a row can differ in its last bit with the batch it is scored in:
    # the worker of a share must read the very chunks a reader of the whole file reads.
    @settings(max_examples=150, deadline=None)
    @given(
        rows=st.lists(st.lists(cell, min_size=2, max_size=2), max_size=16),
        blanks=st.lists(st.integers(min_value=0, max_value=16), max_size=4),
        chunk_rows=st.integers(min_value=1, max_value=5),
        share_bytes=st.integers(min_value=1, max_value=40),
        read_size=st.integers(min_value=1, max_value=24),
    )
    def check(
        rows: list[list[str]],
        blanks: list[int],
        chunk_rows: int,
        share_bytes: int,
        read_size: int,
    ) -> None:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([["x", "y"], *rows])
        head, *lines = out.getvalue().splitlines(keepends=True)
        for at in sorted(blanks, reverse=True):
            lines.insert(min(at, len(lines)), "\n")
        content = (head + "".join(lines)).encode()
        plan = planned(
            s3, content, share_bytes=share_bytes, read_size=read_size, chunk_rows=chunk_rows
        )
        shares = check_csv(s3, plan, content)
        items = plan.items()
        assert all((item["first_row"] - 1) % chunk_rows == 0 for item in items)
        assert all(item["rows"] for item in items[:-1])  # no share but the last is empty
        whole = read_csv(open_text(io.BytesIO(content), False), chunk_rows)[1]
        header = get(s3, items[0]["header"])
        parts = []
        for item, data in zip(items, shares, strict=True):
            text = open_text(io.BytesIO(header + data), False)
            parts += chunk_rows_of_reader(
                read_csv(text, chunk_rows, first_row=item["first_row"])[1]
            )
        assert parts == chunk_rows_of_reader(whole)

    check()


def test_a_share_of_a_json_lines_file_is_whole_chunks_of_the_single_path(s3: Any) -> None:
    @settings(max_examples=150, deadline=None)
    @given(
        lines=st.lists(st.sampled_from(["{}", "[1]", "", " ", "{", '"a"']), max_size=16),
        chunk_rows=st.integers(min_value=1, max_value=5),
        share_bytes=st.integers(min_value=1, max_value=20),
        read_size=st.integers(min_value=1, max_value=16),
    )
    def check(lines: list[str], chunk_rows: int, share_bytes: int, read_size: int) -> None:
        content = "".join(line + "\n" for line in lines).encode()
        plan = planned(
            s3,
            content,
            ".jsonl",
            share_bytes=share_bytes,
            read_size=read_size,
            chunk_rows=chunk_rows,
        )
        shares = covered(s3, plan, content)
        items = plan.items()
        assert all((item["first_row"] - 1) % chunk_rows == 0 for item in items)
        parts = []
        for item, data in zip(items, shares, strict=True):
            read = read_jsonl(io.BytesIO(data), chunk_rows, first_row=item["first_row"])
            parts += chunk_rows_of_reader(read)
        assert parts == chunk_rows_of_reader(read_jsonl(io.BytesIO(content), chunk_rows))

    check()


def test_a_wide_file_is_cut_at_its_chunks_of_fewer_rows(s3: Any) -> None:
    names = ",".join(f"c{i}" for i in range(1000))  # MAX_CELLS / 1000: 2,000 rows a chunk
    content = (names + "\n" + ",".join(["1"] * 1000) + "\n").encode()
    content = content + content.split(b"\n", 1)[1] * 4999
    plan = planned(s3, content, share_bytes=1 << 20, chunk_rows=10_000)
    assert [s.first_row for s in plan.shares] == [1, 2001, 4001]
    assert [s.rows for s in plan.shares] == [2000, 2000, 1000]


# --- every cut is between records -------------------------------------------------------------

cell = st.text(alphabet='ab1.,"\n\r é', max_size=6)


def test_writer_made_files_are_cut_between_records(s3: Any) -> None:
    @settings(max_examples=150, deadline=None)
    @given(
        rows=st.lists(st.lists(cell, min_size=2, max_size=2), max_size=14),
        newline=st.sampled_from(["\n", "\r\n"]),
        bom=st.booleans(),
        last_newline=st.booleans(),
        share_bytes=st.integers(min_value=1, max_value=40),
        read_size=st.integers(min_value=1, max_value=24),
    )
    def check(
        rows: list[list[str]],
        newline: str,
        bom: bool,
        last_newline: bool,
        share_bytes: int,
        read_size: int,
    ) -> None:
        out = io.StringIO()
        csv.writer(out, lineterminator=newline).writerows([["x", "y"], *rows])
        text = out.getvalue()
        if not last_newline and rows:
            text = text.removesuffix(newline)
        content = ("\ufeff" if bom else "").encode() + text.encode()
        plan = planned(s3, content, share_bytes=share_bytes, read_size=read_size)
        check_csv(s3, plan, content)
        assert plan.header is not None and plan.header.bom is bom

    check()


def test_any_text_is_cut_where_the_csv_module_starts_a_record(s3: Any) -> None:
    # not what a writer makes: quotes inside unquoted fields, unclosed quotes, lone CRs
    @settings(max_examples=200, deadline=None)
    @given(
        body=st.text(alphabet='a,"\r\né', max_size=60),
        header_end=st.sampled_from(["\n", "\r\n", "\r"]),
        share_bytes=st.integers(min_value=1, max_value=20),
        read_size=st.integers(min_value=1, max_value=16),
    )
    def check(body: str, header_end: str, share_bytes: int, read_size: int) -> None:
        content = f"x,y{header_end}{body}".encode()
        plan = planned(s3, content, share_bytes=share_bytes, read_size=read_size)
        check_csv(s3, plan, content)

    check()


@pytest.mark.parametrize("read_size", [1, 2, 3, 7, 1 << 20])
def test_quoted_newlines_at_the_boundary_stay_in_their_record(s3: Any, read_size: int) -> None:
    first = 'id,note\n1,"a\nb"\n'  # the boundary falls inside the quoted field
    for newline in ("\n", "\r\n"):
        content = (first + f'2,"c{newline}{newline}d"{newline}3,"e""{newline}f"{newline}').encode()
        for share_bytes in range(1, 12):
            plan = planned(s3, content, share_bytes=share_bytes, read_size=read_size)
            shares = check_csv(s3, plan, content)
            assert all(s.endswith(b"\n") for s in shares)
        plan = planned(s3, content, share_bytes=4, read_size=read_size)
        assert [i["first_row"] for i in plan.items()] == [1, 2, 3]
        assert [i["rows"] for i in plan.items()] == [1, 1, 1]


def test_a_cut_is_never_between_the_cr_and_the_lf(s3: Any) -> None:
    content = b"a,b\r\n" + b"1,2\r\n" * 12
    for share_bytes, read_size in itertools.product(range(1, 8), range(1, 5)):
        plan = planned(s3, content, share_bytes=share_bytes, read_size=read_size)
        for item in plan.items():
            assert content[item["start"] - 1 : item["start"]] == b"\n"
        check_csv(s3, plan, content)


def test_a_quote_inside_an_unquoted_field_is_a_character(s3: Any) -> None:
    # were it to open a quoted field, the newline after it would not end the record
    content = b'a,b\n1,x"y\n2,3\n4,5\n'
    plan = planned(s3, content, share_bytes=1, read_size=2)
    assert [i["first_row"] for i in plan.items()] == [1, 2, 3]
    check_csv(s3, plan, content)


def test_many_small_rows_in_many_shares(s3: Any) -> None:
    content = b"a,b\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(20_000))
    plan = planned(s3, content, share_bytes=10_000, read_size=4096)
    assert plan.rows == 20_000 and sum(s.rows or 0 for s in plan.shares) == 20_000
    assert all(10_000 <= s.bytes < 10_000 + 20 for s in plan.shares[:-1])
    check_csv(s3, plan, content)


def test_blank_lines_are_no_rows(s3: Any) -> None:
    content = b"a,b\n\n1,2\n\r\n\n3,4\n\n"
    plan = planned(s3, content, share_bytes=1, read_size=3)
    assert plan.rows == 2
    got = [(i["first_row"], i["rows"]) for i in plan.items()]
    # a share holds at least one row, but the last (the blank line after the last row)
    assert got == [(1, 1), (2, 1), (3, 0)]
    check_csv(s3, plan, content)


# --- small files ------------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"a,b\n", b"a,b", b"a,b\r\n", b"\xef\xbb\xbfa,b\n"])
def test_a_header_alone_is_one_share_of_no_bytes(s3: Any, content: bytes) -> None:
    plan = planned(s3, content, share_bytes=1)
    (item,) = items_of(s3, plan)
    assert (item["bytes"], item["range"], item["rows"], item["first_row"]) == (0, None, 0, 1)
    assert plan.rows == 0 and get(s3, item["header"]) == content


def test_a_file_smaller_than_one_share_is_one_share(s3: Any) -> None:
    content = b"a,b\n1,2\n3,4"  # no line ending at the end
    plan = planned(s3, content, share_bytes=1 << 20)
    (share,) = plan.shares
    assert (share.start, share.end, share.first_row, share.rows) == (4, len(content), 1, 2)
    check_csv(s3, plan, content)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "the file is empty"),
        (b"\xef\xbb\xbf", "the file is empty"),
        (b"a,,b\n1,2,3\n", "the header has an empty column name"),
        (b"a,b,a\n1,2,3\n", r"the header repeats the columns ['a']"),
    ],
)
def test_a_bad_header_fails_as_the_single_path_fails(s3: Any, content: bytes, reason: str) -> None:
    with pytest.raises(FileError) as planned_error:
        planned(s3, content, share_bytes=10)
    with pytest.raises(FileError) as single_error:
        read_csv(open_text(io.BytesIO(content), False), 10)
    assert str(planned_error.value) == str(single_error.value) == reason
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=split.STAGING)


def test_the_header_check_runs_before_the_body_is_read(s3: Any) -> None:
    seen: list[list[str]] = []

    def refuse(names: list[str]) -> None:
        seen.append(names)
        raise FileError("the model wants other columns")

    content = b"a,b\n" + b"9" * 5000 + b"\n"  # a row over the limit, never reached
    with pytest.raises(FileError, match=r"^the model wants other columns$"):
        planned(s3, content, share_bytes=10, max_line_bytes=100, header_check=refuse)
    assert seen == [["a", "b"]]


# --- records over the line limit --------------------------------------------------------------


def test_a_record_over_the_limit_fails_with_the_single_paths_reason(s3: Any) -> None:
    @settings(max_examples=150, deadline=None)
    @given(
        rows=st.lists(st.lists(cell, min_size=1, max_size=3), max_size=10),
        newline=st.sampled_from(["\n", "\r\n"]),
        limit=st.integers(min_value=4, max_value=30),
        read_size=st.integers(min_value=1, max_value=40),
        share_bytes=st.integers(min_value=1, max_value=30),
    )
    def check(
        rows: list[list[str]], newline: str, limit: int, read_size: int, share_bytes: int
    ) -> None:
        out = io.StringIO()
        csv.writer(out, lineterminator=newline).writerows([["x", "y", "z"], *rows])
        content = out.getvalue().encode()
        options = {"share_bytes": share_bytes, "read_size": read_size, "max_line_bytes": limit}
        single: FileError | None = None
        try:  # the single path, as batch reads it (its FileError is the job's reason)
            _, chunks = read_csv(open_text(io.BytesIO(content), False), 3, max_line_bytes=limit)
            read = sum(c.size for c in chunks)
        except FileError as exc:
            single = exc
        if single is not None:
            with pytest.raises(FileError) as got:
                planned(s3, content, **options)
            assert str(got.value) == str(single)
        else:
            assert planned(s3, content, **options).rows == read

    check()


@pytest.mark.parametrize("read_size", [5, 64, 1 << 20])
def test_a_long_quoted_record_fails_naming_its_row(s3: Any, read_size: int) -> None:
    content = b'a,b\n1,2\n3,"' + b"x\r\n" * 400 + b'"\n5,6\n'  # row 2: 1204 bytes
    with pytest.raises(FileError, match=r"^row 2 is longer than 1000 bytes \(the line limit\)$"):
        planned(s3, content, share_bytes=4, read_size=read_size, max_line_bytes=1000)
    planned(s3, content, share_bytes=4, read_size=read_size, max_line_bytes=1204)


def test_a_record_as_long_as_the_limit_is_read(s3: Any) -> None:
    # the limit counts a record without its line ending (as batchio does)
    content = b"a,b\r\n" + b"12,45\r\n" * 3 + b"67,89"
    plan = planned(s3, content, share_bytes=1, read_size=1, max_line_bytes=5)
    assert plan.rows == 4
    with pytest.raises(FileError, match=r"^row 1 is longer than 4 bytes"):
        planned(s3, content, share_bytes=1, read_size=1, max_line_bytes=4)


def test_a_last_record_over_the_limit_without_a_line_ending_fails(s3: Any) -> None:
    content = b"a,b\n1,2\n3," + b"4" * 200
    with pytest.raises(FileError) as single:
        list(read_csv(open_text(io.BytesIO(content), False), 3, max_line_bytes=100)[1])
    with pytest.raises(FileError) as got:
        planned(s3, content, share_bytes=1 << 20, max_line_bytes=100)
    assert str(got.value) == str(single.value) == "row 2 is longer than 100 bytes (the line limit)"


@pytest.mark.parametrize("opening", [b"", b'"'])
def test_an_endless_record_is_read_no_further_than_the_limit(s3: Any, opening: bytes) -> None:
    key = put(s3, b"a,b\n1,2\n3," + opening + b"x\n" * 2_000_000)  # 4 MB, one record if quoted
    client = Counted(s3, key)
    if opening:
        with pytest.raises(FileError, match=r"^row 2 is longer than 10000 bytes"):
            split.plan(client, BUCKET, key, share_bytes=10, fmt="csv", max_line_bytes=10_000)
        assert sum(client.reads) <= 3 * 10_000
    else:  # unquoted, the same bytes are two million short records
        plan = split.plan(client, BUCKET, key, share_bytes=1 << 20, fmt="csv")
        assert plan.rows == 2_000_001


def test_a_header_over_the_limit_fails_reading_no_further(s3: Any) -> None:
    key = put(s3, "é".encode() * 600 + b"\n1\n" + b"9" * 5_000_000)  # 1200 bytes
    body = Counted(s3, key)
    with pytest.raises(
        FileError, match=r"^the header is longer than 1024 bytes \(the line limit\)$"
    ):
        split.plan(body, BUCKET, key, share_bytes=10, fmt="csv", max_line_bytes=1024)
    assert sum(body.reads) <= 2048


# --- JSON Lines -------------------------------------------------------------------------------


def jsonl_rows(chunks: Any, first_row: int = 1) -> list[tuple[int, Any]]:
    rows = []
    for c in chunks:
        rows += [(first_row - 1 + n, r) for n, r in zip(c.numbers, c.records, strict=True)]
        rows += [(first_row - 1 + n, (raw, why)) for n, raw, why in c.broken]
    return sorted(rows, key=lambda row: row[0])


def test_json_lines_are_cut_after_a_line_feed(s3: Any) -> None:
    @settings(max_examples=150, deadline=None)
    @given(
        lines=st.lists(st.text(alphabet='{}[]"a1: \r', max_size=8), max_size=12),
        last_newline=st.booleans(),
        share_bytes=st.integers(min_value=1, max_value=20),
        read_size=st.integers(min_value=1, max_value=16),
    )
    def check(lines: list[str], last_newline: bool, share_bytes: int, read_size: int) -> None:
        text = "".join(line + "\n" for line in lines)
        if not last_newline:
            text = text.removesuffix("\n")
        content = text.encode()
        plan = planned(s3, content, ".jsonl", share_bytes=share_bytes, read_size=read_size)
        shares = covered(s3, plan, content)
        assert plan.lines == len(io.BytesIO(content).readlines()) and plan.rows is None
        first, got = 1, []
        for n, (item, data) in enumerate(zip(plan.items(), shares, strict=True)):
            assert item["first_row"] == first and item["header"] is None
            assert data.endswith(b"\n") or n == len(shares) - 1
            got += jsonl_rows(read_jsonl(io.BytesIO(data), 3), item["first_row"])
            first += len(io.BytesIO(data).readlines())
        assert got == jsonl_rows(read_jsonl(io.BytesIO(content), 3))

    check()


def test_blank_and_invalid_json_lines_are_lines(s3: Any) -> None:
    content = b'{"a": 1}\n\n{"a": \n   \n[1]\r\n' + b'["' + b"x" * 3000 + b'"]\n{"a": 3}'
    plan = planned(s3, content, ".jsonl", share_bytes=1, max_line_bytes=2048, read_size=7)
    assert [i["first_row"] for i in plan.items()] == [1, 2, 3, 4, 5, 6, 7]
    assert plan.lines == 7 and [s.rows for s in plan.shares] == [None] * 7
    covered(s3, plan, content)


def test_an_empty_json_lines_file_is_one_empty_share(s3: Any) -> None:
    plan = planned(s3, b"", ".jsonl", share_bytes=10)
    (item,) = items_of(s3, plan)
    assert (item["bytes"], item["range"], item["first_row"], plan.lines) == (0, None, 1, 0)


# --- gzip: staged, uncompressed shares --------------------------------------------------------


def staged_content(s3: Any, item: dict[str, Any]) -> bytes:
    where = {"VersionId": item["version_id"]} if item["version_id"] else {}
    got = s3.get_object(Bucket=BUCKET, Key=item["key"], **where)
    data: bytes = got["Body"].read()
    return data


def test_a_gzip_csv_is_staged_in_uncompressed_shares() -> None:
    content = b'\xef\xbb\xbfid,note\r\n1,"a\r\nb"\r\n' + b"2,plain\r\n" * 300 + b'3,"x""y"'
    with mocked_bucket(BUCKET, versioned=True) as s3:
        plan = planned(s3, content, ".csv.gz", share_bytes=500, read_size=64)
        shares = check_csv(s3, plan, content)
        assert len(shares) > 4 and plan.compressed
        for n, item in enumerate(plan.items()):
            assert item["staged"] and item["key"] == f"{plan.prefix}share-{n:06d}"
            assert item["version_id"] and item["start"] == 0 and item["etag"] is None
            assert staged_content(s3, item) == shares[n]
        header = plan.items()[0]["header"]
        assert header["key"] == plan.prefix + "header" and header["bom"] is True
        assert staged_content(s3, header) == b"\xef\xbb\xbfid,note\r\n"
        assert plan.source.size < len(content) and plan.content_bytes == len(content)
        assert plan.prefix == split.staging_prefix(plan.source.key, str(plan.source.version_id))


def test_a_gzip_json_lines_file_is_staged(s3: Any) -> None:
    content = b'\xef\xbb\xbf{"a": 1}\n' + b'{"b": [1, 2]}\n' * 100 + b"\n"
    plan = planned(s3, content, ".jsonl.gz", share_bytes=100, read_size=33)
    shares = covered(s3, plan, content)
    assert b"".join(staged_content(s3, i) for i in plan.items()) == content
    got = []
    for item, data in zip(plan.items(), shares, strict=True):
        got += jsonl_rows(read_jsonl(open_bytes(io.BytesIO(data), False), 7), item["first_row"])
    assert got == jsonl_rows(read_jsonl(io.BytesIO(content), 7))


def test_an_empty_gzip_body_is_one_empty_staged_share(s3: Any) -> None:
    plan = planned(s3, b"a,b\n", ".csv.gz", share_bytes=10)
    (item,) = items_of(s3, plan)
    assert item["bytes"] == 0 and staged_content(s3, item) == b""


def bomb(total: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(b"a,b\n" + b"1,2\n" * (total // 4)) + c.flush()


def test_a_gzip_bomb_fails_as_it_streams_and_leaves_no_share(s3: Any) -> None:
    body = bomb(40_000_000)
    key = put(s3, body, ".csv.gz")
    with pytest.raises(FileError) as got:
        split.plan(s3, BUCKET, key, share_bytes=1 << 20, fmt="csv", max_expansion=20)
    with pytest.raises(FileError) as single:
        open_bytes(io.BytesIO(body), True, size=len(body), max_expansion=20).read()
    assert str(got.value) == str(single.value)
    assert str(got.value).startswith("the file decompresses to more than 20 times")
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=split.STAGING)


def test_a_failed_gzip_plan_deletes_its_shares(s3: Any) -> None:
    content = b"a,b\n" + b"1,2\n" * 200 + b"3," + b"4" * 500 + b"\n"
    with pytest.raises(FileError, match=r"^row 201 is longer than 100 bytes"):
        planned(s3, content, ".csv.gz", share_bytes=50, read_size=40, max_line_bytes=100)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=split.STAGING)


# --- bounded memory ---------------------------------------------------------------------------


class Counted:
    """An S3 client whose object bodies record the size of every read."""

    def __init__(self, s3: Any, key: str) -> None:
        self.s3, self.key = s3, key
        self.reads: list[int] = []

    def get_object(self, **kwargs: Any) -> Any:
        got = self.s3.get_object(**kwargs)
        body, reads = got["Body"], self.reads

        class Body:
            def read(self, size: int = -1) -> bytes:
                data: bytes = body.read(size)
                reads.append(len(data) if size < 0 else size)
                return data

        return {**got, "Body": Body()}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.s3, name)


def test_a_file_of_many_megabytes_is_read_a_piece_at_a_time(s3: Any) -> None:
    row = b'1.5,"a, b",' + b"x" * 40 + b"\n"
    content = b"a,b,c\n" + row * 200_000  # 10.6 MB
    key = put(s3, content)
    client = Counted(s3, key)
    plan = split.plan(client, BUCKET, key, share_bytes=1_000_000, fmt="csv", read_size=65536)
    assert max(client.reads) == 65536 and sum(client.reads) >= len(content)
    assert len(client.reads) >= len(content) // 65536
    # 10.4 MB after the header; a share is whole chunks (10,000 rows, 520 kB): 20,000 rows
    assert plan.rows == 200_000 and [s.rows for s in plan.shares] == [20_000] * 10
    covered(s3, plan, content)


def test_reads_are_no_longer_than_the_line_limit_either(s3: Any) -> None:
    key = put(s3, b"a,b\n" + b"1,2\n" * 10_000)
    client = Counted(s3, key)
    split.plan(client, BUCKET, key, share_bytes=1000, fmt="csv", max_line_bytes=100)
    assert max(client.reads) == 100


class Generated:
    """A client whose one object is made as it is read (never held whole): only a
    memory-bounded planner can plan it within a small peak."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.puts: dict[str, bytes] = {}

    def get_object(self, **kwargs: Any) -> dict[str, Any]:
        row = b'7,"quoted, with a comma",' + b"y" * 70 + b"\r\n"
        pieces = itertools.chain([b"a,b,c\r\n"], itertools.repeat(row * 1000, self.rows // 1000))
        pending = io.BytesIO()

        class Body:
            def read(self, size: int = -1) -> bytes:
                data = pending.read(size)
                while len(data) < size:
                    more = next(pieces, None)
                    if more is None:
                        break
                    pending.seek(0)
                    pending.truncate()
                    pending.write(more)
                    pending.seek(0)
                    data += pending.read(size - len(data))
                return data

        size = 7 + len(row) * self.rows
        return {"Body": Body(), "ContentLength": size, "ETag": '"e"', "VersionId": "v"}

    def put_object(self, **kwargs: Any) -> dict[str, Any]:
        self.puts[kwargs["Key"]] = kwargs["Body"]
        return {}


def test_the_peak_memory_does_not_grow_with_the_file() -> None:
    client = Generated(rows=200_000)  # 19 MB
    tracemalloc.start()
    try:
        plan = split.plan(client, BUCKET, "incoming/big.csv", share_bytes=4 << 20, fmt="csv")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert plan.rows == 200_000 and [s.rows for s in plan.shares] == [50_000] * 4
    assert peak < 8 << 20


# --- the plan in S3 ---------------------------------------------------------------------------


def test_the_plan_is_a_json_array_for_the_item_reader_and_a_summary() -> None:
    with mocked_bucket(BUCKET, versioned=True) as s3:
        content = b"a,b\n" + b"1,2\n" * 1000
        plan = planned(s3, content, share_bytes=1000)
        items = items_of(s3, plan)
        assert len(items) == 4 and all(len(json.dumps(i)) < 1024 for i in items)
        source = plan.source
        assert source.version_id
        assert plan.prefix == split.staging_prefix(source.key, source.version_id)
        assert items[1] == {
            "share": 1,
            "shares": 4,
            "bucket": BUCKET,
            "key": source.key,
            "version_id": source.version_id,
            "etag": source.etag,
            "range": "bytes=1004-2003",
            "start": 1004,
            "end": 2004,
            "bytes": 1000,
            "offset": 1004,
            "first_row": 251,
            "rows": 250,
            "format": "csv",
            "compressed": False,
            "staged": False,
            "header": {
                "bucket": BUCKET,
                "key": source.key,
                "version_id": source.version_id,
                "etag": source.etag,
                "range": "bytes=0-3",
                "start": 0,
                "end": 4,
                "bom": False,
            },
            "prefix": plan.prefix,
        }
        summary = split.read_summary(s3, BUCKET, plan.prefix)
        assert summary == plan.summary()
        assert summary["items"] == {"bucket": BUCKET, "key": plan.prefix + "plan.json"}
        assert (summary["shares"], summary["rows"], summary["bytes"]) == (4, 1000, len(content))
        assert summary["source"]["size"] == len(content)


def test_an_unversioned_object_is_named_by_its_etag(s3: Any) -> None:
    plan = planned(s3, b"a\n1\n", share_bytes=1)
    assert plan.source.version_id is None and plan.source.etag
    assert plan.prefix == split.staging_prefix(plan.source.key, str(plan.source.etag))
    assert all(s.etag == plan.source.etag for s in plan.shares)


def test_no_prefix_is_inside_another_and_every_name_under_one_fits_s3() -> None:
    # a key that spells another file's prefix (its key, then that ETag) stages elsewhere
    a = split.staging_prefix("incoming/a.csv", "e1")
    b = split.staging_prefix("incoming/a.csv/e1/b.csv", "e2")
    assert not b.startswith(a) and not a.startswith(b)
    assert split.staging_prefix("incoming/a.csv", "e2") != a
    for key in ("incoming/a.csv", "incoming/" + "k" * 1010 + ".csv"):
        prefix = split.staging_prefix(key, "v1")
        assert len(prefix) == len("shares/") + 64 + 1 and prefix.startswith(split.STAGING)


def test_share_bytes_must_be_positive(s3: Any) -> None:
    with pytest.raises(ValueError, match="share_bytes"):
        planned(s3, b"a\n1\n", share_bytes=0)
