"""A corpus of ordinary pipelines, made the way a user would make them, on data sets that ship
with scikit-learn (and palmerpenguins), to check that packaging serves each one.

The data keep their awkward column names (``mean radius``, ``sepal length (cm)``,
``od280/od315_of_diluted_wines``); a mixed data set adds dots, dashes, unicode, missing values
and categories. ``python -m sklambda_tools.examples.corpus`` packages every pipeline and prints
the runtime each one gets, with the reason.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import datasets
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
)
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

SEED = 0


@dataclass(frozen=True)
class Case:
    name: str
    data: str
    target: str
    make: Callable[[], Any]


@dataclass(frozen=True)
class Fitted:
    case: Case
    pipeline: Any
    train: pd.DataFrame
    holdout: pd.DataFrame


@cache
def dataset(name: str) -> pd.DataFrame:
    """One of the corpus's data sets as a frame, features and target."""
    if name in ("breast_cancer", "iris", "wine", "diabetes"):
        frame: pd.DataFrame = getattr(datasets, f"load_{name}")(as_frame=True).frame
        return frame
    if name == "penguins":
        import palmerpenguins

        return palmerpenguins.load_penguins().drop(columns=["year"]).dropna(subset=["species"])
    if name == "mixed":
        return _mixed()
    raise KeyError(name)


def _mixed(rows: int = 600) -> pd.DataFrame:
    """Customers: awkward names, numbers and categories, about 8% missing in three columns."""
    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame(
        {
            "age (years)": rng.integers(18, 80, rows).astype(float),
            "income.k": rng.normal(50, 15, rows),
            "plan-type": rng.choice(["basic", "plus", "pro"], rows).astype(object),
            "région": rng.choice(["nord", "sud", "est", "ouest"], rows).astype(object),
            "tenure": rng.integers(0, 120, rows),
        }
    )
    score = (
        0.03 * (frame["age (years)"] - 50)
        + 0.04 * (frame["income.k"] - 50)
        + (frame["plan-type"] == "pro") * 1.0
        - (frame["région"] == "sud") * 0.8
    )
    frame["churn"] = (score + rng.normal(0, 1, rows) > 0).astype(int)
    frame["spend"] = (
        2 * frame["income.k"] + (frame["plan-type"] == "pro") * 30 + rng.normal(0, 5, rows)
    )
    for column in ("income.k", "plan-type", "age (years)"):
        frame.loc[rng.random(rows) < 0.08, column] = np.nan
    return frame


MIXED_NUMBERS = ["age (years)", "income.k", "tenure"]
MIXED_CATEGORIES = ["plan-type", "région"]
PENGUIN_NUMBERS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
PENGUIN_CATEGORIES = ["island", "sex"]


def _columns(
    numbers: list[str], categories: list[str], encoder: Any, strategy: str = "most_frequent"
) -> ColumnTransformer:
    fill = {"fill_value": "missing"} if strategy == "constant" else {}
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numbers),
            ("cat", make_pipeline(SimpleImputer(strategy=strategy, **fill), encoder), categories),
        ]
    )


def _onehot() -> OneHotEncoder:
    return OneHotEncoder(handle_unknown="ignore")


def _ordinal() -> OrdinalEncoder:
    return OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)


def _mixed_columns(encoder: Any, strategy: str = "most_frequent") -> ColumnTransformer:
    return _columns(MIXED_NUMBERS, MIXED_CATEGORIES, encoder, strategy)


def _penguin_columns(encoder: Any) -> ColumnTransformer:
    return _columns(PENGUIN_NUMBERS, PENGUIN_CATEGORIES, encoder)


def _scaled(model: Any) -> Pipeline:
    return make_pipeline(StandardScaler(), model)


