"""Validate input rows against the model's input schema and turn them into column arrays.

This is the one validation used by every path (online requests, batch files, tools), so the same
row gets the same answer and the same error text whichever way it arrives. It needs only numpy.

Values are JSON-like: ``None`` is missing, numbers are ``int``/``float``, categories are ``str``,
booleans are ``bool``. Text formats (CSV) convert their cells to such values first; JSON text
is best parsed with ``loads``, which turns integer literals too long for Python into numbers
out of range instead of failing.

Numbers must be ones the serving runtime can represent: finite, and below ``number_limit`` in
magnitude (``FLOAT32_LIMIT`` for an artifact whose ONNX graph takes float32, whichever runtime
serves it, so that both runtimes accept the same rows). Text must be valid Unicode: a lone
surrogate (which the JSON escape ``"\\ud800"`` makes) is refused, and never echoed.

Accepted rows may get notes: a category never seen in training (when the pipeline scores it),
and a number below the training minimum or above the maximum (the manifest's ``min`` and
``max``: exactly the minimum or the maximum is in range, a missing value never out of it). The
row is scored as usual; the note says so in a fixed sentence naming the training range.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from sklambda.errors import (
    OUTSIDE_TRAINING_RANGE,
    UNSEEN_CATEGORY,
    FieldError,
    FileError,
    Note,
    NoteKind,
)
from sklambda.manifest import Feature
from sklambda.typed import describe

if TYPE_CHECKING:
    from sklambda.manifest import Manifest

Columns = dict[str, np.ndarray]
UnknownPolicy = Literal["reject", "ignore"]

_MAX_ECHO = 40  # longest client value (or unknown key) echoed back in a message
OUT_OF_RANGE = "number out of range"
NOT_UNICODE = "not valid Unicode text (a lone surrogate)"
FLOAT32_LIMIT = 2.0**128 - 2.0**103  # the smallest magnitude float32 rounds to infinity
_TOO_LONG = 10**400  # stands for an integer literal too long to convert: out of every range
_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
FAST_ROWS = 8  # from this many rows on, clean input is validated column by column
_NUMBER_TYPES = frozenset({int, float})
_INTEGER_TYPES = frozenset({int})
_TEXT_TYPES = frozenset({str})
_BOOLEAN_TYPES = frozenset({bool})


@dataclass(slots=True)
class Validated:
    """The outcome of validating a sequence of rows.

    ``columns`` hold the valid rows only, in feature order; ``rows`` are the positions of those
    rows in the input. ``errors`` list every reason every rejected row was rejected; ``notes``
    are remarks on accepted rows (an unseen category that the pipeline scores anyway, a number
    outside the training range), in row order and, within a row, in feature order.
    """

    columns: Columns
    rows: list[int]
    errors: list[FieldError] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    @property
    def rejected_rows(self) -> list[int]:
        return sorted({e.row for e in self.errors})


def _echo(text: str) -> str:
    return repr(_cut(text))


def _cut(text: str) -> str:
    """``text`` safe to echo: at most ``_MAX_ECHO`` characters, lone surrogates replaced."""
    short = text if len(text) <= _MAX_ECHO else text[: _MAX_ECHO - 1] + "…"
    return short if short.isascii() else _SURROGATE.sub("\ufffd", short)


def _unicode(text: str) -> bool:
    """Whether ``text`` is valid Unicode (UTF-8 can encode it: no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def number_limit(manifest: Manifest) -> float:
    """The magnitude from which the artifact's numbers are out of range: ``FLOAT32_LIMIT`` when
    its ONNX graph takes float32 inputs or its pipeline casts them to float32 (whichever runtime
    serves it), else infinity (any finite double)."""
    onnx = manifest.runtime.onnx
    float32 = manifest.runtime.float32_inputs or (
        onnx is not None and onnx.input_dtype == "float32"
    )
    return FLOAT32_LIMIT if float32 else math.inf


def _parse_int(literal: str) -> int:
    try:
        return int(literal)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits())
        return -_TOO_LONG if literal.startswith("-") else _TOO_LONG


