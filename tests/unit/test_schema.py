"""Input validation: every row either becomes typed columns or gets a reason per field."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sklambda.errors import OUTSIDE_TRAINING_RANGE, UNSEEN_CATEGORY, FieldError, FileError
from sklambda.manifest import Feature
from sklambda.schema import (
    FAST_ROWS,
    FLOAT32_LIMIT,
    OUT_OF_RANGE,
    InputSchema,
    UnknownPolicy,
    Validated,
    _cell_value,
    loads,
    number_limit,
    range_note,
)

FEATURES = [
    Feature(name="n", kind="numeric", nullable=False),
    Feature(name="m", kind="numeric", nullable=True),
    Feature(name="i", kind="integer", nullable=False),
    Feature(
        name="c",
        kind="categorical",
        nullable=True,
        categories=["a", "b"],
        unseen="score",
        unseen_handling="the encoder's zeros",
    ),
    Feature(name="strict", kind="categorical", nullable=False, categories=["x"], unseen="reject"),
    Feature(name="flag", kind="boolean", nullable=False),
]
GOOD = {"n": 1.5, "m": None, "i": 3, "c": "a", "strict": "x", "flag": True}
# The same features with training ranges: n in [-3, 2.5], m at least 1, i in [0, 7]
RANGED = [
    dataclasses.replace(f, **bounds)
    for f, bounds in zip(
        FEATURES,
        [{"min": -3.0, "max": 2.5}, {"min": 1.0}, {"min": 0.0, "max": 7.0}, {}, {}, {}],
        strict=True,
    )
]


@pytest.fixture
def schema() -> InputSchema:
    return InputSchema(FEATURES)


def reasons(schema: InputSchema, **changes: object) -> list[str]:
    result = schema.validate([{**GOOD, **changes}])
    return [f"{e.path()}: {e.reason}" for e in result.errors]


def test_valid_rows_become_typed_columns(schema: InputSchema) -> None:
    # Given two valid rows, one with a missing nullable number and category
    rows = [GOOD, {**GOOD, "n": 2, "m": 4.0, "i": 7.0, "c": None, "flag": False}]
    # When they are validated
    result = schema.validate(rows)
    # Then both are kept, with numbers as float64 (missing as NaN) and categories as objects
    assert result.rows == [0, 1] and result.errors == []
    assert result.columns["n"].dtype == np.float64
    assert result.columns["n"].tolist() == [1.5, 2.0]
    assert math.isnan(result.columns["m"][0]) and result.columns["m"][1] == 4.0
    assert result.columns["i"].dtype == np.int64 and result.columns["i"].tolist() == [3, 7]
    assert result.columns["c"].tolist() == ["a", None]
    assert result.columns["flag"].tolist() == [True, False]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"n": "1.5"}, "instances[0].n: expected a number, got a string"),
        ({"n": True}, "instances[0].n: expected a number, got a boolean"),
        ({"n": [1]}, "instances[0].n: expected a number, got an array"),
        ({"n": None}, "instances[0].n: must not be null"),
        ({"n": float("nan")}, "instances[0].n: NaN is not allowed"),
        ({"n": float("inf")}, "instances[0].n: infinity is not allowed"),
        ({"m": float("-inf")}, "instances[0].m: infinity is not allowed"),
        ({"i": 2.5}, "instances[0].i: expected an integer, got a fractional or non-finite number"),
        ({"i": "3"}, "instances[0].i: expected an integer, got a string"),
        ({"c": 3}, "instances[0].c: expected a string, got a number"),
        ({"strict": "y"}, "instances[0].strict: unknown category 'y'; expected one of ['x']"),
        ({"flag": 1}, "instances[0].flag: expected a boolean, got a number"),
        ({"extra": 1}, "instances[0].extra: unknown feature"),
    ],
)
def test_each_mistake_names_the_field_and_reason(
    schema: InputSchema, changes: dict[str, object], expected: str
) -> None:
    assert reasons(schema, **changes) == [expected]


def test_a_missing_feature_is_named(schema: InputSchema) -> None:
    row = {k: v for k, v in GOOD.items() if k != "i"}
    result = schema.validate([row])
    assert [e.path() + ": " + e.reason for e in result.errors] == [
        "instances[0].i: missing feature"
    ]


def test_every_reason_of_a_row_is_reported_and_good_rows_survive(schema: InputSchema) -> None:
    rows = [GOOD, {**GOOD, "n": "x", "flag": None, "zzz": 1}, "not an object", GOOD]
    result = schema.validate(rows)
    assert result.rows == [0, 3]
    assert result.rejected_rows == [1, 2]
    assert {(e.row, e.field) for e in result.errors} == {
        (1, "zzz"),
        (1, "n"),
        (1, "flag"),
        (2, None),
    }
    assert next(e for e in result.errors if e.row == 2).reason == "expected an object, got a string"
    assert result.columns["n"].tolist() == [1.5, 1.5]


def test_nan_is_missing_where_the_feature_is_nullable(schema: InputSchema) -> None:
    result = schema.validate([{**GOOD, "m": float("nan")}])
    assert result.errors == [] and math.isnan(result.columns["m"][0])


def test_unseen_category_is_scored_with_a_note(schema: InputSchema) -> None:
    result = schema.validate([{**GOOD, "c": "zebra"}])
    assert result.rows == [0] and result.errors == []
    assert [(n.field, n.reason) for n in result.notes] == [
        ("c", "category 'zebra' not seen in training; scored with the encoder's zeros")
    ]


def test_unknown_features_can_be_ignored(schema: InputSchema) -> None:
    result = schema.validate([{**GOOD, "extra": 1}], unknown="ignore")
    assert result.rows == [0] and result.errors == []


def test_row_numbers_can_start_at_an_offset(schema: InputSchema) -> None:
    result = schema.validate([GOOD, {**GOOD, "n": "x"}], first_row=100)
    assert result.rows == [100] and result.errors[0].row == 101


def test_long_values_are_cut_in_messages(schema: InputSchema) -> None:
    (reason,) = reasons(schema, strict="y" * 500)
    assert len(reason) < 120 and "…" in reason


def test_a_header_needs_every_feature_and_lists_what_it_ignores(schema: InputSchema) -> None:
    header = schema.check_header(["id", *GOOD, "date"], unknown="ignore", passthrough=["id"])
    assert header.ignored == ["date"] and header.passthrough == ["id"]
    assert header.positions["id"] == 0
    with pytest.raises(FileError, match=r"unknown columns \['date'\]"):
        schema.check_header([*GOOD, "date"])
    with pytest.raises(FileError, match=r"missing required columns \['n'\]"):
        schema.check_header([k for k in GOOD if k != "n"], unknown="ignore")
    with pytest.raises(FileError, match="copied to the predictions"):
        schema.check_header(list(GOOD), passthrough=["id"])


def test_no_rows_give_empty_typed_columns(schema: InputSchema) -> None:
    result = schema.validate([])
    assert (
        result.rows == []
        and result.columns["n"].dtype == np.float64
        and len(result.columns["n"]) == 0
    )


# --- text cells (CSV) follow the same rules and messages as JSON values ----------------------

cells = st.sampled_from(
    [
        "",
        "1",
        "2.5",
        "-3",
        "1e3",
        "nan",
        "NaN",
        "inf",
        "-Infinity",
        "a",
        "b",
        "x",
        "true",
        "false",
        "0",
        " 7 ",
        "1_0",
        "0x1",
        "1e19",
        "-9223372036854775809",
        "1e400",
        "3.4e38",
        "3.4028235e38",
        "-3.5e38",
        "1e39",
        "1e308",
        "1" + "0" * 400,
        "-" + "9" * 5000,
        "\ud800",
        "a\udfff",
        "é",
    ]
)


@pytest.mark.parametrize("features", [FEATURES, RANGED], ids=["unbounded", "ranged"])
@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.fixed_dictionaries({f.name: cells for f in FEATURES}), min_size=1, max_size=6)
)
def test_text_cells_get_the_same_verdicts_as_their_json_values(
    features: list[Feature], rows: list[dict[str, str]]
) -> None:
    schema = InputSchema(features, number_limit=FLOAT32_LIMIT)
    by_text = schema.validate_text({f.name: [r[f.name] for r in rows] for f in features}, len(rows))
    by_value = schema.validate(
        [{f.name: _cell_value(f, r[f.name]) for f in features} for r in rows]
    )
    assert by_text.rows == by_value.rows
    assert sorted((e.row, e.field, e.reason) for e in by_text.errors) == sorted(
        (e.row, e.field, e.reason) for e in by_value.errors
    )
    # the same notes (unseen categories, numbers outside the training range), in the same order
    assert by_text.notes == by_value.notes
    for name in by_value.columns:
        np.testing.assert_array_equal(by_text.columns[name], by_value.columns[name])


# --- the column-wise path for many clean rows gives the row-by-row verdict ----------------------

any_value = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats()
    | st.sampled_from([3.4e38, -3.5e38, 1e39, 10**39, 1e308, 10**400])
    | st.sampled_from(["a", "b", "z", "", "\ud800", "é"])
)


variations = st.dictionaries(st.sampled_from([*GOOD, "extra"]), any_value, max_size=2)
clean = st.fixed_dictionaries(
    {
        "n": st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**6), 10**6),
        "m": st.none() | st.floats(allow_nan=False, allow_infinity=False),
        "i": st.integers(-(10**6), 10**6),
        "c": st.sampled_from(["a", "b"]) | st.none(),
        "strict": st.just("x"),
        "flag": st.booleans(),
    }
)


@pytest.mark.parametrize("features", [FEATURES, RANGED], ids=["unbounded", "ranged"])
@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(
        clean | st.builds(lambda changes: {**GOOD, **changes}, variations),
        min_size=FAST_ROWS,
        max_size=3 * FAST_ROWS,
    ),
    unknown=st.sampled_from(["reject", "ignore"]),
)
def test_many_rows_get_the_row_by_row_verdict(
    features: list[Feature], rows: list[dict[str, Any]], unknown: UnknownPolicy
) -> None:
    schema = InputSchema(features, number_limit=FLOAT32_LIMIT)
    fast, slow = schema.validate(rows, unknown=unknown), schema.validate_rows(rows, unknown=unknown)
    assert (fast.rows, fast.errors, fast.notes) == (slow.rows, slow.errors, slow.notes)
    for name in schema.names:
        a, b = fast.columns[name], slow.columns[name]
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b)


def test_clean_rows_take_the_column_wise_path(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = InputSchema(FEATURES)
    monkeypatch.setattr(schema, "validate_rows", None)  # would fail if it were called
    assert schema.validate([GOOD] * FAST_ROWS).rows == list(range(FAST_ROWS))


# --- numbers the serving runtime cannot represent, text it cannot encode ------------------------


@pytest.mark.parametrize("value", [1e39, -1e39, 3.5e38, 1e308, -1.7e308, 10**39, 10**400])
@pytest.mark.parametrize("rows", [1, FAST_ROWS])
def test_a_number_beyond_float32_is_out_of_range_when_the_graph_takes_float32(
    value: float, rows: int
) -> None:
    # Given a schema bounded by float32 (the onnx graph's input type) and a row with a number
    # float32 would turn into infinity, alone or among clean rows (the column-wise path)
    schema = InputSchema(FEATURES, number_limit=FLOAT32_LIMIT)
    batch = [GOOD] * (rows - 1) + [{**GOOD, "n": value, "m": value}]
    # When the rows are validated, as JSON values and as text cells
    by_value = schema.validate(batch)
    cells = {f.name: [_text(r[f.name]) for r in batch] for f in FEATURES}
    by_text = schema.validate_text(cells, len(batch))
    # Then both numbers of that row are out of range, with the same reason either way
    for result in (by_value, by_text):
        assert result.rows == list(range(rows - 1))
        assert [(e.row, e.field, e.reason) for e in result.errors] == [
            (rows - 1, "n", OUT_OF_RANGE),
            (rows - 1, "m", OUT_OF_RANGE),
        ]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@pytest.mark.parametrize("value", [3.4e38, -3.4028234663852886e38, 3.4028235e38, 1e-45])
def test_numbers_float32_holds_are_accepted(value: float) -> None:
    schema = InputSchema(FEATURES, number_limit=FLOAT32_LIMIT)
    result = schema.validate([{**GOOD, "n": value}])
    assert result.errors == [] and result.columns["n"].tolist() == [value]
    assert np.isfinite(np.float32(value))


def test_without_a_bound_any_finite_double_is_accepted() -> None:
    result = InputSchema(FEATURES).validate([{**GOOD, "n": 1e308}])
    assert result.errors == []


def test_the_bound_comes_from_the_artifact_not_the_runtime_serving_it(
    float32_penguins: Path,
) -> None:
    from sklambda.model import load

    from support import PENGUINS_DIR

    onnx, sklearn = load(float32_penguins), load(float32_penguins, "sklearn")
    assert number_limit(onnx.manifest) == FLOAT32_LIMIT  # its graph takes float32
    assert onnx.schema.number_limit == sklearn.schema.number_limit == FLOAT32_LIMIT
    # a graph that takes float64 is bounded by float64 only, whichever runtime serves it
    double, reference = load(PENGUINS_DIR), load(PENGUINS_DIR, "sklearn")
    assert double.manifest.runtime.onnx is not None
    assert double.manifest.runtime.onnx.input_dtype == "float64"
    assert double.schema.number_limit == reference.schema.number_limit != FLOAT32_LIMIT
    # FLOAT32_LIMIT is the smallest magnitude that float32 rounds to infinity
    with np.errstate(over="ignore"):
        assert np.isinf(np.float32(FLOAT32_LIMIT))
    assert np.isfinite(np.float32(np.nextafter(FLOAT32_LIMIT, 0)))


@pytest.mark.parametrize("text", ["\ud800", "a\udfffb", "\udc80" * 3])
def test_a_lone_surrogate_is_refused_and_never_echoed(text: str) -> None:
    # Given a category holding a lone surrogate (JSON's "\\ud800" escape makes one)
    schema = InputSchema(FEATURES)
    for feature in ("c", "strict"):
        (reason,) = reasons(schema, **{feature: text})
        # Then the row is refused with a fixed reason that can be written as UTF-8
        assert reason == f"instances[0].{feature}: not valid Unicode text (a lone surrogate)"
    # And an unknown key holding one is named without it
    (error,) = schema.validate([{**GOOD, text: 1}]).errors
    assert error.reason == "unknown feature"
    assert error.path().encode("utf-8")


def test_a_long_unknown_key_is_cut_in_the_path() -> None:
    schema = InputSchema(FEATURES)
    (error,) = schema.validate([{**GOOD, "k" * 100_000: 1}]).errors
    assert error.reason == "unknown feature"
    assert error.field is not None and len(error.field) <= 40 and error.field.endswith("…")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1" * 5000, 10**400),
        ("-" + "9" * 5000, -(10**400)),
        ('{"a": [' + "7" * 4301 + "]}", {"a": [10**400]}),
        ("[1, 2.5, 1e400]", [1, 2.5, math.inf]),
    ],
)
def test_json_integer_literals_of_any_length_parse_to_a_number_out_of_range(
    text: str, value: Any
) -> None:
    # An integer literal longer than Python converts (4,300 digits) is far beyond any range:
    # it parses to a stand-in that every check refuses as out of range, not to an error
    assert loads(text) == value
    number = loads("1" * 5000)
    assert InputSchema(FEATURES).validate([{**GOOD, "n": number, "i": number}]).errors == [
        FieldError(0, "n", OUT_OF_RANGE),
        FieldError(0, "i", OUT_OF_RANGE),
    ]


@pytest.mark.parametrize("rows", [1, FAST_ROWS])
def test_a_lone_surrogate_is_refused_where_any_category_is_taken(rows: int) -> None:
    schema = InputSchema([Feature(name="c", kind="categorical", nullable=True)])
    values = ["é"] * (rows - 1) + ["x\ud800"]
    expected = [(rows - 1, "c", "not valid Unicode text (a lone surrogate)")]
    by_value = schema.validate([{"c": v} for v in values])
    by_text = schema.validate_text({"c": values}, rows)
    for result in (by_value, by_text):
        assert [(e.row, e.field, e.reason) for e in result.errors] == expected
        assert result.rows == list(range(rows - 1))


# --- numbers outside the training range: scored, with a note --------------------------------------

N_NOTE = "outside the training range [-3, 2.5]; scored, but the model has not seen such values"
M_NOTE = "below the training minimum 1; scored, but the model has not seen such values"
I_NOTE = "outside the training range [0, 7]; scored, but the model has not seen such values"
PATHS = ["validate", "validate_rows", "validate_text"]


def validated(path: str, rows: list[dict[str, Any]], first_row: int = 0) -> Validated:
    """``rows`` validated one of the three ways: ``validate`` (column-wise from ``FAST_ROWS``
    clean rows on), ``validate_rows`` (row by row), or as the text cells of a CSV chunk."""
    schema = InputSchema(RANGED, number_limit=FLOAT32_LIMIT)
    if path == "validate_text":
        assert first_row == 0
        cells = {f.name: [_text(r[f.name]) for r in rows] for f in RANGED}
        return schema.validate_text(cells, len(rows))
    method = schema.validate if path == "validate" else schema.validate_rows
    return method(rows, first_row=first_row)


def notes_of(result: Validated) -> list[tuple[int, str | None, str, str]]:
    return [(n.row, n.field, n.reason, n.kind) for n in result.notes]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("rows", [1, FAST_ROWS])
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"n": 2.6}, [("n", N_NOTE)]),
        ({"n": -3.01}, [("n", N_NOTE)]),
        ({"n": -1e30}, [("n", N_NOTE)]),
        ({"n": 30}, [("n", N_NOTE)]),  # an integer where a number is expected
        ({"m": 0.5}, [("m", M_NOTE)]),  # a range with a minimum only
        ({"m": 1e30}, []),
        ({"i": 8}, [("i", I_NOTE)]),
        ({"i": -1}, [("i", I_NOTE)]),
        ({"i": 12.0}, [("i", I_NOTE)]),  # a whole float where an integer is expected
        ({"n": 99.0, "m": -5.0, "i": 99}, [("n", N_NOTE), ("m", M_NOTE), ("i", I_NOTE)]),
        ({"n": 99.0, "c": "zebra"}, [("n", N_NOTE), ("c", "unseen")]),
    ],
)
def test_a_number_outside_the_training_range_is_scored_with_a_note(
    path: str, rows: int, changes: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    # Given clean rows and, last, a row with numbers outside the training range, alone or among
    # enough clean rows for the column-wise path
    batch = [GOOD] * (rows - 1) + [{**GOOD, **changes}]
    # When they are validated (as JSON values column-wise, row by row, or as text cells)
    result = validated(path, batch)
    # Then every row is kept, with the value as given, and each such number has a fixed note
    # naming its feature and the training range, in feature order
    assert result.errors == [] and result.rows == list(range(rows))
    last = rows - 1
    unseen = "category 'zebra' not seen in training; scored with the encoder's zeros"
    assert notes_of(result) == [
        (
            last,
            name,
            unseen if reason == "unseen" else reason,
            UNSEEN_CATEGORY if reason == "unseen" else OUTSIDE_TRAINING_RANGE,
        )
        for name, reason in expected
    ]
    for name, value in changes.items():
        assert result.columns[name].tolist()[last] == value


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("rows", [1, FAST_ROWS])
@pytest.mark.parametrize(
    "changes",
    [
        {"n": -3.0, "i": 0},  # exactly the minimum
        {"n": 2.5, "i": 7, "m": 1.0},  # exactly the maximum (and m's minimum)
        {"n": -3, "i": 7.0, "m": 1},  # integers and whole floats on the bounds
        {"m": None},  # missing
        {"m": math.nan},  # NaN is a missing value where the feature may be missing
        {"n": 0.0, "m": 1e30, "i": 4},  # m has no maximum
    ],
)
def test_the_training_bounds_and_missing_values_are_in_range(
    path: str, rows: int, changes: dict[str, Any]
) -> None:
    result = validated(path, [GOOD] * (rows - 1) + [{**GOOD, **changes}])
    assert result.errors == [] and result.rows == list(range(rows))
    assert result.notes == []


def test_many_clean_rows_outside_the_range_stay_on_the_column_wise_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given many rows, some of them with numbers outside the training range
    schema = InputSchema(RANGED, number_limit=FLOAT32_LIMIT)
    rows = [GOOD, {**GOOD, "n": 10.0, "i": 9}, GOOD, {**GOOD, "m": 0.0}] * FAST_ROWS
    expected = schema.validate_rows(rows, first_row=50)
    monkeypatch.setattr(schema, "validate_rows", None)  # would fail if it were called
    # When they are validated
    result = schema.validate(rows, first_row=50)
    # Then they take the column-wise path, and get the row-by-row notes, in row order
    assert result.rows == list(range(50, 50 + len(rows)))
    assert result.notes == expected.notes
    assert notes_of(result)[:3] == [
        (51, "n", N_NOTE, OUTSIDE_TRAINING_RANGE),
        (51, "i", I_NOTE, OUTSIDE_TRAINING_RANGE),
        (53, "m", M_NOTE, OUTSIDE_TRAINING_RANGE),
    ]
    assert len(result.notes) == 3 * FAST_ROWS


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("rows", [1, FAST_ROWS])
def test_the_float32_bound_still_refuses_and_only_representable_numbers_get_a_note(
    path: str, rows: int
) -> None:
    # Given the float32 bound and a training range far inside it
    batch = [GOOD] * (rows - 1)
    batch += [{**GOOD, "n": 3.4e38, "m": -3.4e38}, {**GOOD, "n": 1e39, "i": 10**19}]
    result = validated(path, batch)
    # Then the largest numbers float32 holds are scored with a note; beyond it, refused, no note
    assert result.rows == list(range(rows))
    assert notes_of(result) == [
        (rows - 1, "n", N_NOTE, OUTSIDE_TRAINING_RANGE),
        (rows - 1, "m", M_NOTE, OUTSIDE_TRAINING_RANGE),
    ]
    assert [(e.row, e.field, e.reason) for e in result.errors] == [
        (rows, "n", OUT_OF_RANGE),
        (rows, "i", OUT_OF_RANGE),
    ]


def test_an_error_in_a_row_drops_its_notes() -> None:
    for path in ("validate", "validate_rows"):
        result = validated(path, [{**GOOD, "n": 99.0, "flag": "no"}] * FAST_ROWS)
        assert result.rows == [] and result.notes == []


@pytest.mark.parametrize(
    ("bounds", "note"),
    [
        ({"min": 2700.0, "max": 6300.0}, "outside the training range [2700, 6300]"),
        ({"min": 32.1, "max": 59.6}, "outside the training range [32.1, 59.6]"),
        (
            {"min": 0.1 + 0.2, "max": 1e20},
            "outside the training range [0.30000000000000004, 1e+20]",
        ),
        ({"max": -0.5}, "above the training maximum -0.5"),
        ({}, None),
    ],
)
def test_the_note_names_the_training_range_in_fixed_text(
    bounds: dict[str, float], note: str | None
) -> None:
    feature = Feature(name="x" * 1000, kind="numeric", nullable=False, **bounds)
    text = range_note(feature)
    if note is None:
        assert text is None
    else:
        assert text == f"{note}; scored, but the model has not seen such values"
    assert range_note(Feature(name="c", kind="categorical", nullable=False, **bounds)) is None
