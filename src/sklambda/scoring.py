"""The one scoring core: rows or columns in; validated, scored and formatted predictions, notes
and per-row reasons out. Every door calls it: the API, both batch formats, capture and the
drift counters, so the same row gets the same answer and the same reasons whichever way it
arrives.

No prediction is ever NaN or infinite: a row the model gives no finite answer for (a
probability or value that is NaN or infinite) is not a prediction but a rejected row with the
fixed reason ``NO_FINITE_PREDICTION``, so the API answers 422 naming the instance and batch
lists the row in its errors file.

Predictions are JSON-ready dicts, ``{"label": ..., "probabilities": {class: p, ...}}`` for a
classifier (probabilities only when the model has them) and ``{"value": ...}`` for a regressor;
batch files get the same values as CSV or JSON Lines rows from the same ``Formatter``.

Examples
--------
>>> from sklambda.model import load
>>> model = load("models/penguins")
>>> bird = {"island": "Biscoe", "bill_length_mm": 48.6, "bill_depth_mm": 16.0,
...         "flipper_length_mm": 230.0, "body_mass_g": 5800.0, "sex": "male"}
>>> scored = score_records(model, [bird, {"island": 3}])
>>> scored.rows, scored.predictions()[0]["label"], scored.errors[0].path(), scored.errors[0].reason
([0], 'Gentoo', 'instances[1].island', 'expected a string, got a number')
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

import numpy as np

from sklambda.errors import FieldError, InvalidInput, Note
from sklambda.model import Model, Scores
from sklambda.schema import Columns, UnknownPolicy, Validated

NO_FINITE_PREDICTION = "the model gave no finite prediction for this row"


@dataclass(frozen=True, slots=True)
class Scored:
    """Rows validated and scored.

    ``rows`` are the positions (in the input) of the rows that were scored, in order;
    ``scores`` their raw answers and ``columns`` their validated values (what drift counts);
    ``errors`` every reason every other row was rejected; ``notes`` remarks on scored rows.
    """

    model: Model
    rows: list[int]
    columns: Columns
    scores: Scores
    errors: list[FieldError]
    notes: list[Note]

    def predictions(self) -> list[dict[str, Any]]:
        """One JSON-ready prediction per scored row."""
        return formatter(self.model).dicts(self.scores)

    @property
    def rejected_rows(self) -> list[int]:
        return sorted({e.row for e in self.errors})


def _scored(model: Model, checked: Validated) -> Scored:
    scores = model.score_columns(checked.columns)
    bad = _not_finite(scores)
    if bad is None:
        return Scored(model, checked.rows, checked.columns, scores, checked.errors, checked.notes)
    # Rows without a finite answer are rejected, never written as predictions.
    keep = ~bad
    dropped = {checked.rows[i] for i in np.flatnonzero(bad)}
    errors = [*checked.errors, *(FieldError(row, None, NO_FINITE_PREDICTION) for row in dropped)]
    errors.sort(key=lambda e: e.row)
    return Scored(
        model,
        [row for row in checked.rows if row not in dropped],
        {name: column[keep] for name, column in checked.columns.items()},
        Scores(
            labels=None if scores.labels is None else scores.labels[keep],
            probabilities=None if scores.probabilities is None else scores.probabilities[keep],
            values=None if scores.values is None else scores.values[keep],
        ),
        errors,
        [note for note in checked.notes if note.row not in dropped],
    )


def _not_finite(scores: Scores) -> np.ndarray | None:
    """A mask of the rows whose probabilities or value are not all finite, or ``None`` when
    every row's are."""
    masks: list[np.ndarray] = []
    if scores.values is not None:
        masks.append(~np.isfinite(np.asarray(scores.values, dtype=np.float64)))
    if scores.probabilities is not None:
        proba = np.asarray(scores.probabilities, dtype=np.float64)
        finite = np.isfinite(proba)
        masks.append(np.asarray(~finite.all(axis=1) if finite.ndim == 2 else ~finite))
    if not masks:
        return None
    bad: np.ndarray = np.logical_or.reduce(masks)
    return bad if bad.any() else None


def score_records(
    model: Model,
    records: Iterable[Any],
    *,
    unknown: UnknownPolicy = "reject",
    first_row: int = 0,
) -> Scored:
    """Score JSON-like rows (mappings of feature to value): the valid ones are scored, the
    others keep their reasons. ``first_row`` offsets row numbers, for callers that chunk."""
    return _scored(model, model.schema.validate(records, unknown=unknown, first_row=first_row))


def score_text(model: Model, columns: Mapping[str, Sequence[str]], n_rows: int) -> Scored:
    """Score text cells (a CSV chunk: each feature's column of strings), with the same rules
    and reasons as ``score_records``."""
    return _scored(model, model.schema.validate_text(columns, n_rows))


