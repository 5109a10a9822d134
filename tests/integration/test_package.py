"""Packaging pipelines fitted elsewhere: schema, metrics, gate, faults, export and fallback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from sklambda.errors import NotSupportedError
from sklambda.manifest import read_manifest
from sklambda.model import load
from sklambda.scoring import predict_all
from sklambda_tools.errors import GateFailed, PackagingError
from sklambda_tools.evaluate import read_gate
from sklambda_tools.package import Packaged, build, main

from pipelines import CASES, FEATURES, preprocessor


@pytest.mark.parametrize("name", list(CASES))
def test_every_kind_of_pipeline_packages_and_loads(
    name: str,
    packaged: dict[str, Packaged],
    holdout_frame: pd.DataFrame,
    to_records: Callable[..., Any],
) -> None:
    # Given a packaged pipeline
    result = packaged[name]
    manifest = read_manifest(result.path)
    # Then the manifest on disk is the one returned, with the serving runtime expected
    assert manifest == result.manifest
    assert manifest.runtime.serving == CASES[name][2], manifest.runtime.reason
    assert manifest.gate.passed and manifest.gate.source == "built-in default"
    # And the served model answers like the pipeline itself on the holdout
    model = load(result.path)
    pipeline = joblib.load(result.path / "model.joblib")
    expected = pipeline.predict(holdout_frame[FEATURES])
    got = model.predict(to_records(holdout_frame))
    if manifest.output.task == "regression":
        np.testing.assert_allclose(got, expected, rtol=1e-5)
    else:
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c[2] == "onnx"])
def test_both_runtimes_give_the_same_answers(
    name: str,
    packaged: dict[str, Packaged],
    holdout_frame: pd.DataFrame,
    to_records: Callable[..., Any],
) -> None:
    rows = to_records(holdout_frame)
    onnx = predict_all(load(packaged[name].path, runtime="onnx"), rows).scores
    sk = predict_all(load(packaged[name].path, runtime="sklearn"), rows).scores
    if onnx.values is not None:
        np.testing.assert_allclose(onnx.values, sk.values, rtol=1e-5)
    else:
        np.testing.assert_array_equal(onnx.labels, sk.labels)
        if sk.probabilities is not None:
            np.testing.assert_allclose(onnx.probabilities, sk.probabilities, atol=1e-5)


def test_the_schema_is_inferred_from_data_and_pipeline(packaged: dict[str, Packaged]) -> None:
    features = {f.name: f for f in packaged["binary"].manifest.features}
    assert list(features) == FEATURES
    # age never misses in the data, but its first step is a median imputer: nullable
    assert (features["age"].kind, features["age"].nullable) == ("integer", True)
    assert (features["income"].kind, features["income"].nullable) == ("numeric", True)
    assert features["age"].min is not None and 18 <= features["age"].min < features["age"].max < 80
    city = features["city"]
    assert (city.kind, city.nullable, city.categories) == (
        "categorical",
        True,
        ["east", "north", "south"],
    )
    assert city.unseen == "score" and "ignore" in (city.unseen_handling or "")
    # member goes straight to the logistic regression, which fails on a missing value
    assert (features["member"].kind, features["member"].nullable) == ("boolean", False)


def test_metrics_match_the_task(packaged: dict[str, Packaged]) -> None:
    assert set(packaged["binary"].manifest.metrics.values) == {
        "accuracy",
        "macro_f1",
        "min_class_recall",
        "log_loss",
        "roc_auc",
        "average_precision",
    }
    assert set(packaged["multiclass"].manifest.metrics.per_class_recall or {}) == {"0", "1", "2"}
    assert set(packaged["binary_no_proba"].manifest.metrics.values) == {
        "accuracy",
        "macro_f1",
        "min_class_recall",
    }
    assert set(packaged["regressor"].manifest.metrics.values) == {"mae", "rmse", "r2"}


def test_multiclass_integer_labels_keep_their_type(packaged: dict[str, Packaged]) -> None:
    m = packaged["multiclass"].manifest
    assert m.output.classes == [0, 1, 2]
    model = load(packaged["multiclass"].path)
    assert (
        model.predict([{"age": 40, "income": 50.0, "city": "north", "member": True}]).dtype.kind
        == "i"
    )


def test_a_classifier_without_predict_proba_says_so(packaged: dict[str, Packaged]) -> None:
    for name in ("binary_no_proba", "multiclass_no_proba"):
        model = load(packaged[name].path)
        assert model.manifest.output.probabilities is False
        with pytest.raises(NotSupportedError):
            model.predict_proba([{"age": 40, "income": 50.0, "city": "north", "member": True}])


def test_a_fallback_is_printed_with_what_the_sklearn_runtime_costs(
    packaged: dict[str, Packaged],
) -> None:
    from sklambda_tools.package import summary

    fallback = summary(packaged["unconvertible"])
    assert packaged["unconvertible"].manifest.runtime.reason in fallback  # in full
    assert "226 MB" in fallback and "1.4 s" in fallback
    assert "226 MB" not in summary(packaged["binary"])


def test_fallback_reasons_are_recorded(packaged: dict[str, Packaged]) -> None:
    unconvertible = packaged["unconvertible"].manifest.runtime
    assert unconvertible.onnx is None and "FunctionTransformer" in unconvertible.reason
    assert not (packaged["unconvertible"].path / "model.onnx").exists()
    # every attempt is in the reason, in full: both precisions (no column step to match a
    # matrix input here, since a feature is categorical)
    assert unconvertible.reason.count("; ") == 1
    assert "float64, columns: conversion failed" in unconvertible.reason
    assert "float32, columns: conversion failed" in unconvertible.reason
    forest = packaged["forest_regressor"].manifest.runtime
    assert forest.onnx is not None and forest.onnx.input_dtype == "float64"  # the tree split


def test_parity_figures_are_recorded(packaged: dict[str, Packaged]) -> None:
    info = packaged["binary"].manifest.runtime.onnx
    assert info is not None
    parity = info.parity
    assert parity.passed and parity.label_agreement == 1.0
    assert parity.max_abs_proba_diff is not None and parity.max_abs_proba_diff <= 1e-5
    # the holdout plus, on each of its first 50 rows, a probe per nullable feature (age,
    # income, city), one with all three missing, one per scorable categorical (city), and one
    # per number between whole numbers that stays in range
    assert parity.probes >= 50 * (3 + 1 + 1) and parity.rows == 200 + parity.probes


def test_known_faults_are_slices_worse_than_overall(packaged: dict[str, Packaged]) -> None:
    faults = packaged["binary"].manifest.known_faults
    assert faults, "a 77%-accurate model has slices worse than its average"
    assert all(f.value > f.overall and f.rows >= 5 for f in faults)
    assert [f.value for f in faults] == sorted((f.value for f in faults), reverse=True)


def test_baselines_cover_every_feature_and_the_predictions(packaged: dict[str, Packaged]) -> None:
    b = packaged["binary"].manifest.baselines
    assert b.source == "training" and b.rows == 600
    assert set(b.features) == set(FEATURES)
    assert b.features["income"].kind == "numeric" and 0 < b.features["income"].missing_rate < 0.1
    assert set(b.prediction.frequencies) == {"no", "yes"}  # type: ignore[union-attr]
    assert packaged["regressor"].manifest.baselines.prediction.kind == "numeric"


def test_a_failing_gate_writes_nothing_and_names_the_metric(
    fitted: dict[str, Pipeline], holdout_frame: pd.DataFrame, tmp_path: Path
) -> None:
    # Given a gate the binary model cannot meet
    out = tmp_path / "binary"
    gate = {"accuracy": ("min", 0.99), "macro_f1": ("min", 0.5)}
    # When it is packaged
    with pytest.raises(GateFailed) as caught:
        build(
            fitted["binary"], holdout_frame, "churn", out, name="b", gate=gate, gate_source="g.toml"
        )
    # Then the message names the metric, its value and the threshold, and nothing was written
    message = str(caught.value)
    assert (
        "g.toml" in message
        and "accuracy = 0.7" in message
        and "below the minimum 0.9900" in message
    )
    assert "macro_f1" not in message
    assert not out.exists()


def test_the_default_gate_refuses_a_model_worse_than_the_majority_class(
    train_frame: pd.DataFrame, tmp_path: Path
) -> None:
    frame = train_frame.copy()
    frame["churn"] = np.where(np.arange(len(frame)) % 10 == 0, "yes", "no")  # 90% "no"
    inverted = frame.copy()
    inverted["churn"] = np.where(frame["churn"] == "yes", "no", "yes")
    pipeline = Pipeline([("pre", preprocessor()), ("m", LogisticRegression())]).fit(
        inverted[FEATURES], inverted["churn"]
    )
    with pytest.raises(GateFailed, match="accuracy"):
        build(pipeline, frame, "churn", tmp_path / "x", name="x")


def test_a_gate_on_log_loss_needs_probabilities(
    fitted: dict[str, Pipeline], holdout_frame: pd.DataFrame, tmp_path: Path
) -> None:
    with pytest.raises(PackagingError, match="log_loss needs predict_proba"):
        build(
            fitted["binary_no_proba"],
            holdout_frame,
            "churn",
            tmp_path / "x",
            name="x",
            gate={"log_loss": ("max", 1.0)},
        )


def test_an_unknown_gate_metric_is_refused(
    fitted: dict[str, Pipeline], holdout_frame: pd.DataFrame, tmp_path: Path
) -> None:
    with pytest.raises(PackagingError, match="unknown metric 'acc'"):
        build(
            fitted["binary"],
            holdout_frame,
            "churn",
            tmp_path / "x",
            name="x",
            gate={"acc": ("min", 0.5)},
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "needs a non-empty \\[thresholds\\]"),
        ("[thresholds]\naccuracy = 0.9\n", "must be { min = <number> }"),
        ("[thresholds]\naccuracy = { min = 'high' }\n", "accuracy.min must be a number"),
        ("[thresholds\n", "cannot read the gate file"),
    ],
)
def test_a_malformed_gate_file_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gate.toml"
    path.write_text(text)
    with pytest.raises(PackagingError, match=message):
        read_gate(path)


def test_an_unseen_category_is_rejected_when_the_pipeline_would_fail(
    train_frame: pd.DataFrame,
    holdout_frame: pd.DataFrame,
    tmp_path: Path,
    to_records: Callable[..., Any],
) -> None:
    # Given a pipeline whose encoder refuses unknown categories
    strict = Pipeline([("pre", preprocessor(unseen="error")), ("m", LogisticRegression())])
    strict.fit(train_frame[FEATURES], train_frame["churn"])
    result = build(strict, holdout_frame, "churn", tmp_path / "strict", name="strict")
    city = next(f for f in result.manifest.features if f.name == "city")
    assert city.unseen == "reject"
    # When a request brings a city never seen in training
    model = load(result.path)
    checked = model.schema.validate([{"age": 30, "income": 40.0, "city": "west", "member": False}])
    # Then it is rejected with the allowed values, instead of failing inside the pipeline
    assert [e.reason for e in checked.errors] == [
        "unknown category 'west'; expected one of ['east', 'north', 'south']"
    ]


def test_an_unseen_category_is_scored_when_the_pipeline_handles_it(
    packaged: dict[str, Packaged],
) -> None:
    model = load(packaged["binary"].path)
    checked = model.schema.validate([{"age": 30, "income": 40.0, "city": "west", "member": False}])
    assert checked.errors == [] and len(checked.notes) == 1
    assert "not seen in training" in checked.notes[0].reason
    assert model.predict([{"age": 30, "income": 40.0, "city": "west", "member": False}]).shape == (
        1,
    )


def test_a_pipeline_without_feature_names_is_refused(
    train_frame: pd.DataFrame, holdout_frame: pd.DataFrame, tmp_path: Path
) -> None:
    pipeline = LogisticRegression().fit(train_frame[["age"]].to_numpy(), train_frame["churn"])
    with pytest.raises(PackagingError, match="fit it on a pandas DataFrame"):
        build(pipeline, holdout_frame, "churn", tmp_path / "x", name="x")


def test_an_unfitted_pipeline_is_refused(holdout_frame: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match="not fitted"):
        build(LogisticRegression(), holdout_frame, "churn", tmp_path / "x", name="x")


def test_forcing_sklearn_still_exports_onnx(
    fitted: dict[str, Pipeline], holdout_frame: pd.DataFrame, tmp_path: Path
) -> None:
    result = build(
        fitted["binary"], holdout_frame, "churn", tmp_path / "x", name="x", runtime="sklearn"
    )
    assert result.manifest.runtime.serving == "sklearn"
    assert result.manifest.runtime.onnx is not None and (result.path / "model.onnx").exists()
    assert load(result.path).runtime == "sklearn"


def test_forcing_onnx_on_an_unconvertible_pipeline_fails(
    fitted: dict[str, Pipeline], holdout_frame: pd.DataFrame, tmp_path: Path
) -> None:
    with pytest.raises(PackagingError, match="--runtime onnx was asked for"):
        build(
            fitted["unconvertible"],
            holdout_frame,
            "churn",
            tmp_path / "x",
            name="x",
            runtime="onnx",
        )


# --- the command line -------------------------------------------------------------------


@pytest.fixture
def byo_files(
    fitted: dict[str, Pipeline], holdout_frame: pd.DataFrame, tmp_path: Path
) -> dict[str, Path]:
    files = {}
    for name in ("binary", "regressor"):
        files[name] = tmp_path / f"{name}.joblib"
        joblib.dump(fitted[name], files[name])
    files["holdout"] = tmp_path / "holdout.csv"
    holdout_frame.to_csv(files["holdout"], index=False)
    return files


def test_the_cli_packages_a_regressor(
    byo_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "models" / "spend"
    code = main(
        [
            "--model",
            str(byo_files["regressor"]),
            "--data",
            str(byo_files["holdout"]),
            "--target",
            "spend",
            "--name",
            "spend",
            "--out",
            str(out),
            "--version",
            "2.0.1",
        ]
    )
    assert code == 0
    manifest = json.loads((out / "model.json").read_text())
    assert (manifest["name"], manifest["version"], manifest["output"]["task"]) == (
        "spend",
        "2.0.1",
        "regression",
    )
    assert manifest["baselines"]["source"] == "holdout"
    assert (out / "MODEL_CARD.md").read_text().startswith("# Model card: spend 2.0.1")
    assert "packaged spend 2.0.1" in capsys.readouterr().out


def test_the_cli_reads_the_gate_beside_the_model_and_exits_1_when_it_fails(
    byo_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "binary"
    out.mkdir()
    (out / "gate.toml").write_text("[thresholds]\nlog_loss = { max = 0.1 }\n")
    code = main(
        [
            "--model",
            str(byo_files["binary"]),
            "--data",
            str(byo_files["holdout"]),
            "--target",
            "churn",
            "--out",
            str(out),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "refused" in err and "log_loss = 0.4" in err and "above the maximum 0.1000" in err
    assert not (out / "model.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "nope"], "no target column 'nope'"),
        (["--target", "churn", "--data", "missing.csv"], "cannot read the holdout CSV"),
        (["--target", "churn", "--model", "missing.joblib"], "cannot load the pipeline"),
    ],
)
def test_the_cli_explains_unusable_input_with_exit_2(
    byo_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    base = {
        "--model": str(byo_files["binary"]),
        "--data": str(byo_files["holdout"]),
        "--out": str(tmp_path / "o"),
    }
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value if flag == "--target" else str(tmp_path / value)
    argv = [x for kv in base.items() for x in kv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_module_runs_as_a_command(byo_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmd"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sklambda_tools.package",
            "--model",
            str(byo_files["binary"]),
            "--data",
            str(byo_files["holdout"]),
            "--target",
            "churn",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert load(out).runtime == "onnx"


def test_the_summary_counts_its_gate_checks_in_words(packaged: dict[str, Packaged]) -> None:
    import dataclasses

    from sklambda_tools.package import summary

    one = packaged["binary"]
    (check, *_) = one.manifest.gate.checks

    def with_checks(n: int) -> Packaged:
        gate = dataclasses.replace(one.manifest.gate, checks=[check] * n)
        return dataclasses.replace(one, manifest=dataclasses.replace(one.manifest, gate=gate))

    assert "passed 1 check\n" in summary(with_checks(1)) + "\n"
    assert "passed 2 checks\n" in summary(with_checks(2)) + "\n"
