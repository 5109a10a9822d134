"""What packaging records is true: the versions a pickle was made with, the features a
pipeline accepts missing, and the ranking metrics of classifiers with probabilities."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn import metrics as skm
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import InconsistentVersionWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401  (IterativeImputer)
from sklearn.feature_selection import VarianceThreshold
from sklearn.impute import IterativeImputer, KNNImputer, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
    label_binarize,
)
from sklearn.tree import DecisionTreeClassifier

from sklambda.manifest import json_schema, parse_manifest, read_manifest
from sklambda.model import load
from sklambda_tools import package
from sklambda_tools.errors import GateFailed, PackagingError
from sklambda_tools.evaluate import (
    CLASSIFICATION_METRICS,
    holdout_metrics,
    read_gate,
    unavailable_metrics,
)
from sklambda_tools.package import Packaged, build, handles_missing, load_pipeline, main

from pipelines import FEATURES, preprocessor
from support import PENGUINS_DIR

RUNNING = sklearn.__version__
OLD = "1.5.2"


def dump_as(pipeline: Any, path: Path, version: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Save ``pipeline`` as scikit-learn ``version`` would have: every estimator's pickled
    state says ``_sklearn_version = version``."""
    original = BaseEstimator.__getstate__

    def stamped(self: BaseEstimator) -> dict[str, Any]:
        state = original(self)
        return {**state, "_sklearn_version": version} if "_sklearn_version" in state else state

    with monkeypatch.context() as patched:
        patched.setattr(BaseEstimator, "__getstate__", stamped)
        joblib.dump(pipeline, path)
    return path


def no_gaps(frame: pd.DataFrame) -> pd.DataFrame:
    """The synthetic customers without a missing income or city."""
    out = frame.copy()
    out["income"] = out["income"].fillna(50.0)
    out["city"] = out["city"].fillna("north")
    return out


# --- 1. versions ----------------------------------------------------------------------------


@pytest.fixture
def cli_files(
    fitted: dict[str, Pipeline],
    holdout_frame: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Path]:
    holdout = tmp_path / "holdout.csv"
    holdout_frame.to_csv(holdout, index=False)
    current = tmp_path / "current.joblib"
    joblib.dump(fitted["binary"], current)
    return {
        "holdout": holdout,
        "current": current,
        "old": dump_as(fitted["binary"], tmp_path / "old.joblib", OLD, monkeypatch),
    }


def package_cli(files: dict[str, Path], model: str, out: Path, *extra: str) -> int:
    return main(
        [
            "--model",
            str(files[model]),
            "--data",
            str(files["holdout"]),
            "--target",
            "churn",
            "--out",
            str(out),
            *extra,
        ]
    )


def test_the_pickle_says_which_version_made_it(cli_files: dict[str, Path]) -> None:
    assert load_pipeline(cli_files["old"])[1] == {"scikit-learn": OLD}
    assert load_pipeline(cli_files["current"])[1] == {"scikit-learn": RUNNING}