def loads(text: str) -> Any:
    """Parse JSON text as ``json.loads`` does, except that an integer literal too long for
    Python to convert (over 4,300 digits) becomes a stand-in beyond every range, so that it is
    a field's "number out of range" like any other huge number, not an unreadable document.

    Raises what ``json.loads`` raises otherwise (``ValueError``, ``RecursionError``).
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError:  # the integer digit limit: parse again, converting integers one by one
        return json.loads(text, parse_int=_parse_int)


@dataclass(slots=True)
class Header:
    """A checked file header: where each column is, which are ignored and which are copied."""

    positions: dict[str, int]
    ignored: list[str]
    passthrough: list[str]


def _bound(value: float) -> str:
    """A training bound as a note writes it: ``6300`` for a whole number, ``32.1`` otherwise
    (the shortest text that reads back as the same double)."""
    number = float(value)
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def range_note(feature: Feature) -> str | None:
    """The note for a number of ``feature`` outside its training range, or ``None`` when the
    feature has no range (not a number, or a manifest without ``min`` and ``max``)."""
    if feature.kind not in ("numeric", "integer") or (feature.min is None and feature.max is None):
        return None
    if feature.min is not None and feature.max is not None:
        where = f"outside the training range [{_bound(feature.min)}, {_bound(feature.max)}]"
    elif feature.min is not None:
        where = f"below the training minimum {_bound(feature.min)}"
    else:
        assert feature.max is not None
        where = f"above the training maximum {_bound(feature.max)}"
    return f"{where}; scored, but the model has not seen such values"


class _Checker:
    """Checks one feature's values; built once per schema."""

    __slots__ = (
        "allowed",
        "feature",
        "high",
        "limit",
        "low",
        "name",
        "note_kind",
        "range_note",
        "unseen_note",
    )

    def __init__(self, feature: Feature, limit: float = math.inf) -> None:
        self.feature = feature
        self.limit = limit
        self.name = feature.name
        self.allowed = frozenset(feature.categories or ())
        handling = feature.unseen_handling or "the pipeline's handling of unseen categories"
        self.unseen_note = f"not seen in training; scored with {handling}"
        # numbers below low or above high (the training range) are scored with range_note
        self.range_note = range_note(feature)
        self.low = -math.inf if feature.min is None else float(feature.min)
        self.high = math.inf if feature.max is None else float(feature.max)
        self.note_kind: NoteKind = (
            UNSEEN_CATEGORY if feature.kind == "categorical" else OUTSIDE_TRAINING_RANGE
        )

    def outside(self, values: np.ndarray) -> np.ndarray:
        """Which of ``values`` (numbers as float64 or int64, missing as NaN) are outside the
        training range: compared as doubles, as ``check`` compares them; NaN never is."""
        outside: np.ndarray = (values < self.low) | (values > self.high)
        return outside

    def check(self, value: Any) -> tuple[Any, str | None, str | None]:
        """Return ``(clean value, error reason, note)``."""
        f = self.feature
        if value is None:
            return (None, None, None) if f.nullable else (None, "must not be null", None)
        kind = f.kind
        if kind == "numeric":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return None, f"expected a number, got {describe(value)}", None
            try:
                number = float(value)
            except OverflowError:  # an integer literal beyond the double range
                return None, OUT_OF_RANGE, None
            if math.isfinite(number):
                if abs(number) >= self.limit:
                    return None, OUT_OF_RANGE, None
                if number < self.low or number > self.high:
                    return number, None, self.range_note
                return number, None, None
            if math.isnan(number):
                if f.nullable:
                    return None, None, None
                return None, "NaN is not allowed", None
            return None, "infinity is not allowed", None
        if kind == "integer":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return None, f"expected an integer, got {describe(value)}", None
            if isinstance(value, float):
                if math.isnan(value) and f.nullable:
                    return None, None, None
                if not math.isfinite(value) or not value.is_integer():
                    return None, "expected an integer, got a fractional or non-finite number", None
                value = int(value)
            if not _INT64_MIN <= value <= _INT64_MAX or abs(value) >= self.limit:
                return None, OUT_OF_RANGE, None
            number = float(value)  # compared as a double, as the column-wise paths compare it
            if number < self.low or number > self.high:
                return value, None, self.range_note
            return value, None, None
        if kind == "categorical":
            if not isinstance(value, str):
                return None, f"expected a string, got {describe(value)}", None
            if value in self.allowed:
                return value, None, None
            if not _unicode(value):
                return None, NOT_UNICODE, None
            if not self.allowed:
                return value, None, None
            if f.unseen == "reject":
                return (
                    None,
                    f"unknown category {_echo(value)}; expected one of {sorted(self.allowed)}",
                    None,
                )
            return value, None, f"category {_echo(value)} {self.unseen_note}"
        # boolean
        if not isinstance(value, bool):
            return None, f"expected a boolean, got {describe(value)}", None
        return value, None, None


