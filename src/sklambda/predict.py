"""The one scoring core: rows in, predictions (or reasons) out, for every path.

The online API and the batch job both call these functions, so the same row gets the same
prediction and the same error text whichever way it arrives. Predictions are plain JSON-ready
dicts: ``{"label": ..., "probabilities": {class: p, ...}}`` for a classifier (probabilities only
when the model has them) and ``{"value": ...}`` for a regressor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sklambda.errors import FieldError, InvalidInput
from sklambda.model import Model, Scores
from sklambda.schema import UnknownPolicy


@dataclass(frozen=True, slots=True)
class Outcome:
    """Scored rows (by position) with their predictions, and every reason a row was rejected."""

    rows: list[int]
    predictions: list[dict[str, Any]]
    errors: list[FieldError]
    notes: list[FieldError]


def format_predictions(model: Model, scores: Scores) -> list[dict[str, Any]]:
    """Scores as JSON-ready dicts, one per row."""
    if scores.values is not None:
        return [{"value": v} for v in scores.values.tolist()]
    assert scores.labels is not None
    labels = scores.labels.tolist()
    if scores.probabilities is None:
        return [{"label": label} for label in labels]
    names = [str(c) for c in model.classes or ()]
    return [
        {"label": label, "probabilities": dict(zip(names, row, strict=True))}
        for label, row in zip(labels, scores.probabilities.tolist(), strict=True)
    ]


def predict_all(
    model: Model, instances: Iterable[Any]
) -> tuple[list[dict[str, Any]], list[FieldError]]:
    """Score every instance or none: any invalid instance raises ``InvalidInput`` with all
    reasons. Returns the predictions and the notes (unseen categories that were scored)."""
    checked = model.validate(list(instances))
    if checked.errors:
        raise InvalidInput(checked.errors)
    return format_predictions(model, model.score_columns(checked.columns)), checked.notes


def predict_rows(
    model: Model,
    rows: Iterable[Any],
    *,
    unknown: UnknownPolicy = "reject",
    first_row: int = 0,
) -> Outcome:
    """Score the valid rows and keep the reasons for the others (batch semantics)."""
    checked = model.validate(list(rows), unknown=unknown, first_row=first_row)
    predictions = format_predictions(model, model.score_columns(checked.columns))
    return Outcome(checked.rows, predictions, checked.errors, checked.notes)
