"""The model card shows the figures a model has, and no empty field for those it has not."""

from __future__ import annotations

import dataclasses
import re

import pytest

from sklambda_tools.card import render_card
from sklambda_tools.package import Packaged

# What an absent figure leaves behind in a line of text or a Markdown table.
EMPTY_FIELD = {
    "an empty table cell": re.compile(r"\|[ \t]*\|"),
    "a comma after nothing": re.compile(r"(^|[ \t(]),"),
    "a comma before nothing": re.compile(r",[ \t]*(,|\(|\)|\||$)"),
    "two spaces where a figure was": re.compile(r"\S {2,}\S"),
    "a word left hanging before a bracket": re.compile(r"\b(to|difference|agreement) \("),
    "a missing value printed": re.compile(r"\b(None|nan|null)\b"),
    "an empty list": re.compile(r"\[\]"),
}


def empty_fields(card: str) -> list[str]:
    return [
        f"{what}: {line!r}"
        for line in card.splitlines()
        for what, pattern in EMPTY_FIELD.items()
        if pattern.search(line)
    ]


def test_the_check_finds_the_empty_fields_it_is_meant_to_find() -> None:
    assert empty_fields("| | |")
    assert empty_fields("| age | integer | no | 18 to 79 |  |")
    assert empty_fields("- Parity: label agreement , max probability difference , x 1 (t 1)")
    assert empty_fields("- Parity: label agreement 1, max relative value difference  (t 1)")
    assert empty_fields("| a | 18 to  |")
    assert not empty_fields("| Metric | Value |\n|---|---|\n| mae | 7.7128 |\n- a, b (c 1)")


def parity_line(card: str) -> str:
    (line,) = (line for line in card.splitlines() if line.startswith("- Parity on "))
    return line


@pytest.mark.parametrize(
    "name",
    [
        "regressor",
        "binary",
        "binary_no_proba",
        "multiclass",
        "multiclass_no_proba",
        "forest_regressor",
    ],
)
def test_a_card_has_no_empty_field(packaged: dict[str, Packaged], name: str) -> None:
    card = render_card(packaged[name].manifest)
    assert empty_fields(card) == []


def test_a_regressor_card_shows_the_value_difference_only(packaged: dict[str, Packaged]) -> None:
    m = packaged["regressor"].manifest
    assert m.output.task == "regression" and m.runtime.onnx is not None
    card = render_card(m)
    line = parity_line(card)
    assert "max relative value difference" in line and "tolerance 1e-05" in line
    assert "label agreement" not in line and "probability" not in line
    # its known faults have no accuracy, so there is no Accuracy column
    assert m.known_faults and all(f.accuracy is None for f in m.known_faults)
    assert "Accuracy" not in card


def test_a_classifier_card_shows_labels_and_probabilities(packaged: dict[str, Packaged]) -> None:
    m = packaged["binary"].manifest
    assert m.output.probabilities
    card = render_card(m)
    line = parity_line(card)
    assert "label agreement 1, max probability difference " in line
    assert "relative value" not in line
    assert "| Slice | Rows | Metric | Slice value | Overall | Accuracy |" in card


def test_a_classifier_without_probabilities_shows_labels_only(
    packaged: dict[str, Packaged],
) -> None:
    m = packaged["binary_no_proba"].manifest
    assert not m.output.probabilities and m.runtime.onnx is not None
    line = parity_line(render_card(m))
    assert "label agreement 1 (tolerance" in line
    assert "probability" not in line and "relative value" not in line


def test_a_feature_without_a_recorded_range_leaves_no_empty_cell(
    packaged: dict[str, Packaged],
) -> None:
    m = packaged["regressor"].manifest
    age, income, *rest = m.features
    features = [
        dataclasses.replace(age, min=None, max=None),
        dataclasses.replace(income, max=None),
        *rest,
    ]
    card = render_card(dataclasses.replace(m, features=features, libraries={}))
    assert empty_fields(card) == []
    rows = {line.split(" | ")[0]: line for line in card.splitlines() if line.startswith("| ")}
    assert " | not recorded | " in rows["| age"]
    assert f" | from {income.min:.4g} | " in rows["| income"]