CASES = [
    # numeric data, names with spaces, brackets and slashes; bare estimators and scaled ones
    Case(
        "logistic-scaled",
        "breast_cancer",
        "target",
        lambda: _scaled(LogisticRegression(max_iter=5000)),
    ),
    Case(
        "tree-bare",
        "breast_cancer",
        "target",
        lambda: DecisionTreeClassifier(max_depth=5, random_state=SEED),
    ),
    Case(
        "forest-bare",
        "breast_cancer",
        "target",
        lambda: RandomForestClassifier(n_estimators=50, random_state=SEED),
    ),
    Case(
        "boosting-bare",
        "breast_cancer",
        "target",
        lambda: GradientBoostingClassifier(random_state=SEED),
    ),
    Case(
        "hist-boosting-bare",
        "breast_cancer",
        "target",
        lambda: HistGradientBoostingClassifier(random_state=SEED),
    ),
    Case(
        "svc-scaled",
        "breast_cancer",
        "target",
        lambda: _scaled(SVC(random_state=SEED)),
    ),
    Case(
        "linear-svc-scaled",
        "breast_cancer",
        "target",
        lambda: _scaled(LinearSVC(random_state=SEED)),
    ),
    Case("knn-scaled", "iris", "target", lambda: _scaled(KNeighborsClassifier())),
    Case("naive-bayes-bare", "iris", "target", GaussianNB),
    Case("logistic-bare", "iris", "target", lambda: LogisticRegression(max_iter=1000)),
    Case(
        "sgd-scaled",
        "wine",
        "target",
        lambda: _scaled(SGDClassifier(loss="log_loss", random_state=SEED)),
    ),
    Case(
        "forest-scaled",
        "wine",
        "target",
        lambda: _scaled(RandomForestClassifier(n_estimators=50, random_state=SEED)),
    ),
    Case(
        "extra-trees-bare",
        "wine",
        "target",
        lambda: ExtraTreesClassifier(n_estimators=50, random_state=SEED),
    ),
    Case("linear-bare", "diabetes", "target", LinearRegression),
    Case("ridge-scaled", "diabetes", "target", lambda: _scaled(Ridge())),
    Case(
        "tree-regressor-bare",
        "diabetes",
        "target",
        lambda: DecisionTreeRegressor(max_depth=4, random_state=SEED),
    ),
    Case(
        "forest-regressor-bare",
        "diabetes",
        "target",
        lambda: RandomForestRegressor(n_estimators=30, random_state=SEED),
    ),
    Case(
        "boosting-regressor-bare",
        "diabetes",
        "target",
        lambda: GradientBoostingRegressor(random_state=SEED),
    ),
    Case(
        "hist-boosting-regressor-bare",
        "diabetes",
        "target",
        lambda: HistGradientBoostingRegressor(random_state=SEED),
    ),
    Case("svr-scaled", "diabetes", "target", lambda: _scaled(SVR())),
    Case(
        "knn-regressor-minmax",
        "diabetes",
        "target",
        lambda: make_pipeline(MinMaxScaler(), KNeighborsRegressor()),
    ),
    # mixed data with missing values: column transformers, imputers, one-hot and ordinal encoders
    Case(
        "logistic-onehot",
        "mixed",
        "churn",
        lambda: make_pipeline(_mixed_columns(_onehot()), LogisticRegression(max_iter=1000)),
    ),
    Case(
        "forest-ordinal",
        "mixed",
        "churn",
        lambda: make_pipeline(
            _mixed_columns(_ordinal()), RandomForestClassifier(n_estimators=50, random_state=SEED)
        ),
    ),
    Case(
        "boosting-constant-imputer",
        "mixed",
        "churn",
        lambda: make_pipeline(
            _mixed_columns(_onehot(), "constant"), GradientBoostingClassifier(random_state=SEED)
        ),
    ),
    Case(
        "hist-boosting-ordinal",
        "mixed",
        "churn",
        lambda: make_pipeline(
            _mixed_columns(_ordinal()), HistGradientBoostingClassifier(random_state=SEED)
        ),
    ),
    Case(
        "ridge-onehot", "mixed", "spend", lambda: make_pipeline(_mixed_columns(_onehot()), Ridge())
    ),
    Case(
        "knn-onehot",
        "mixed",
        "churn",
        lambda: make_pipeline(_mixed_columns(_onehot()), KNeighborsClassifier()),
    ),
    # the Palmer penguins: real gaps in numbers and categories
    Case(
        "penguins-logistic-onehot",
        "penguins",
        "species",
        lambda: make_pipeline(_penguin_columns(_onehot()), LogisticRegression(max_iter=1000)),
    ),
    Case(
        "penguins-tree-ordinal",
        "penguins",
        "species",
        lambda: make_pipeline(
            _penguin_columns(_ordinal()), DecisionTreeClassifier(max_depth=4, random_state=SEED)
        ),
    ),
    Case(
        "penguins-forest-onehot",
        "penguins",
        "species",
        lambda: make_pipeline(
            _penguin_columns(_onehot()), RandomForestClassifier(n_estimators=40, random_state=SEED)
        ),
    ),
    Case(
        "penguins-lasso-onehot",
        "penguins",
        "body_mass_g",
        lambda: make_pipeline(
            _columns(PENGUIN_NUMBERS[:3], ["species", *PENGUIN_CATEGORIES], _onehot()),
            Lasso(alpha=1.0),
        ),
    ),
]


