"""Drift baselines: quantile bins, frequencies and missing rates."""

from __future__ import annotations

import numpy as np

from sklambda.monitor import categorical_baseline, numeric_baseline, numeric_bins


def test_quantile_bins_hold_about_equal_shares() -> None:
    values = np.random.default_rng(0).normal(size=10_000)
    baseline = numeric_baseline(values, bins=10)
    assert len(baseline.edges) == 9
    assert len(baseline.proportions) == 10
    assert np.allclose(baseline.proportions, 0.1, atol=0.002)
    assert baseline.missing_rate == 0.0


def test_missing_values_are_counted_apart_from_the_bins() -> None:
    values = np.array([1.0, 2.0, np.nan, np.nan, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    baseline = numeric_baseline(values, bins=4)
    assert baseline.missing_rate == 0.2
    assert abs(sum(baseline.proportions) - 1.0) < 1e-9


def test_a_constant_column_has_one_bin() -> None:
    baseline = numeric_baseline(np.full(50, 3.0))
    assert baseline.edges == [3.0]
    assert baseline.proportions == [1.0, 0.0]


def test_new_data_is_binned_with_the_baseline_edges() -> None:
    counts = numeric_bins(np.array([0.5, 1.0, 1.5, 9.0, np.nan]), [1.0, 2.0])
    assert counts.tolist() == [2, 1, 1]


def test_category_frequencies_ignore_missing_values() -> None:
    baseline = categorical_baseline(["a", "b", "a", None, float("nan")])
    assert baseline.frequencies == {"a": 0.666667, "b": 0.333333}
    assert baseline.missing_rate == 0.4


def test_an_all_missing_column_has_no_bins() -> None:
    baseline = numeric_baseline(np.array([np.nan, np.nan]))
    assert baseline.edges == [] and baseline.missing_rate == 1.0


def test_class_counts_are_one_emf_record_per_class() -> None:
    import json

    from sklambda.monitor import class_count_records

    lines = class_count_records("ns", {"ModelName": "m", "ModelVersion": "1"}, {"a": 2, "b": 1})
    records = [json.loads(line) for line in lines]
    assert [(r["Class"], r["PredictedClass"]) for r in records] == [("a", 2), ("b", 1)]
    directive = records[0]["_aws"]["CloudWatchMetrics"][0]
    assert directive == {
        "Namespace": "ns",
        "Dimensions": [["ModelName", "ModelVersion", "Class"]],
        "Metrics": [{"Name": "PredictedClass", "Unit": "Count"}],
    }
    assert all(records[0][d] for d in directive["Dimensions"][0])
