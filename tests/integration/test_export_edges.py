"""Pipelines whose ONNX graph could pass a thin parity check and still answer differently at
serving time. Each packaged model is scored by both runtimes on rows the holdout does not hold;
where the onnx runtime serves, it must give the pipeline's answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from sklambda.errors import InvalidInput
from sklambda.model import load
from sklambda.scoring import predict_all, score_records
from sklambda_tools.errors import PackagingError
from sklambda_tools.package import build

ANY_GATE = {"accuracy": ("min", 0.0)}


def _same_answers(model_dir: Path, rows: list[dict[str, Any]]) -> None:
    """The onnx runtime (when the model has it) answers every row as the pipeline does."""
    reference = score_records(load(model_dir, "sklearn"), rows)
    if load(model_dir).runtime != "onnx":
        return
    got = score_records(load(model_dir, "onnx"), rows)
    assert got.rows == reference.rows
    for mine, theirs in zip(got.predictions(), reference.predictions(), strict=True):
        assert mine["label"] == theirs["label"], (mine, theirs)
        for label, p in theirs.get("probabilities", {}).items():
            assert abs(mine["probabilities"][label] - p) <= 1e-5, (mine, theirs)


def test_a_forest_sends_a_missing_value_where_scikit_learn_does(tmp_path: Path) -> None:
    # Given a forest fitted without gaps, and a holdout whose first row never meets the split
    # on the feature that will be missing
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 600), rng.normal(-0.5, 1, 600)
    frame = pd.DataFrame({"a": a, "b": b, "y": np.where((a > 0) & (b > 0), "yes", "no")})
    train, holdout = frame[:400], frame[400:]
    holdout = pd.concat([holdout[holdout.a < 0].head(1), holdout]).reset_index(drop=True)
    forest = RandomForestClassifier(
        n_estimators=5, max_features=None, bootstrap=False, random_state=0
    ).fit(train[["a", "b"]], train.y)
    path = build(forest, holdout, "y", tmp_path / "m", name="m", gate=ANY_GATE).path
    # Then rows with a value missing (where the schema lets them in) get the pipeline's answer
    manifest = load(path).manifest
    rows = []
    for f in manifest.features:
        if f.nullable:
            other = next(g.name for g in manifest.features if g.name != f.name)
            rows += [{f.name: None, other: float(v)} for v in np.linspace(-2, 2, 41)]
    rows += [{"a": float(v), "b": float(w)} for v, w in zip(a[:50], b[:50], strict=True)]
    _same_answers(path, rows)


def test_a_tree_alone_compares_float32_inputs_as_scikit_learn_does(tmp_path: Path) -> None:
    # Given a forest on integers large enough that float32 steps are 128 apart (epoch seconds)
    rng = np.random.default_rng(0)
    ts, cents = rng.integers(1_700_000_000, 1_700_100_000, 1000), rng.integers(0, 10**7, 1000)
    score = (ts - 1_700_050_000) / 50_000 + (cents - 5e6) / 5e6 + rng.normal(0, 0.3, 1000)
    frame = pd.DataFrame({"ts": ts, "cents": cents, "y": np.where(score > 0, "fraud", "ok")})
    forest = RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(
        frame[:700][["ts", "cents"]], frame[:700].y
    )
    path = build(forest, frame[700:800], "y", tmp_path / "m", name="m", gate=ANY_GATE).path
    stamps, amounts = rng.integers(1_700_000_000, 1_700_100_000, 3000), rng.integers(0, 10**7, 3000)
    fresh = zip(stamps, amounts, strict=True)
    _same_answers(path, [{"ts": int(t), "cents": int(c)} for t, c in fresh])


def _mixed(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "num": rng.normal(0, 1, rows),
            "cat": rng.choice(["x", "y", "z"], rows).astype(object),
            "k": rng.integers(0, 4, rows).astype(float),
        }
    )
    frame["y"] = np.where(frame.num + (frame.cat == "x") + 0.3 * frame.k > 1, "yes", "no")
    return frame


@pytest.mark.parametrize("missing_in_training", [True, False])
def test_a_client_sending_the_string_nan_gets_the_pipelines_answer(
    tmp_path: Path, missing_in_training: bool
) -> None:
    # Given an encoder that scores unseen categories (and, fitted with gaps, knows a missing
    # one): the graph reads a missing category as the string "nan"
    rng = np.random.default_rng(3)
    frame = _mixed(rng, 500)
    if missing_in_training:
        frame.loc[rng.random(500) < 0.1, "cat"] = np.nan
    pipeline = Pipeline(
        [
            (
                "ct",
                ColumnTransformer(
                    [
                        ("c", OneHotEncoder(handle_unknown="ignore"), ["cat"]),
                        ("n", StandardScaler(), ["num", "k"]),
                    ]
                ),
            ),
            ("m", LogisticRegression()),
        ]
    ).fit(frame[:350][["num", "cat", "k"]], frame[:350].y)
    path = build(pipeline, frame[350:], "y", tmp_path / "m", name="m", gate=ANY_GATE).path
    # When a client sends "nan" (or "NaN", or another unseen word) as the category
    rows = [{"num": 0.5, "cat": word, "k": 1.0} for word in ("nan", "NaN", "w", "x")]
    _same_answers(path, rows)


def test_a_number_an_encoder_reads_as_a_category_is_not_rounded(tmp_path: Path) -> None:
    # Given a one-hot encoder on a float column of whole numbers (the graph would cast them to
    # integers, so 2.5 would read as category 2)
    rng = np.random.default_rng(4)
    frame = _mixed(rng, 500)
    pipeline = Pipeline(
        [
            (
                "ct",
                ColumnTransformer(
                    [
                        ("c", OneHotEncoder(handle_unknown="ignore"), ["cat", "k"]),
                        ("n", StandardScaler(), ["num"]),
                    ]
                ),
            ),
            ("m", LogisticRegression()),
        ]
    ).fit(frame[:350][["num", "cat", "k"]], frame[:350].y)
    path = build(pipeline, frame[350:], "y", tmp_path / "m", name="m", gate=ANY_GATE).path
    _same_answers(path, [{"num": 0.1, "cat": "x", "k": k} for k in (0.0, 1.9, 2.0, 2.5, 3.0)])


def test_a_tree_model_refuses_numbers_float32_cannot_hold_on_either_runtime(
    tmp_path: Path,
) -> None:
    # Given a tree model (scikit-learn casts its input to float32 and fails beyond it)
    rng = np.random.default_rng(5)
    frame = _mixed(rng, 400)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(
        frame[:300][["num", "k"]], frame[:300].y
    )
    path = build(forest, frame[300:], "y", tmp_path / "m", name="m", gate=ANY_GATE).path
    assert load(path).manifest.runtime.float32_inputs
    for runtime in ("onnx", "sklearn"):
        model = load(path, runtime)
        with pytest.raises(InvalidInput) as caught:
            predict_all(model, [{"num": 1e39, "k": 1.0}])
        assert [e.reason for e in caught.value.errors] == ["number out of range"]


def test_a_pipeline_that_cannot_score_an_accepted_row_is_refused_with_its_reason(
    tmp_path: Path,
) -> None:
    # Given an encoder that turns an unseen category into NaN, before a model that refuses NaN
    rng = np.random.default_rng(6)
    frame = _mixed(rng, 300)
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
    pipeline = Pipeline(
        [
            ("ct", ColumnTransformer([("c", encoder, ["cat"]), ("n", "passthrough", ["num"])])),
            ("m", LogisticRegression()),
        ]
    ).fit(frame[:200][["num", "cat"]], frame[:200].y)
    # Then packaging says which row it cannot score and what to change, not a traceback
    with pytest.raises(PackagingError, match=r"cannot score a row the schema accepts \(an unseen"):
        build(pipeline, frame[200:], "y", tmp_path / "m", name="m", gate=ANY_GATE)


def test_a_forest_with_fractional_leaves_keeps_its_small_probabilities(tmp_path: Path) -> None:
    # Given a leaf whose class share is a whole number only to 1e-4 (a rare, heavily weighted
    # class): snapping it to the whole number would move the probability past the tolerance
    x = np.r_[np.arange(0, 100, 1.0), [200.0, 200.0, 300.0, 300.0]]
    y = np.r_[["a"] * 100, ["a", "b", "b", "b"]]
    frame = pd.DataFrame({"x": x, "y": y})
    forest = RandomForestClassifier(
        n_estimators=1, bootstrap=False, class_weight={"a": 1, "b": 30000}, random_state=0
    ).fit(frame[["x"]], frame.y)
    holdout = frame.iloc[::3]
    path = build(forest, holdout, "y", tmp_path / "m", name="m", gate=ANY_GATE).path
    _same_answers(path, [{"x": 200.0}, {"x": 50.0}, {"x": 300.0}])
