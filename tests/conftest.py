"""Shared fixtures: the committed penguins artifact and small pipelines fitted elsewhere."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from sklambda_tools.package import Packaged, build

from pipelines import CASES, FEATURES, records, synthetic_frame
from support import PENGUINS_DIR, float32_copy


@pytest.fixture(scope="session")
def train_frame() -> pd.DataFrame:
    return synthetic_frame(600, seed=1)


@pytest.fixture(scope="session")
def holdout_frame() -> pd.DataFrame:
    return synthetic_frame(200, seed=2)


@pytest.fixture(scope="session")
def fitted(train_frame: pd.DataFrame) -> dict[str, Pipeline]:
    return {
        name: factory().fit(train_frame[FEATURES], train_frame[target])
        for name, (factory, target, _) in CASES.items()
    }


@pytest.fixture(scope="session")
def packaged(
    fitted: dict[str, Pipeline],
    train_frame: pd.DataFrame,
    holdout_frame: pd.DataFrame,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Packaged]:
    """Every example pipeline packaged once per session (default gate)."""
    root = tmp_path_factory.mktemp("artifacts")
    return {
        name: build(
            fitted[name], holdout_frame, CASES[name][1], root / name, name=name, train=train_frame
        )
        for name in CASES
    }


@pytest.fixture
def penguins_copy(tmp_path: Path) -> Path:
    """A private copy of the committed penguins artifact, free to tamper with."""
    dest = tmp_path / "penguins"
    shutil.copytree(PENGUINS_DIR, dest)
    return dest


@pytest.fixture(scope="session")
def to_records() -> Callable[..., list[dict[str, Any]]]:
    return records


@pytest.fixture(scope="session")
def float32_penguins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example model with a graph that takes float32 (see ``support.float32_copy``)."""
    return float32_copy(tmp_path_factory.mktemp("float32") / "penguins")


@pytest.fixture
def restore_env() -> Iterator[None]:
    """The process environment as it was, after a test whose invocations set a function's
    variables (``invoke_function`` sets them as Lambda would, for the whole process)."""
    import os

    from sklambda_tools.local import new_execution_environment

    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    new_execution_environment()