class InputSchema:
    """The model's input schema, compiled for fast validation.

    Examples
    --------
    >>> from sklambda.manifest import Feature
    >>> schema = InputSchema([Feature(name="x", kind="numeric", nullable=False)])
    >>> result = schema.validate([{"x": 1.5}, {"x": "a"}])
    >>> result.rows, [e.path() + ": " + e.reason for e in result.errors]
    ([0], ['instances[1].x: expected a number, got a string'])
    """

    def __init__(self, features: Sequence[Feature], *, number_limit: float = math.inf) -> None:
        """``number_limit``: numbers of this magnitude or more are out of range (the serving
        runtime cannot represent them); see ``number_limit(manifest)``."""
        self.features = list(features)
        self.names = [f.name for f in self.features]
        self.number_limit = number_limit
        self._checkers = [_Checker(f, number_limit) for f in self.features]
        self._known = frozenset(self.names)
        # the features with a training range, and the range as columns, for the column-wise path
        ranged = [c for c in self._checkers if c.range_note is not None]
        self._ranged = [(c.name, c.range_note) for c in ranged if c.range_note is not None]
        self._lows = np.array([[c.low] for c in ranged], dtype=np.float64)
        self._highs = np.array([[c.high] for c in ranged], dtype=np.float64)

    @staticmethod
    def limit_for(manifest: Manifest) -> float:
        """The ``number_limit`` of a manifest's artifact (``number_limit(manifest)``)."""
        return number_limit(manifest)

    def validate(
        self, records: Iterable[Any], *, unknown: UnknownPolicy = "reject", first_row: int = 0
    ) -> Validated:
        """Validate rows (mappings of feature name to value) and build columns of the valid ones.

        ``first_row`` offsets the row numbers in errors, for callers that validate in chunks.
        Many rows that are all clean take a column-wise path (the same verdict, found faster);
        any doubt sends them row by row, where every reason is found.
        """
        rows = records if isinstance(records, list) else list(records)
        if len(rows) >= FAST_ROWS:
            fast = self._clean_columns(rows, unknown, first_row)
            if fast is not None:
                columns, notes = fast
                numbers = list(range(first_row, first_row + len(rows)))
                return Validated(columns=columns, rows=numbers, notes=notes)
        return self.validate_rows(rows, unknown=unknown, first_row=first_row)

    def _clean_columns(
        self, rows: list[Any], unknown: UnknownPolicy, first_row: int = 0
    ) -> tuple[Columns, list[Note]] | None:
        """Columns of ``rows`` when every row is plainly valid (no reason to give, and no note
        but numbers outside the training range, found with one comparison per column), with
        those notes; else ``None``."""
        known = self._known
        for row in rows:
            if type(row) is not dict:
                return None
            if unknown == "reject" and row.keys() != known:
                return None
        out: Columns = {}
        for checker in self._checkers:
            try:
                array = self._clean_column(checker, rows)
            except (KeyError, OverflowError, ValueError):  # missing, or a number out of range
                return None
            if array is None:
                return None
            out[checker.name] = array
        return out, self._outside(out, first_row)

    def _outside(self, columns: Columns, first_row: int) -> list[Note]:
        """The notes of clean columns' numbers outside the training range: one comparison of
        every ranged column at once (as doubles, as ``check`` compares; NaN never is out)."""
        ranged = self._ranged
        if not ranged:
            return []
        arrays = [columns[name] for name, _ in ranged]
        values = np.concatenate(arrays).reshape(len(arrays), -1)  # feature by row, as doubles
        outside = (values < self._lows) | (values > self._highs)
        if not outside.any():
            return []
        rows, features = np.nonzero(outside.T)  # by row, then in feature order: as row by row
        return [
            Note(first_row + row, *ranged[i], OUTSIDE_TRAINING_RANGE)
            for row, i in zip(rows.tolist(), features.tolist(), strict=True)
        ]

    @staticmethod
    def _clean_column(checker: _Checker, rows: list[dict[str, Any]]) -> np.ndarray | None:
        """One feature's column when every value is plainly valid, else ``None``."""
        f = checker.feature
        column = [row[f.name] for row in rows]
        kinds = set(map(type, column))
        missing = type(None) in kinds
        if f.nullable:
            kinds.discard(type(None))
        elif missing:
            return None
        if f.kind == "numeric":
            if not kinds <= _NUMBER_TYPES:
                return None
            array = np.array(column, dtype=np.float64)  # None becomes NaN
            # NaN and infinity fail the comparison too: they take the row-by-row path, except
            # NaN beside missing values, where NaN is a missing value either way
            present = array if not missing else array[~np.isnan(array)]
            return array if (np.abs(present) < checker.limit).all() else None
        if f.kind == "categorical":
            if not kinds <= _TEXT_TYPES:
                return None
            seen = checker.allowed
            texts = [v for v in column if v is not None]
            if seen:
                if not seen.issuperset(texts):
                    return None  # an unseen category: rejected, or scored with a note
            elif not _unicode("".join(texts)):
                return None  # a lone surrogate somewhere
            return np.array(column, dtype=object)
        allowed = _INTEGER_TYPES if f.kind == "integer" else _BOOLEAN_TYPES
        return _to_array(f, column) if kinds <= allowed else None

    def validate_rows(
        self, records: Iterable[Any], *, unknown: UnknownPolicy = "reject", first_row: int = 0
    ) -> Validated:
        """``validate`` one row at a time: every reason of every row."""
        values: list[list[Any]] = [[] for _ in self._checkers]
        kept: list[int] = []
        errors: list[FieldError] = []
        notes: list[Note] = []
        for i, record in enumerate(records, start=first_row):
            if not isinstance(record, Mapping):
                errors.append(FieldError(i, None, f"expected an object, got {describe(record)}"))
                continue
            row_errors: list[FieldError] = []
            if unknown == "reject" and not self._known.issuperset(record):
                row_errors.extend(
                    FieldError(i, _cut(str(key)), "unknown feature")
                    for key in record
                    if key not in self._known
                )
            row_values: list[Any] = []
            row_notes: list[Note] = []
            for checker in self._checkers:
                if checker.name not in record:
                    row_errors.append(FieldError(i, checker.name, "missing feature"))
                    continue
                clean, reason, note = checker.check(record[checker.name])
                if reason is not None:
                    row_errors.append(FieldError(i, checker.name, reason))
                elif note is not None:
                    row_notes.append(Note(i, checker.name, note, checker.note_kind))
                row_values.append(clean)
            if row_errors:
                errors.extend(row_errors)
                continue
            notes.extend(row_notes)
            kept.append(i)
            for column, value in zip(values, row_values, strict=True):
                column.append(value)
        columns = {f.name: _to_array(f, col) for f, col in zip(self.features, values, strict=True)}
        return Validated(columns=columns, rows=kept, errors=errors, notes=notes)

    def validate_text(self, columns: Mapping[str, Sequence[str]], n_rows: int) -> Validated:
        """Validate text cells (a CSV chunk: feature name to its column of strings).

        The same rules and messages as ``validate``, with cells read the way a text format
        means them: an empty cell is missing, a number is parsed as by ``float()``, a boolean
        is true/false/1/0. Whole columns are converted with numpy; only the cells that fail are
        looked at one by one, by the same checks ``validate`` uses, for their reasons.
        """
        bad = np.zeros(n_rows, dtype=bool)
        errors: list[FieldError] = []
        typed: dict[str, np.ndarray] = {}
        noted: list[tuple[_Checker, np.ndarray]] = []  # rows that may get a note, by feature
        for checker in self._checkers:
            f = checker.feature
            cells = np.asarray(columns[f.name], dtype=object).reshape(n_rows)
            missing = cells == ""
            suspect = missing & (not f.nullable)
            if f.kind in ("numeric", "integer"):
                values, unparsable = _parse_numbers(cells, missing)
                suspect |= unparsable | (np.abs(values) >= checker.limit) | np.isinf(values)
                suspect |= np.isnan(values) & ~missing & ~unparsable & (not f.nullable)
                if f.kind == "integer":
                    finite = np.isfinite(values)
                    fractional = np.zeros(n_rows, dtype=bool)
                    fractional[finite] = values[finite] != np.floor(values[finite])
                    suspect |= fractional | (np.abs(np.nan_to_num(values)) >= 2.0**63)
                if checker.range_note is not None:
                    noted.append((checker, checker.outside(values)))
                typed[f.name] = values
            elif f.kind == "categorical":
                values = np.where(missing, np.array(None, dtype=object), cells)
                known = np.isin(cells, list(checker.allowed)) | missing
                if checker.allowed:
                    if f.unseen == "reject":
                        suspect |= ~known
                    else:
                        noted.append((checker, ~known))
                if not _unicode("".join(cells[~known])):  # a lone surrogate somewhere
                    suspect |= ~known & ~np.array([_unicode(c) for c in cells], dtype=bool)
                typed[f.name] = values
            else:
                flags = np.array([_BOOLEANS.get(c) for c in cells], dtype=object)
                suspect |= (flags == None) & ~missing  # noqa: E711 (elementwise)
                typed[f.name] = flags
            for i in np.flatnonzero(suspect):
                _, reason, _ = checker.check(_cell_value(f, cells[i]))
                if reason is not None:
                    errors.append(FieldError(int(i), f.name, reason))
                    bad[i] = True
        keep = ~bad
        out: Columns = {}
        for f in self.features:
            values = typed[f.name][keep]
            if f.kind in ("numeric", "integer"):
                out[f.name] = (
                    values.astype(np.int64) if f.kind == "integer" and not f.nullable else values
                )
            elif f.kind == "boolean":
                out[f.name] = _to_array(f, values.tolist())
            else:
                out[f.name] = values
        notes = []
        for checker, mask in noted:  # in feature order, so that each row's notes are too
            name, kind = checker.name, checker.note_kind
            fixed = checker.range_note if kind == OUTSIDE_TRAINING_RANGE else None
            for row in np.flatnonzero(mask & keep).tolist():
                note = fixed
                if note is None:  # an unseen category's note names it
                    _, _, note = checker.check(columns[name][row])
                if note is not None:
                    notes.append(Note(row, name, note, kind))
        errors.sort(key=lambda e: e.row)
        notes.sort(key=lambda e: e.row)
        return Validated(
            columns=out, rows=np.flatnonzero(keep).tolist(), errors=errors, notes=notes
        )

    def check_header(
        self,
        header: Sequence[str],
        *,
        unknown: UnknownPolicy = "reject",
        passthrough: Sequence[str] = (),
    ) -> Header:
        """Check a file's columns against the features: every feature must be there; other
        columns are refused (``unknown="reject"``) or listed as ignored, except the
        ``passthrough`` columns that are copied next to the predictions.

        Raises
        ------
        FileError
            Naming the missing (or, when rejected, the unknown) columns.
        """
        present = set(header)
        missing = [n for n in self.names if n not in present]
        if missing:
            raise FileError(f"missing required columns {missing}")
        absent = [p for p in passthrough if p not in present]
        if absent:
            raise FileError(f"missing the columns {absent} that are copied to the predictions")
        copied = set(passthrough)
        extra = [h for h in header if h not in self._known and h not in copied]
        if extra and unknown == "reject":
            raise FileError(f"unknown columns {extra}")
        return Header(
            positions={h: i for i, h in enumerate(header)},
            ignored=extra,
            passthrough=list(passthrough),
        )


