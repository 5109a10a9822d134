"""Strict dataclass contracts: the manifest and the settings are read through sklambda.typed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sklambda.manifest import DataFingerprint, Feature, NumericBaseline, Output, parse_manifest
from sklambda.typed import ContractError, as_dict, build

from support import PENGUINS_DIR

COMMITTED: dict[str, Any] = json.loads((PENGUINS_DIR / "model.json").read_text())


def test_the_committed_manifest_reads_and_writes_back_unchanged() -> None:
    assert as_dict(parse_manifest(COMMITTED)) == COMMITTED


@pytest.mark.parametrize(
    ("data", "path", "reason"),
    [
        ({"name": "x", "kind": "numeric"}, "nullable", "required"),
        ({"name": "x", "kind": "numeric", "nullable": 1}, "nullable", "expected a boolean"),
        ({"name": 3, "kind": "numeric", "nullable": True}, "name", "expected a string"),
        ({"name": "x", "kind": "text", "nullable": True}, "kind", "expected one of"),
        (
            {"name": "x", "kind": "numeric", "nullable": True, "min": "0"},
            "min",
            "expected a number",
        ),
        ({"name": "x", "kind": "numeric", "nullable": True, "extra": 1}, "extra", "unknown field"),
        (
            {"name": "x", "kind": "categorical", "nullable": True, "categories": ["a", 1]},
            "categories.1",
            "expected a string",
        ),
    ],
)
def test_a_field_that_breaks_the_contract_is_named(
    data: dict[str, Any], path: str, reason: str
) -> None:
    with pytest.raises(ContractError) as caught:
        build(Feature, data)
    assert caught.value.path == path and caught.value.reason.startswith(reason)


def test_booleans_are_not_integers_and_integers_are_numbers() -> None:
    with pytest.raises(ContractError, match=r"^rows: expected an integer, got a boolean"):
        build(DataFingerprint, {"rows": True, "columns": [], "sha256": "0"})
    with pytest.raises(ContractError, match=r"^missing_rate: expected a number, got a boolean"):
        build(NumericBaseline, {"edges": [], "proportions": [], "missing_rate": True})
    baseline = build(NumericBaseline, {"edges": [1], "proportions": [1], "missing_rate": 0})
    assert baseline.edges == [1.0] and isinstance(baseline.missing_rate, float)


def test_labels_may_be_strings_numbers_or_booleans() -> None:
    out = build(
        Output,
        {"task": "classification", "target": "y", "classes": [True, 0, "a"], "probabilities": True},
    )
    assert out.classes == [True, 0, "a"]


def test_a_baseline_of_unknown_kind_is_refused() -> None:
    broken = json.loads(json.dumps(COMMITTED))
    broken["baselines"]["features"]["island"]["kind"] = "histogram"
    with pytest.raises(ContractError) as caught:
        parse_manifest(broken)
    assert caught.value.path == "baselines.features.island.kind"
