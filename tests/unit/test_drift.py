"""Drift: baselines (quantile bins, frequencies, missing rates), counting, PSI, the command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sklambda.drift import (
    DriftCounter,
    categorical_baseline,
    numeric_baseline,
    numeric_bins,
    psi,
)
from sklambda.manifest import CategoricalBaseline

from support import REPO


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


# --- drift -------------------------------------------------------------------------------------

RNG = np.random.default_rng(7)
TRAIN = RNG.normal(50, 10, 20_000)


def counter_for(values: np.ndarray, cats: list[object]) -> DriftCounter:
    return DriftCounter(
        {"x": numeric_baseline(TRAIN), "c": categorical_baseline(["a"] * 600 + ["b"] * 400)}
    )


def report_of(x: np.ndarray, c: list[object], **kwargs: float) -> dict:  # type: ignore[type-arg]
    counter = counter_for(TRAIN, [])
    counter.add("x", x)
    counter.add("c", np.array(c, dtype=object))
    return counter.report(**kwargs)


def test_identical_data_has_no_drift() -> None:
    report = report_of(RNG.normal(50, 10, 5_000), ["a"] * 3_000 + ["b"] * 2_000)
    assert report["status"] == "ok"
    assert report["features"]["x"]["psi"] < 0.02 and report["features"]["c"]["psi"] < 0.01


def test_a_shifted_mean_is_drift() -> None:
    report = report_of(RNG.normal(58, 10, 5_000), ["a"] * 3_000 + ["b"] * 2_000)
    assert report["features"]["x"]["psi"] > 0.2 and report["features"]["x"]["drifted"]
    assert report["status"] == "drift" and report["max_feature"] == "x"


def test_a_new_category_is_caught() -> None:
    report = report_of(RNG.normal(50, 10, 1_000), ["a"] * 500 + ["b"] * 300 + ["z"] * 200)
    bins = {b["bin"]: b for b in report["features"]["c"]["bins"]}
    assert bins["(unseen)"]["expected"] == 0.0 and bins["(unseen)"]["actual"] == pytest.approx(0.2)
    assert report["features"]["c"]["drifted"]


def test_a_rising_missing_rate_is_caught() -> None:
    x = RNG.normal(50, 10, 1_000)
    x[:300] = np.nan
    report = report_of(x, ["a"] * 600 + [None] * 400)
    assert report["features"]["x"]["drifted"] and report["features"]["c"]["drifted"]
    bins = {b["bin"]: b["actual"] for b in report["features"]["x"]["bins"]}
    assert bins["(missing)"] == pytest.approx(0.3)


def test_a_small_sample_is_not_enough_data() -> None:
    report = report_of(RNG.normal(80, 10, 50), ["z"] * 50)
    assert report["status"] == "not enough data" and report["features"] == {}


def test_counts_add_up_across_chunks() -> None:
    x, c = RNG.normal(55, 10, 3_000), ["a", "b", "q", None] * 750
    whole = counter_for(TRAIN, [])
    whole.add("x", x)
    whole.add("c", np.array(c, dtype=object))
    merged = counter_for(TRAIN, [])
    for part in range(3):
        piece = counter_for(TRAIN, [])
        piece.add("x", x[part * 1000 : (part + 1) * 1000])
        piece.add("c", np.array(c[part * 1000 : (part + 1) * 1000], dtype=object))
        merged.load_json(piece.to_json())
    assert merged.to_json() == whole.to_json()
    assert merged.report() == whole.report()


def test_psi_of_equal_shares_is_zero_and_grows_with_the_shift() -> None:
    e = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(e, e) == 0.0
    assert 0 < psi(e, np.array([0.3, 0.2, 0.25, 0.25])) < psi(e, np.array([0.5, 0.1, 0.2, 0.2]))
    assert CategoricalBaseline(frequencies={"a": 1.0}, missing_rate=0.0).kind == "categorical"


def test_drift_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sklambda_tools.drift import main

    assert (
        main(
            [
                "--data",
                str(REPO / "samples" / "birds-shifted.csv"),
                "--model",
                str(REPO / "models" / "penguins"),
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 1  # drift found: a script or a CI step can act on it
    )
    out = capsys.readouterr().out
    assert ": drift" in out.splitlines()[0]
    assert "body_mass_g" in out and "DRIFT" in out and "(unseen)" in out
    assert (
        main(
            [
                "--data",
                str(REPO / "samples" / "birds.csv"),
                "--model",
                str(REPO / "models" / "penguins"),
            ]
        )
        == 0
    )
    assert "not enough data" in capsys.readouterr().out


def test_numeric_labels_are_counted_by_their_text() -> None:
    counter = DriftCounter({"label": categorical_baseline(["0", "1", "1"])})
    counter.add("label", np.array([0, 1, 1, 2, None], dtype=object))
    assert counter.to_json() == {"label": [1, 2, 1, 1]}  # 0, 1, unseen, missing