_BOOLEANS = {
    "true": True,
    "True": True,
    "TRUE": True,
    "1": True,
    "false": False,
    "False": False,
    "FALSE": False,
    "0": False,
}


_INTEGER_LITERAL = re.compile(r"\s*[+-]?[0-9]+\s*")


def _cell_value(feature: Feature, cell: str) -> Any:
    """A text cell as the JSON-like value it stands for."""
    if cell == "":
        return None
    if feature.kind in ("numeric", "integer"):
        try:
            number = float(cell)
        except ValueError:
            return cell
        if math.isinf(number) and _INTEGER_LITERAL.fullmatch(cell):
            return _parse_int(cell.strip())  # beyond the double range, as JSON's integer is
        return number
    if feature.kind == "boolean":
        return _BOOLEANS.get(cell, cell)
    return cell


def _parse_numbers(cells: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Parse a column of text as float64 (missing as NaN); flag the cells that are no number."""
    filled = np.where(missing, "nan", cells)
    try:
        return filled.astype(np.float64), np.zeros(cells.shape, dtype=bool)
    except ValueError:
        values = np.full(cells.shape, np.nan)
        unparsable = np.zeros(cells.shape, dtype=bool)
        for i, cell in enumerate(filled):
            try:
                values[i] = float(cell)
            except ValueError:
                unparsable[i] = True
        return values, unparsable


def _to_array(feature: Feature, values: list[Any]) -> np.ndarray:
    kind = feature.kind
    if kind == "numeric" or (kind == "integer" and feature.nullable):
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    if kind == "integer":
        return np.array(values, dtype=np.int64)
    if kind == "boolean" and not feature.nullable:
        return np.array(values, dtype=bool)
    return np.array(values, dtype=object)