def fit(case: Case) -> Fitted:
    """Fit the case's pipeline on 70% of its data set; the other 30% is the holdout."""
    frame = dataset(case.data).dropna(subset=[case.target])
    features = frame.drop(columns=[case.target])
    if case.data == "mixed":
        features = features.drop(columns=["churn" if case.target == "spend" else "spend"])
    train_x, hold_x, train_y, hold_y = train_test_split(
        features, frame[case.target], test_size=0.3, random_state=SEED
    )
    pipeline = case.make().fit(train_x, train_y)
    return Fitted(
        case,
        pipeline,
        train_x.assign(**{case.target: train_y}),
        hold_x.assign(**{case.target: hold_y}),
    )


def fitted() -> Iterator[Fitted]:
    for case in CASES:
        yield fit(case)


def save(item: Fitted, out: Path) -> None:
    """Write what a user brings: the fitted pipeline (joblib) and the two CSV files."""
    import joblib

    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(item.pipeline, out / "pipeline.joblib")
    item.train.to_csv(out / "train.csv", index=False)
    item.holdout.to_csv(out / "holdout.csv", index=False)
    print(
        f"wrote {out}/pipeline.joblib, train.csv and holdout.csv "
        f"({item.case.name}: target {item.case.target!r})"
    )


def main(argv: list[str] | None = None) -> int:
    from sklambda_tools.package import build

    parser = argparse.ArgumentParser(prog="python -m sklambda_tools.examples.corpus")
    parser.add_argument("--reasons", action="store_true", help="print each fallback's reasons")
    parser.add_argument(
        "--save",
        metavar="NAME",
        choices=[c.name for c in CASES],
        help="only fit NAME and write pipeline.joblib, train.csv and holdout.csv to --out",
    )
    parser.add_argument("--out", type=Path, default=Path("out/corpus"))
    args = parser.parse_args(argv)
    if args.save:
        save(fit(next(c for c in CASES if c.name == args.save)), args.out)
        return 0
    onnx = 0
    print("| Pipeline | Data | Runtime | Packaging (s) |")
    print("|---|---|---|---|")
    reasons = []
    for item in fitted():
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as out:
            manifest = build(
                item.pipeline,
                item.holdout,
                item.case.target,
                out,
                name=item.case.name,
                train=item.train,
            ).manifest
        runtime = manifest.runtime.serving
        onnx += runtime == "onnx"
        seconds = time.perf_counter() - started
        print(f"| {item.case.name} | {item.case.data} | {runtime} | {seconds:.1f} |")
        if runtime != "onnx":
            reasons.append(f"{item.case.name}: {manifest.runtime.reason}")
    print(f"\n{onnx} of {len(CASES)} pipelines get the onnx runtime.")
    if args.reasons:
        print("\n" + "\n\n".join(reasons))
    return 0


if __name__ == "__main__":
    sys.exit(main())