def test_a_pickle_of_another_version_is_refused_with_both_versions_and_the_fix(
    cli_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a pipeline pickled by scikit-learn 1.5.2, when it is packaged under the serving one
    out = tmp_path / "old"
    code = package_cli(cli_files, "old", out)
    # Then it is refused (exit 2), naming both versions and both ways out, and nothing is written
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"pickled with scikit-learn {OLD}" in err
    assert f"serving uses scikit-learn {RUNNING}" in err
    assert "layers/sklearn/requirements.txt" in err
    assert f"Re-fit and re-save the pipeline under scikit-learn {RUNNING}" in err
    assert "--accept-version-mismatch" in err and "Traceback" not in err
    assert not (out / "model.json").exists()


def test_an_accepted_mismatch_is_re_recorded_and_keeps_what_the_pickle_said(
    cli_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the same old pickle, when the packager accepts the mismatch
    out = tmp_path / "old"
    code = package_cli(cli_files, "old", out, "--accept-version-mismatch")
    err = capsys.readouterr().err
    assert code == 0, err
    # Then the manifest shows both: the serving versions and what the pickle said
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["libraries"]["scikit-learn"] == RUNNING
    assert manifest["pickled_with"] == {"scikit-learn": OLD}
    assert f"pickled with scikit-learn {OLD}: packaged anyway" in err
    # And model.joblib was saved again under the serving version: it loads without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        assert load(out, runtime="sklearn").runtime == "sklearn"


def test_an_accepted_mismatch_still_needs_the_gate(
    cli_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gate = tmp_path / "gate.toml"
    gate.write_text("[thresholds]\naccuracy = { min = 0.99 }\n")
    code = package_cli(
        cli_files, "old", tmp_path / "o", "--accept-version-mismatch", "--gate", str(gate)
    )
    assert code == 1 and "validation gate failed" in capsys.readouterr().err


def test_a_pickle_of_the_serving_version_records_it(
    cli_files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "current"
    assert package_cli(cli_files, "current", out) == 0
    assert read_manifest(out).pickled_with == {"scikit-learn": RUNNING}


def test_packaging_under_another_version_than_the_layer_is_refused(
    fitted: dict[str, Pipeline],
    holdout_frame: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = tmp_path / "requirements.txt"
    layer.write_text("numpy==2.4.6\nscikit-learn==9.9.9\n")
    monkeypatch.setattr(package, "SKLEARN_LAYER", layer)
    with pytest.raises(PackagingError) as caught:
        build(fitted["binary"], holdout_frame, "churn", tmp_path / "x", name="x")
    message = str(caught.value)
    assert f"packaging runs scikit-learn {RUNNING}" in message
    assert "serving uses scikit-learn 9.9.9" in message and "scikit-learn==9.9.9" in message


def _double(x: Any) -> Any:
    return x * 2


def test_another_python_than_lambdas_is_a_warning_not_a_refusal(
    fitted: dict[str, Pipeline],
    train_frame: pd.DataFrame,
    holdout_frame: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    platform_mk = tmp_path / "platform.mk"
    monkeypatch.setattr(package, "PLATFORM", platform_mk)
    # Given a Lambda Python that is not this one
    platform_mk.write_text("LAMBDA_RUNTIME := python3.99\nLAMBDA_PYTHON := 3.99\n")
    result = build(fitted["binary"], holdout_frame, "churn", tmp_path / "a", name="a")
    # Then the package is made, with a warning that says why that is fine
    (note,) = result.notes
    assert "the Lambda functions Python 3.99" in note and "not refused" in note
    assert "loads across Python minor versions" in note and "code of your own" not in note
    assert result.manifest.libraries["python"].startswith(
        f"{sys.version_info.major}.{sys.version_info.minor}."
    )
    # And a pipeline that refers to code of its own says that this code must be importable
    own = Pipeline([("double", FunctionTransformer(_double)), ("m", LogisticRegression())]).fit(
        train_frame[["age"]], train_frame["churn"]
    )
    (note,) = build(own, holdout_frame, "churn", tmp_path / "b", name="b").notes
    assert "code of your own (test_package_truth._double)" in note
    # Given the same Python on both sides, there is nothing to say
    here = sys.version_info
    platform_mk.write_text(f"LAMBDA_PYTHON := {here.major}.{here.minor}\n")
    assert build(fitted["binary"], holdout_frame, "churn", tmp_path / "c", name="c").notes == ()


def test_older_manifests_without_pickled_with_still_read() -> None:
    data = json.loads((PENGUINS_DIR / "model.json").read_text())
    data.pop("pickled_with", None)
    assert parse_manifest(data).pickled_with is None
    schema = json_schema()
    assert "pickled_with" in schema["properties"] and "pickled_with" not in schema["required"]


# --- 2. nullable follows the pipeline -----------------------------------------------------------


def _frame(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "c": rng.normal(size=n),
            "d": rng.choice(["x", "y"], n).astype(object),
            "e": rng.normal(size=n),
            "y": np.arange(n) % 2,
        }
    )


def _fit(pipeline: Any, frame: pd.DataFrame, columns: list[str]) -> Any:
    return pipeline.fit(frame[columns], frame["y"])


def test_the_walk_follows_selectors_steps_and_the_remainder() -> None:
    frame = _frame()
    columns = ["a", "b", "c", "d", "e"]
    pipeline = _fit(
        Pipeline(
            [
                (
                    "pre",
                    ColumnTransformer(
                        [
                            ("imputed", SimpleImputer(), ["a"]),
                            # NaN goes through the scaler, then the imputer fills it in
                            (
                                "scaled",
                                Pipeline([("s", StandardScaler()), ("i", KNNImputer())]),
                                [1],
                            ),
                            ("raw", "passthrough", [False, False, True, False, False]),
                            ("cat", OneHotEncoder(handle_unknown="ignore"), ["d"]),
                        ],
                        remainder="drop",  # e: never looked at
                    ),
                ),
                ("m", LogisticRegression()),
            ]
        ),
        frame,
        columns,
    )
    assert handles_missing(pipeline, columns) == {
        "a": True,
        "b": True,
        "c": False,  # passed through to the logistic regression, which fails on NaN
        "d": False,  # the encoder never saw a missing city: it would be an unknown category
        "e": True,
    }


@pytest.mark.parametrize(
    ("columns_spec", "remainder", "expected"),
    [
        (slice("a", "b"), "passthrough", {"a": True, "b": True, "c": False}),
        (slice(0, 1), IterativeImputer(), {"a": True, "b": True, "c": True}),
        ([-1], "passthrough", {"a": False, "b": False, "c": True}),
        (np.array([True, False, True]), "drop", {"a": True, "b": True, "c": True}),
    ],
)
def test_every_kind_of_column_selector_is_followed(
    columns_spec: Any, remainder: Any, expected: dict[str, bool]
) -> None:
    frame = _frame()
    pipeline = _fit(
        Pipeline(
            [
                (
                    "pre",
                    ColumnTransformer([("i", SimpleImputer(), columns_spec)], remainder=remainder),
                ),
                ("m", LogisticRegression()),
            ]
        ),
        frame,
        ["a", "b", "c"],
    )
    assert handles_missing(pipeline, ["a", "b", "c"]) == expected


def test_estimators_that_take_nan_and_encoders_with_a_missing_category() -> None:
    frame = _frame()
    frame.loc[::7, "d"] = np.nan  # the encoders see a missing category
    # An estimator that handles NaN itself, alone or behind a passthrough
    hgb = _fit(HistGradientBoostingClassifier(max_iter=5), frame, ["a", "b"])
    assert handles_missing(hgb, ["a", "b"]) == {"a": True, "b": True}
    # OrdinalEncoder keeps NaN as NaN (its encoded_missing_value): fine for the boosting model
    ordinal_hgb = _fit(
        Pipeline(
            [
                (
                    "pre",
                    ColumnTransformer([("o", OrdinalEncoder(), ["d"])], remainder="passthrough"),
                ),
                ("m", HistGradientBoostingClassifier(max_iter=5)),
            ]
        ),
        frame,
        ["a", "d"],
    )
    assert handles_missing(ordinal_hgb, ["a", "d"]) == {"a": True, "d": True}
    # ... and a logistic regression behind it gets a number when it encodes missing as -1
    ordinal_lr = _fit(
        Pipeline(
            [
                (
                    "pre",
                    ColumnTransformer([("o", OrdinalEncoder(encoded_missing_value=-1), ["d"])]),
                ),
                ("m", LogisticRegression()),
            ]
        ),
        frame,
        ["d"],
    )
    assert handles_missing(ordinal_lr, ["d"]) == {"d": True}
    onehot = _fit(Pipeline([("o", OneHotEncoder()), ("m", LogisticRegression())]), frame, ["d"])
    assert handles_missing(onehot, ["d"]) == {"d": True}
    # An imputer of another marker than NaN does not fill in what serving passes for missing
    sentinel = _fit(
        Pipeline([("i", SimpleImputer(missing_values=-1.0)), ("m", LogisticRegression())]),
        frame,
        ["a"],
    )
    assert handles_missing(sentinel, ["a"]) == {"a": False}
    # A selector that keeps NaN: the dropped column is never looked at, the kept one goes on
    constant = frame.assign(e=1.0)
    selected = _fit(
        Pipeline([("v", VarianceThreshold()), ("m", HistGradientBoostingClassifier(max_iter=5))]),
        constant,
        ["a", "e"],
    )
    assert handles_missing(selected, ["a", "e"]) == {"a": True, "e": True}


def test_an_imputed_feature_is_nullable_without_a_gap_in_training_and_onnx_checks_it(
    train_frame: pd.DataFrame, holdout_frame: pd.DataFrame, tmp_path: Path
) -> None:
    # Given a pipeline that imputes age and income, fitted on data without a missing value
    train, holdout = no_gaps(train_frame), no_gaps(holdout_frame)
    pipeline = Pipeline([("pre", preprocessor()), ("m", LogisticRegression())]).fit(
        train[FEATURES], train["churn"]
    )
    result = build(pipeline, holdout, "churn", tmp_path / "m", name="m", train=train)
    nullable = {f.name: f.nullable for f in result.manifest.features}
    # Then the imputed features are nullable; the others are not
    assert nullable == {"age": True, "income": True, "city": False, "member": False}
    # And the ONNX export still serves: its parity covered a row with each of them missing
    info = result.manifest.runtime.onnx
    assert result.manifest.runtime.serving == "onnx", result.manifest.runtime.reason
    assert info is not None and info.parity.passed
    # on each of the first 50 holdout rows: age missing, income missing, both, an unseen city
    assert info.parity.probes >= 50 * 4
    # And both runtimes score a row without them like the pipeline does
    row = {"age": None, "income": None, "city": "north", "member": True}
    expected = pipeline.predict_proba(
        pd.DataFrame([{**row, "age": np.nan, "income": np.nan}])[FEATURES]
    )
    for runtime in ("onnx", "sklearn"):
        got = load(result.path, runtime=runtime).predict_proba([row])
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_a_boosting_model_without_gaps_in_training_is_nullable_and_served_by_onnx(
    train_frame: pd.DataFrame, holdout_frame: pd.DataFrame, tmp_path: Path
) -> None:
    train, holdout = no_gaps(train_frame), no_gaps(holdout_frame)
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(
        train[["age", "income"]], train["churn"]
    )
    result = build(model, holdout, "churn", tmp_path / "hgb", name="hgb", train=train)
    assert all(f.nullable for f in result.manifest.features)
    assert result.manifest.runtime.serving == "onnx", result.manifest.runtime.reason
    assert result.manifest.runtime.onnx is not None
    # on each of the first 50 holdout rows: age missing, income missing, both
    assert result.manifest.runtime.onnx.parity.probes >= 50 * 3


def test_a_tree_keeps_the_onnx_runtime_rather_than_a_nullability_the_export_cannot_match(
    train_frame: pd.DataFrame, holdout_frame: pd.DataFrame, tmp_path: Path
) -> None:
    # Given a bare tree fitted without a missing value: scikit-learn scores one (down the larger
    # branch), but skl2onnx's tree does not follow that branch
    train, holdout = no_gaps(train_frame), no_gaps(holdout_frame)
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(
        train[["age", "income"]], train["churn"]
    )
    assert handles_missing(tree, ["age", "income"]) == {"age": True, "income": True}
    # When it is packaged, Then it keeps the onnx runtime, and those features are not nullable
    result = build(tree, holdout, "churn", tmp_path / "a", name="a", train=train)
    assert result.manifest.runtime.serving == "onnx", result.manifest.runtime.reason
    assert [f.nullable for f in result.manifest.features] == [False, False]
    assert any(
        n.startswith("age, income: the pipeline handles a missing value there, but the ONNX")
        and "--nullable age,income keeps them nullable" in n
        for n in result.notes
    )
    # But asked for, nullability wins, and the sklearn runtime serves it
    forced = build(
        tree, holdout, "churn", tmp_path / "b", name="b", train=train, nullable=["age", "income"]
    )
    assert [f.nullable for f in forced.manifest.features] == [True, True]
    assert forced.manifest.runtime.serving == "sklearn"
    assert forced.manifest.runtime.onnx is None  # no graph agreed with the pipeline
    # And so it does when the packager chose the sklearn runtime anyway
    chosen = build(tree, holdout, "churn", tmp_path / "c", name="c", train=train, runtime="sklearn")
    assert [f.nullable for f in chosen.manifest.features] == [True, True]


class _Overconfident(LogisticRegression):
    """Says it accepts NaN (its tags), and does not."""

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def test_a_feature_the_pipeline_only_seems_to_handle_is_not_nullable(
    train_frame: pd.DataFrame, holdout_frame: pd.DataFrame, tmp_path: Path
) -> None:
    train, holdout = no_gaps(train_frame), no_gaps(holdout_frame)
    model = _Overconfident().fit(train[["age"]], train["churn"])
    assert handles_missing(model, ["age"]) == {"age": True}  # the walk believes the tags
    result = build(model, holdout, "churn", tmp_path / "x", name="x", train=train)
    # but a row with age missing does not score: not nullable, and the packager is told
    assert [f.nullable for f in result.manifest.features] == [False]
    assert any("age: the pipeline looked as though" in n for n in result.notes)


@pytest.fixture
def gapless_files(
    train_frame: pd.DataFrame, holdout_frame: pd.DataFrame, tmp_path: Path
) -> dict[str, Path]:
    train, holdout = no_gaps(train_frame), no_gaps(holdout_frame)
    pipeline = Pipeline([("pre", preprocessor()), ("m", LogisticRegression())]).fit(
        train[FEATURES], train["churn"]
    )
    files = {
        "model": tmp_path / "m.joblib",
        "holdout": tmp_path / "h.csv",
        "gappy": tmp_path / "g.csv",
    }
    joblib.dump(pipeline, files["model"])
    holdout.to_csv(files["holdout"], index=False)
    holdout_frame.to_csv(files["gappy"], index=False)
    return files


def _nullable_cli(files: dict[str, Path], out: Path, *extra: str, data: str = "holdout") -> int:
    return main(
        [
            "--model",
            str(files["model"]),
            "--data",
            str(files[data]),
            "--target",
            "churn",
            "--out",
            str(out),
            *extra,
        ]
    )


def test_the_packager_overrides_nullability(
    gapless_files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # city's encoder ignores an unknown category (a missing city scores as all zeros): the
    # packager may say that is what a missing city should do; age must always be given
    out = tmp_path / "o"
    code = _nullable_cli(gapless_files, out, "--nullable", "city", "--not-nullable", "age")
    assert code == 0, capsys.readouterr().err
    nullable = {f.name: f.nullable for f in read_manifest(out).features}
    assert nullable == {"age": False, "income": True, "city": True, "member": False}
    model = load(out)
    assert model.predict([{"age": 40, "income": None, "city": None, "member": True}]).shape == (1,)
    assert [
        e.reason
        for e in model.schema.validate(
            [{"age": None, "income": 1.0, "city": "north", "member": True}]
        ).errors
    ] == ["must not be null"]
    # a comma-separated list is the same as the flag given twice
    assert package._names(["a,b", " c ", ""]) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("extra", "data", "message"),
    [
        (
            ["--nullable", "member"],
            "holdout",
            "--nullable member: the pipeline cannot score a row with member missing (ValueError: ",
        ),
        (
            ["--nullable", "age,height"],
            "holdout",
            "--nullable: the pipeline has no feature 'height'",
        ),
        (["--nullable", "age", "--not-nullable", "age"], "holdout", "age: both --nullable and"),
        (
            ["--not-nullable", "income"],
            "gappy",
            "--not-nullable income: 13 holdout rows without income",
        ),
    ],
)
def test_an_override_the_pipeline_or_the_data_contradicts_is_refused(
    gapless_files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    data: str,
    message: str,
) -> None:
    assert _nullable_cli(gapless_files, tmp_path / "o", *extra, data=data) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# --- 3. ranking metrics ------------------------------------------------------------------------


def _proba(pipeline: Pipeline, frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(pipeline.predict_proba(frame[FEATURES]))


def test_binary_roc_auc_and_average_precision_rank_by_the_second_class(
    packaged: dict[str, Packaged], fitted: dict[str, Pipeline], holdout_frame: pd.DataFrame
) -> None:
    values = packaged["binary"].manifest.metrics.values
    proba = _proba(fitted["binary"], holdout_frame)
    positive = holdout_frame["churn"].to_numpy() == fitted["binary"].classes_[1]  # "yes"
    assert values["roc_auc"] == pytest.approx(skm.roc_auc_score(positive, proba[:, 1]), abs=1e-6)
    assert values["average_precision"] == pytest.approx(
        skm.average_precision_score(positive, proba[:, 1]), abs=1e-6
    )
    assert 0.5 < values["roc_auc"] < 1.0


def test_multiclass_ranking_metrics_are_one_vs_rest_macro(
    packaged: dict[str, Packaged], fitted: dict[str, Pipeline], holdout_frame: pd.DataFrame
) -> None:
    values = packaged["multiclass"].manifest.metrics.values
    proba = _proba(fitted["multiclass"], holdout_frame)
    y = holdout_frame["tier"].to_numpy()
    classes = fitted["multiclass"].classes_
    assert values["roc_auc"] == pytest.approx(
        skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes),
        abs=1e-6,
    )
    assert values["average_precision"] == pytest.approx(
        skm.average_precision_score(label_binarize(y, classes=classes), proba, average="macro"),
        abs=1e-6,
    )


def test_without_predict_proba_there_is_no_ranking_metric_and_a_gate_on_one_says_why(
    packaged: dict[str, Packaged],
    fitted: dict[str, Pipeline],
    holdout_frame: pd.DataFrame,
    tmp_path: Path,
) -> None:
    for name in ("binary_no_proba", "multiclass_no_proba"):  # RidgeClassifier, LinearSVC
        assert not {"roc_auc", "average_precision"} & set(packaged[name].manifest.metrics.values)
    with pytest.raises(
        PackagingError, match=r"roc_auc cannot be computed here \(roc_auc needs predict_proba\)"
    ):
        build(
            fitted["multiclass_no_proba"],
            holdout_frame,
            "tier",
            tmp_path / "x",
            name="x",
            gate={"roc_auc": ("min", 0.5)},
        )


def test_a_holdout_without_every_class_omits_the_ranking_metrics(
    fitted: dict[str, Pipeline], holdout_frame: pd.DataFrame, tmp_path: Path
) -> None:
    # Given a holdout with no row of tier 2
    holdout = holdout_frame[holdout_frame["tier"] != 2]
    proba = _proba(fitted["multiclass"], holdout)
    y = holdout["tier"].to_numpy()
    metrics = holdout_metrics(
        "classification", y, fitted["multiclass"].predict(holdout[FEATURES]), proba, [0, 1, 2]
    )
    # Then log loss is there, the ranking metrics are not, and the reason names the class
    assert "log_loss" in metrics.values
    assert not {"roc_auc", "average_precision"} & set(metrics.values)
    why = unavailable_metrics("classification", y, proba, [0, 1, 2])
    assert why["roc_auc"] == "roc_auc needs every class in the holdout, and it has no rows of 2"
    with pytest.raises(PackagingError, match="average_precision needs every class in the holdout"):
        build(
            fitted["multiclass"],
            holdout,
            "tier",
            tmp_path / "x",
            name="x",
            gate={"average_precision": ("min", 0.5)},
        )


def test_a_gate_on_roc_auc_passes_and_fails(
    fitted: dict[str, Pipeline], holdout_frame: pd.DataFrame, tmp_path: Path
) -> None:
    gate_file = tmp_path / "gate.toml"
    gate_file.write_text(
        "[thresholds]\nroc_auc = { min = 0.8 }\naverage_precision = { min = 0.8 }\n"
    )
    gate = read_gate(gate_file)
    passed = build(fitted["binary"], holdout_frame, "churn", tmp_path / "a", name="a", gate=gate)
    assert [(c.metric, c.passed) for c in passed.manifest.gate.checks] == [
        ("roc_auc", True),
        ("average_precision", True),
    ]
    with pytest.raises(GateFailed, match=r"roc_auc = 0\.8\d+ is below the minimum 0\.9900"):
        build(
            fitted["binary"],
            holdout_frame,
            "churn",
            tmp_path / "b",
            name="b",
            gate={"roc_auc": ("min", 0.99)},
        )
    assert not (tmp_path / "b").exists()


def test_ranking_metrics_are_classification_gate_metrics_only(
    fitted: dict[str, Pipeline], holdout_frame: pd.DataFrame, tmp_path: Path
) -> None:
    assert {"roc_auc", "average_precision"} <= set(CLASSIFICATION_METRICS)
    assert unavailable_metrics("regression", np.zeros(3), None, None) == {}
    with pytest.raises(PackagingError, match="unknown metric 'roc_auc' for regression"):
        build(
            fitted["regressor"],
            holdout_frame,
            "spend",
            tmp_path / "x",
            name="x",
            gate={"roc_auc": ("min", 0.5)},
        )
