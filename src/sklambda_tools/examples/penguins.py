"""Train the example model: Palmer penguins species from measurements, island and sex.

``python -m sklambda_tools.examples.penguins --out models/penguins`` (``make model``) splits the
data 60/20/20 with a fixed seed into training, validation and test sets, picks the regularisation on
the validation set, fits on the training set and packages the pipeline with the test set as the
holdout, behind the gate in ``models/penguins/gate.toml``.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sklambda_tools import evaluate
from sklambda_tools.errors import PackagingError
from sklambda_tools.package import Packaged, build, summary

SEED = 20240607
TARGET = "species"
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
CATEGORICAL = ["island", "sex"]
FEATURES = ["island", *NUMERIC, "sex"]
C_GRID = (0.01, 0.1, 1.0, 10.0)
DESCRIPTION = (
    "Predicts a penguin's species (Adelie, Chinstrap, Gentoo) from its island, bill, flipper, "
    "body mass and sex. Trained on the Palmer penguins data (palmerpenguins package, 344 birds "
    "from three islands of the Palmer Archipelago, 2007-2009); not meant for other populations."
)


@dataclass(frozen=True)
class Splits:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def load_frame() -> pd.DataFrame:
    """The data set with the model's features and target; categories as plain objects."""
    import palmerpenguins

    df = palmerpenguins.load_penguins()[[*FEATURES, TARGET]]
    for col in [*CATEGORICAL, TARGET]:
        df[col] = df[col].astype(object).where(df[col].notna(), np.nan)
    return df


def split(df: pd.DataFrame, seed: int = SEED) -> Splits:
    train, rest = train_test_split(df, test_size=0.4, random_state=seed, stratify=df[TARGET])
    validation, test = train_test_split(
        rest, test_size=0.5, random_state=seed, stratify=rest[TARGET]
    )
    return Splits(
        train.reset_index(drop=True), validation.reset_index(drop=True), test.reset_index(drop=True)
    )


def make_pipeline(c: float) -> Pipeline:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    # Missing categories stay a category of their own (the encoder learns NaN), and unseen ones
    # encode as all zeros, so a new island does not fail a request.
    categorical = OneHotEncoder(handle_unknown="ignore")
    pre = ColumnTransformer([("num", numeric, NUMERIC), ("cat", categorical, CATEGORICAL)])
    return Pipeline([("pre", pre), ("clf", LogisticRegression(C=c, max_iter=2000))])


def train(splits: Splits) -> Pipeline:
    """Pick C by validation log loss, then fit on the training set."""
    best: tuple[float, float] | None = None
    for c in C_GRID:
        pipe = make_pipeline(c).fit(splits.train[FEATURES], splits.train[TARGET])
        loss = log_loss(
            splits.validation[TARGET],
            pipe.predict_proba(splits.validation[FEATURES]),
            labels=pipe.classes_,
        )
        if best is None or loss < best[0]:
            best = (loss, c)
    assert best is not None
    return make_pipeline(best[1]).fit(splits.train[FEATURES], splits.train[TARGET])


def package(out: Path, runtime: str = "auto") -> Packaged:
    splits = split(load_frame())
    pipeline = train(splits)
    gate_file = out / "gate.toml"
    return build(
        pipeline,
        splits.test,
        TARGET,
        out,
        name="penguins",
        description=DESCRIPTION,
        train=splits.train,
        gate=evaluate.read_gate(gate_file),
        gate_source=gate_file.name,
        runtime=runtime,  # type: ignore[arg-type]
    )


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m sklambda_tools.examples.penguins")
    parser.add_argument("--out", default="models/penguins", type=Path)
    parser.add_argument("--runtime", choices=["auto", "onnx", "sklearn"], default="auto")
    args = parser.parse_args()
    start = time.perf_counter()
    try:
        packaged = package(args.out, args.runtime)
    except PackagingError as exc:
        print(f"penguins: refused: {exc}", file=sys.stderr)
        return 1
    print(summary(packaged))
    print(f"  took {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
