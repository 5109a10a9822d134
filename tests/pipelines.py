"""Small pipelines "fitted elsewhere" and the synthetic data they are fitted on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge, RidgeClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

FEATURES = ["age", "income", "city", "member"]


def synthetic_frame(n: int, seed: int) -> pd.DataFrame:
    """Customers with an integer, a numeric (with gaps), a categorical (with gaps) and a
    boolean feature, and three targets: churn (binary), tier (multiclass, int), spend."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    income = rng.normal(50, 15, n)
    income[rng.random(n) < 0.05] = np.nan
    city = rng.choice(["north", "south", "east"], n).astype(object)
    city[rng.random(n) < 0.05] = np.nan
    member = rng.random(n) < 0.4
    score = (
        0.04 * age
        + 0.05 * np.nan_to_num(income, nan=50)
        + (city == "north") * 1.5
        + member * 1.0
        + rng.normal(0, 1, n)
    )
    frame = pd.DataFrame({"age": age, "income": income, "city": city, "member": member})
    frame["churn"] = np.where(score > np.median(score), "yes", "no")
    frame["tier"] = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    frame["spend"] = score * 10
    return frame


def preprocessor(*, unseen: str = "ignore", transform_age: bool = False) -> ColumnTransformer:
    numeric: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
    if transform_age:
        numeric.append(("abs", FunctionTransformer(np.abs)))  # skl2onnx cannot convert this
    numeric.append(("scale", StandardScaler()))
    return ColumnTransformer(
        [
            ("num", Pipeline(numeric), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown=unseen), ["city"]),
            ("flag", "passthrough", ["member"]),
        ]
    )


# name -> (pipeline factory, target, serving runtime expected)
CASES: dict[str, tuple[Callable[[], Pipeline], str, str]] = {
    "binary": (
        lambda: Pipeline([("pre", preprocessor()), ("m", LogisticRegression())]),
        "churn",
        "onnx",
    ),
    "binary_no_proba": (
        lambda: Pipeline([("pre", preprocessor()), ("m", RidgeClassifier())]),
        "churn",
        "onnx",
    ),
    "multiclass": (
        lambda: Pipeline([("pre", preprocessor()), ("m", LogisticRegression())]),
        "tier",
        "onnx",
    ),
    "multiclass_no_proba": (
        lambda: Pipeline([("pre", preprocessor()), ("m", LinearSVC())]),
        "tier",
        "onnx",
    ),
    "regressor": (lambda: Pipeline([("pre", preprocessor()), ("m", Ridge())]), "spend", "onnx"),
    "forest_regressor": (
        lambda: Pipeline(
            [("pre", preprocessor()), ("m", RandomForestRegressor(n_estimators=10, random_state=0))]
        ),
        "spend",
        "onnx",
    ),
    "unconvertible": (
        lambda: Pipeline([("pre", preprocessor(transform_age=True)), ("m", LogisticRegression())]),
        "churn",
        "sklearn",
    ),
}


def records(frame: pd.DataFrame, features: list[str] = FEATURES) -> list[dict[str, Any]]:
    out = []
    for row in frame[features].to_dict("records"):
        out.append(
            {
                k: (None if isinstance(v, float) and np.isnan(v) else _plain(v))
                for k, v in row.items()
            }
        )
    return out


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