def predict_all(model: Model, instances: Sequence[Any]) -> Scored:
    """All or nothing, for the API: any invalid instance raises ``InvalidInput`` naming every
    reason (an instance the model gives no finite prediction for too); otherwise every
    instance is scored."""
    checked = model.schema.validate(instances)
    if checked.errors:
        raise InvalidInput(checked.errors)
    try:
        scored = _scored(model, checked)
    except MODEL_REFUSALS as exc:
        raise InvalidInput(_refused_rows(model, instances, exc)) from exc
    if scored.errors:
        raise InvalidInput(scored.errors)
    return scored


MODEL_REFUSALS = (ValueError, ArithmeticError)
"""What a pipeline raises for an input it cannot score (scikit-learn's input checks raise
ValueError: infinity after a log of a negative number, say); the row's fault, not the
service's."""


def unscorable(exc: BaseException) -> str:
    """The reason of a row the model raised on, online and in batch."""
    return f"could not be scored (an internal error: {type(exc).__name__})"


def _refused_rows(model: Model, instances: Sequence[Any], exc: BaseException) -> list[FieldError]:
    """The instances the model raises on when scored alone; none alone: the original error
    (the fault is not the rows')."""
    refused = []
    for i, instance in enumerate(instances):
        try:
            _scored(model, model.schema.validate([instance]))
        except MODEL_REFUSALS as alone:
            refused.append(FieldError(i, None, unscorable(alone)))
    if not refused:
        raise exc
    return refused


class Formatter:
    """How one model's predictions are written: JSON-ready dicts, CSV rows, JSON Lines rows.

    Built once per model. Probabilities in CSV are written with nine significant digits when
    the onnx runtime scores in float32 (every float32 comes back exactly) and in full otherwise.
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.classes = [str(c) for c in model.classes or ()]
        self.regression = model.task == "regression"
        self.probabilities = bool(model.manifest.output.probabilities)
        onnx = model.manifest.runtime.onnx
        single = model.runtime == "onnx" and onnx is not None and onnx.input_dtype == "float32"
        self.number = "%.9g" if single else "%r"
        self._label_text = {c: csv_field(c) for c in self.classes}

    def dicts(self, scores: Scores) -> list[dict[str, Any]]:
        if scores.values is not None:
            return [{"value": v} for v in scores.values.tolist()]
        assert scores.labels is not None
        labels = scores.labels.tolist()
        if scores.probabilities is None:
            return [{"label": label} for label in labels]
        names = self.classes
        return [
            {"label": label, "probabilities": dict(zip(names, row, strict=True))}
            for label, row in zip(labels, scores.probabilities.tolist(), strict=True)
        ]

    def csv_header(self, passthrough: Sequence[str]) -> list[str]:
        head = ["row", *passthrough]
        if self.regression:
            return [*head, "value"]
        head.append("label")
        if self.probabilities:
            head += [f"probability_{c}" for c in self.classes]
        return head

    def csv_rows(
        self, numbers: Sequence[int], passthrough: Sequence[Sequence[Any]], scores: Scores
    ) -> str:
        """Prediction rows of a chunk, formatted in one pass of the % operator."""
        columns: list[Sequence[Any]] = [numbers]
        template = ["%d"]
        for column in passthrough:
            columns.append([csv_field(v) for v in column])
            template.append("%s")
        if scores.values is not None:
            columns.append(scores.values.tolist())
            template.append(self.number)
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
                template.extend([self.number] * scores.probabilities.shape[1])
        if not len(numbers):
            return ""
        line = ",".join(template) + "\n"
        table = np.empty((len(numbers), len(columns)), dtype=object)
        for j, column in enumerate(columns):
            table[:, j] = column
        return (line * len(numbers)) % tuple(table.ravel().tolist())

    def json_rows(
        self,
        numbers: Sequence[int],
        passthrough: Mapping[str, Sequence[Any]],
        scores: Scores,
    ) -> str:
        """Prediction rows of a chunk as JSON Lines: ``{"row": n, <passthrough>, <prediction>}``."""
        lines = []
        names = list(passthrough)
        for i, (number, prediction) in enumerate(zip(numbers, self.dicts(scores), strict=True)):
            entry: dict[str, Any] = {"row": number}
            for name in names:
                entry[name] = passthrough[name][i]
            entry.update(prediction)
            lines.append(json.dumps(entry, separators=(",", ":"), allow_nan=False) + "\n")
        return "".join(lines)


_formatters: WeakKeyDictionary[Model, Formatter] = WeakKeyDictionary()


def formatter(model: Model) -> Formatter:
    """The model's formatter, built once per model."""
    found = _formatters.get(model)
    if found is None:
        found = _formatters[model] = Formatter(model)
    return found


def csv_field(value: Any) -> str:
    """One CSV field (RFC 4180 quoting only where needed)."""
    text = "" if value is None else str(value)
    if any(c in text for c in ',"\r\n') or text != text.strip():
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_line(fields: Sequence[Any]) -> str:
    return ",".join(csv_field(f) for f in fields) + "\n"
