"""Package a fitted scikit-learn pipeline into a model artifact, behind a validation gate.

``python -m sklambda_tools.package --model pipe.joblib --data holdout.csv --target y`` writes
``models/<name>/``: ``model.joblib``, ``model.onnx`` (when the export agrees with the pipeline),
``model.json`` and ``MODEL_CARD.md``. Nothing is written when a holdout metric misses its
threshold (exit status 1) or the input is unusable (exit status 2), which includes a pickle made
by another scikit-learn version than the one that serves it (unless
``--accept-version-mismatch``).

The champion gate: the candidate is compared with the model it would replace (``--champion
DIR``, or the packaged model already in the output directory; ``--no-champion`` skips it), both
scored on the candidate's holdout, on the gate file's ``[champion]`` metrics (default: the
primary one); worse than the champion by more than the tolerance is refused (exit status 1),
and a champion that cannot be loaded, is of another task or target, or cannot score every
holdout row is an error (exit status 2). ``model.json`` records the champion and the comparison.

A feature is nullable when the data has a missing value in it or when the pipeline handles a
missing value there (an imputer, an encoder with a missing category, an estimator that accepts
NaN; see ``missing_flows``), and a row with it missing scores; ``--nullable`` and
``--not-nullable`` override that.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import platform
import re
import sys
import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import joblib
import numpy as np
import pandas as pd
from sklearn.base import is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import InconsistentVersionWarning, NotFittedError
from sklearn.feature_selection import SelectorMixin
from sklearn.impute import KNNImputer, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MaxAbsScaler,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    PowerTransformer,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)
from sklearn.utils import get_tags
from sklearn.utils.validation import check_is_fitted

from sklambda import drift, probes
from sklambda.errors import InvalidInput, ModelLoadError
from sklambda.manifest import (
    CARD_FILE,
    JOBLIB_FILE,
    MANIFEST_FILE,
    ONNX_FILE,
    ArtifactFile,
    Baselines,
    Champion,
    DataFingerprint,
    DataInfo,
    Feature,
    FeatureKind,
    HoldoutMetrics,
    Label,
    Manifest,
    Output,
    RuntimeInfo,
    Task,
    dump_manifest,
    parse_manifest,
    sha256_bytes,
)
from sklambda.model import Model, Scores, SklearnBackend, load
from sklambda.probes import PROBES_FILE
from sklambda.schema import InputSchema
from sklambda.scoring import predict_all, score_records
from sklambda_tools import evaluate, export
from sklambda_tools.card import render_card
from sklambda_tools.errors import GateFailed, PackagingError

RuntimeChoice = Literal["auto", "onnx", "sklearn"]
LIBRARIES = (
    "scikit-learn",
    "numpy",
    "scipy",
    "joblib",
    "pandas",
    "skl2onnx",
    "onnx",
    "onnxruntime",
)
REPO = Path(__file__).resolve().parents[2]
SKLEARN_LAYER = REPO / "layers" / "sklearn" / "requirements.txt"
"""The sklearn runtime layer's pins: the scikit-learn that unpickles ``model.joblib``."""
PLATFORM = REPO / "layers" / "platform.mk"
"""The Lambda platform (``LAMBDA_PYTHON``; template.yaml's Globals Runtime agrees, tested)."""
ACCEPT_FLAG = "--accept-version-mismatch"


@dataclass(frozen=True)
class Packaged:
    path: Path
    manifest: Manifest
    notes: tuple[str, ...] = ()
    """Warnings for the packager: an accepted version mismatch, another Python than Lambda's,
    a feature the pipeline seemed to handle missing but did not."""


# --- schema inference ---------------------------------------------------------------------


def _kind(series: pd.Series) -> FeatureKind:
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_integer_dtype(series):
        return "integer"
    if pd.api.types.is_float_dtype(series):
        return "numeric"
    return "categorical"


def _encoders(est: Any, columns: list[str]) -> dict[str, tuple[Any, int]]:
    """Map input column names to the encoder (and its column index) that first sees them."""
    found: dict[str, tuple[Any, int]] = {}
    if isinstance(est, (OneHotEncoder, OrdinalEncoder)):
        return {name: (est, j) for j, name in enumerate(columns)}
    if isinstance(est, ColumnTransformer):
        names = list(getattr(est, "feature_names_in_", columns))
        for _, trans, cols in est.transformers_:
            if isinstance(trans, str):  # "drop" / "passthrough"
                continue
            selected = _selected(cols, names)
            found.update(_encoders(trans, selected))
        return found
    if isinstance(est, Pipeline):
        for _, step in est.steps[:-1] if _is_final_model(est) else est.steps:
            found = _encoders(step, columns)
            if found or isinstance(step, ColumnTransformer):
                return found
    return found


def _is_final_model(pipe: Pipeline) -> bool:
    last = pipe.steps[-1][1]
    return is_classifier(last) or is_regressor(last)


def _selected(cols: Any, names: list[str]) -> list[str]:
    positions = _column_positions(cols, len(names), names)
    if positions is None:  # a selector of a kind not known here: take it as names
        return [str(c) for c in np.atleast_1d(np.asarray(cols))]
    return [names[j] for j in positions]


def _column_positions(cols: Any, n: int, names: Sequence[str] | None) -> list[int] | None:
    """The input positions a ``ColumnTransformer`` column selector picks: names, indices
    (negative ones too), a boolean mask, a slice of either (a slice of names includes its end,
    as pandas' ``loc``), or one name or index. ``None``: not a selector this understands."""
    if isinstance(cols, slice):
        if isinstance(cols.start, str) or isinstance(cols.stop, str):
            if names is None or any(
                end is not None and end not in names for end in (cols.start, cols.stop)
            ):
                return None
            start = list(names).index(cols.start) if cols.start is not None else 0
            stop = list(names).index(cols.stop) + 1 if cols.stop is not None else n
            return list(range(n))[start : stop : cols.step]
        return list(range(n))[cols]
    if callable(cols):  # a fitted ColumnTransformer holds the columns a callable chose
        return None
    values = list(np.atleast_1d(np.asarray(cols, dtype=object)).ravel())
    if not values:
        return []
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return [j for j, keep in enumerate(values) if keep] if len(values) == n else None
    if all(isinstance(v, (int, np.integer)) for v in values):
        if any(not -n <= int(v) < n for v in values):
            return None
        return [int(v) % n for v in values]
    if all(isinstance(v, str) for v in values) and names is not None:
        index = {str(name): j for j, name in enumerate(names)}
        if any(v not in index for v in values):
            return None
        return [index[v] for v in values]
    return None


# --- where a missing value goes in the pipeline ----------------------------------------------

Flow = frozenset[int] | None
"""Where a missing value in one input column of an estimator ends up: the output columns it
reaches as NaN (empty: every step that meets it fills it in, or drops the column), or ``None``:
a step fails on it, or the walk cannot tell (taken as failing)."""

HANDLED: frozenset[int] = frozenset()
_KEEPS_NAN = (
    StandardScaler,
    MinMaxScaler,
    MaxAbsScaler,
    RobustScaler,
    PowerTransformer,
    QuantileTransformer,
)
"""Column-wise transformers that pass NaN through to the same output column."""


def _identity(n: int) -> list[Flow]:
    return [frozenset({j}) for j in range(n)]


def _through(flow: Flow, step: Sequence[Flow]) -> Flow:
    """Compose a flow into a step's input with the step's own flows."""
    if flow is None:
        return None
    out: set[int] = set()
    for j in flow:
        inner = step[j] if j < len(step) else None
        if inner is None:
            return None
        out |= inner
    return frozenset(out)


def _allows_nan(est: Any) -> bool:
    try:
        return bool(get_tags(est).input_tags.allow_nan)
    except Exception:  # not a scikit-learn estimator: its tags say nothing
        return False


def _imputes_nan(est: Any) -> bool:
    """An imputer (``SimpleImputer``, ``KNNImputer``, ``IterativeImputer``) of NaN: the
    missing value serving passes to the pipeline."""
    iterative = any(
        c.__name__ == "IterativeImputer" and c.__module__.startswith("sklearn.impute")
        for c in type(est).__mro__
    )
    if not (iterative or isinstance(est, (SimpleImputer, KNNImputer))):
        return False
    marker = getattr(est, "missing_values", np.nan)
    return isinstance(marker, float) and math.isnan(marker)


def _encoder_flows(est: Any, n: int) -> list[Flow]:
    """A missing value is a category of its own where the encoder saw one in training; an
    ``OrdinalEncoder`` whose ``encoded_missing_value`` is NaN (its default) passes it on."""
    flows: list[Flow] = []
    for j in range(n):
        known = est.categories_[j] if j < len(est.categories_) else []
        if not bool(pd.isna(np.asarray(known, dtype=object)).any()):
            flows.append(None)
        elif isinstance(est, OrdinalEncoder) and pd.isna(est.encoded_missing_value):
            flows.append(frozenset({j}))
        else:
            flows.append(HANDLED)
    return flows


def _column_transformer_flows(est: ColumnTransformer, n: int, native: bool) -> list[Flow]:
    names = [str(c) for c in getattr(est, "feature_names_in_", [])] or None
    out: list[set[int] | None] = [set() for _ in range(n)]  # a column no one selects is dropped
    for name, trans, cols in est.transformers_:
        positions = _column_positions(cols, n, names)
        if positions is None:
            return [None] * n
        if not positions or (isinstance(trans, str) and trans == "drop"):
            continue
        start = est.output_indices_[name].start
        for j, flow in zip(positions, missing_flows(trans, len(positions), native), strict=True):
            target = out[j]
            if target is None:
                continue
            if flow is None:
                out[j] = None
            else:
                target |= {start + k for k in flow}
    return [None if f is None else frozenset(f) for f in out]


def missing_flows(est: Any, n: int, native: bool = True) -> list[Flow]:
    """For each of the ``n`` input columns of a fitted estimator, where a missing value (NaN)
    in that column goes (see ``Flow``).

    Known: ``Pipeline`` (step after step), ``ColumnTransformer`` (its selectors, ``drop``,
    ``passthrough`` and ``remainder``), the imputers, ``OneHotEncoder`` and ``OrdinalEncoder``
    with a missing category, scalers and other column-wise transformers that keep NaN in its
    column, feature selectors that accept NaN, and classifiers and regressors that accept NaN
    (scikit-learn's ``allow_nan`` tag: ``HistGradientBoosting*``, the trees and forests;
    ``native=False`` takes them to fail too). Anything else is taken to fail on a missing value.
    """
    if est is None or (isinstance(est, str) and est == "passthrough"):
        return _identity(n)
    if isinstance(est, str):  # "drop"
        return [HANDLED] * n
    if isinstance(est, Pipeline):
        flows = _identity(n)
        for _, step in est.steps:
            width = getattr(step, "n_features_in_", None)
            if width is None:
                width = 1 + max((j for f in flows if f for j in f), default=-1)
            inner = missing_flows(step, int(width), native)
            flows = [_through(f, inner) for f in flows]
        return flows
    if isinstance(est, ColumnTransformer):
        return _column_transformer_flows(est, n, native)
    if _imputes_nan(est):
        return [HANDLED] * n
    if isinstance(est, (OneHotEncoder, OrdinalEncoder)):
        return _encoder_flows(est, n)
    if isinstance(est, _KEEPS_NAN) or (
        isinstance(est, FunctionTransformer) and est.func is None  # "passthrough"
    ):
        return _identity(n)
    if isinstance(est, SelectorMixin):
        if not _allows_nan(est):
            return [None] * n
        kept = np.cumsum(est.get_support()) - 1
        return [frozenset({int(kept[j])}) if est.get_support()[j] else HANDLED for j in range(n)]
    if is_classifier(est) or is_regressor(est):
        return [HANDLED if native and _allows_nan(est) else None] * n
    return [None] * n


def handles_missing(pipeline: Any, names: Sequence[str], native: bool = True) -> dict[str, bool]:
    """Whether the fitted pipeline handles a missing value in each input column: every step
    that meets it fills it in (or drops it) before it reaches a step that would fail
    (``native=False``: without counting on an estimator's own support for NaN)."""
    flows = missing_flows(pipeline, len(names), native)
    return {name: flow == HANDLED for name, flow in zip(names, flows, strict=True)}


def _unseen(encoder: Any) -> tuple[Literal["score", "reject"], str | None]:
    how = getattr(encoder, "handle_unknown", "error")
    if how == "error":
        return "reject", None
    if isinstance(encoder, OneHotEncoder):
        if how == "ignore":
            return "score", "OneHotEncoder(handle_unknown='ignore'): every indicator is zero"
        return "score", f"OneHotEncoder(handle_unknown={how!r}): counted as infrequent"
    return "score", f"OrdinalEncoder: encoded as {encoder.unknown_value!r}"


def infer_features(
    pipeline: Any,
    frames: Sequence[pd.DataFrame],
    *,
    nullable: Collection[str] = (),
    not_nullable: Collection[str] = (),
) -> list[Feature]:
    """The input schema: feature names in the pipeline's order, kinds from the first frame's
    dtypes, categories from the pipeline's encoders (else the data), observed ranges from all
    frames. A feature is nullable when a frame has a missing value in it or the pipeline
    handles one (``handles_missing``), unless overridden by ``nullable`` / ``not_nullable``."""
    names = [str(n) for n in pipeline.feature_names_in_]
    encoders = _encoders(pipeline, names)
    handled = handles_missing(pipeline, names)
    features = []
    for name in names:
        col = pd.concat([f[name] for f in frames], ignore_index=True)
        kind = _kind(frames[0][name])
        encoder, j = encoders.get(name, (None, 0))
        if kind != "categorical":
            encoder = None
        known = encoder.categories_[j] if encoder is not None else None
        missing = bool(col.isna().any()) or handled[name]
        if known is not None:
            missing = missing or bool(pd.isna(known).any())
        if name in nullable or name in not_nullable:
            missing = name in nullable
        if kind == "categorical":
            unseen: Literal["score", "reject"] = "score"
            handling = None
            if known is not None:
                categories = sorted(str(c) for c in known if not pd.isna(c))
                unseen, handling = _unseen(encoder)
            else:
                categories = sorted(col.dropna().astype(str).unique())
            features.append(
                Feature(
                    name=name,
                    kind="categorical",
                    nullable=missing,
                    categories=categories,
                    unseen=unseen,
                    unseen_handling=handling,
                )
            )
        elif kind == "boolean":
            features.append(Feature(name=name, kind="boolean", nullable=missing))
        else:
            present = col.dropna()
            features.append(
                Feature(
                    name=name,
                    kind=kind,
                    nullable=missing,
                    min=float(present.min()) if len(present) else None,
                    max=float(present.max()) if len(present) else None,
                )
            )
    return features


def frame_to_records(frame: pd.DataFrame, features: Sequence[Feature]) -> list[dict[str, Any]]:
    """Rows as JSON-like records (``None`` for missing), the form every request arrives in."""
    convert = {"categorical": str, "boolean": bool, "integer": int, "numeric": float}
    columns = {}
    for f in features:
        col = frame[f.name]
        to_python = convert[f.kind]
        columns[f.name] = [
            None if missing else to_python(v)
            for v, missing in zip(col.to_numpy(dtype=object), col.isna().to_numpy(), strict=True)
        ]
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def fingerprint(frame: pd.DataFrame) -> DataFingerprint:
    """Rows, columns and the SHA-256 of the frame as canonical CSV."""
    text = frame.to_csv(index=False, lineterminator="\n")
    return DataFingerprint(
        rows=len(frame), columns=[str(c) for c in frame.columns], sha256=sha256_bytes(text.encode())
    )


def _python_label(value: Any) -> Label:
    item = value.item() if isinstance(value, np.generic) else value
    if isinstance(item, (bool, int, str)):
        return item
    return str(item)


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in LIBRARIES:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


# --- versions -----------------------------------------------------------------------------


def load_pipeline(path: str | Path) -> tuple[Any, dict[str, str]]:
    """Unpickle a pipeline saved with joblib, and the versions its pickle recorded.

    scikit-learn stamps each estimator's pickled state with its version and, unpickling under
    another one, warns with ``InconsistentVersionWarning`` (and drops the stamp): the warnings
    are the only record of it. No warning: the pickle was made by the running version.
    Python's version is not in a joblib pickle at all.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InconsistentVersionWarning)
        try:
            pipeline = joblib.load(path)
        except Exception as exc:  # unpickling can raise anything; the user's file is at fault
            raise PackagingError(f"cannot load the pipeline {path}: {exc}") from exc
    made = set()
    for w in caught:
        if isinstance(w.message, InconsistentVersionWarning):
            made.add(str(w.message.original_sklearn_version))
        else:  # not ours to swallow
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    version = ", ".join(sorted(made)) if made else metadata.version("scikit-learn")
    return pipeline, {"scikit-learn": version}


def serving_sklearn() -> tuple[str, str]:
    """The scikit-learn version that serves ``model.joblib`` and where that is said: the
    sklearn layer's pin, or (the tools installed without the repository) the running one."""
    try:
        pins = SKLEARN_LAYER.read_text()
    except OSError:
        return metadata.version("scikit-learn"), "the packaging environment"
    found = re.search(r"^scikit-learn==(\S+)", pins, flags=re.M)
    if found is None:
        raise PackagingError(f"{SKLEARN_LAYER} does not pin scikit-learn (scikit-learn==X.Y.Z)")
    return found.group(1), f"the sklearn layer's pin in {_shown(SKLEARN_LAYER)}"


def lambda_python() -> str | None:
    """The Lambda functions' Python (``3.13``), or ``None`` outside the repository."""
    try:
        found = re.search(r"^LAMBDA_PYTHON\s*:?=\s*(\S+)", PLATFORM.read_text(), flags=re.M)
    except OSError:
        return None
    return found.group(1) if found else None


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def check_versions(
    pickled_with: dict[str, str] | None, accept_mismatch: bool = False
) -> tuple[str, list[str]]:
    """Refuse (``PackagingError``) a pipeline pickled by another scikit-learn version than the
    one that serves it, unless ``accept_mismatch``; and an environment that would save
    ``model.joblib`` under another version than the serving one, always (that pickle could
    never load there). Returns the serving version and notes for the packager."""
    running = metadata.version("scikit-learn")
    serving, where = serving_sklearn()
    if running != serving:
        raise PackagingError(
            f"packaging runs scikit-learn {running}, but serving uses scikit-learn {serving} "
            f"({where}): model.joblib is saved here, and the sklearn runtime refuses a pickle "
            f"of another version; package in an environment with scikit-learn=={serving} "
            "(make setup installs it)"
        )
    made = (pickled_with or {}).get("scikit-learn")
    if made is None or made == serving:
        return serving, []
    if not accept_mismatch:
        raise PackagingError(
            f"the pipeline was pickled with scikit-learn {made}, but serving uses "
            f"scikit-learn {serving} ({where}), and an estimator unpickled under another "
            "version may compute something else, or fail, without an error. Re-fit and re-save "
            f"the pipeline under scikit-learn {serving}, or pass {ACCEPT_FLAG} to package it "
            "as unpickled here: the holdout metrics, the gate and the ONNX parity check then "
            f"all run on the pipeline as scikit-learn {serving} unpickled it, which is what "
            "serves it, so the gate measures what is shipped (not what the pipeline computed "
            f"under {made}); model.joblib is saved again (and recorded) as {serving}, and "
            f"model.json keeps pickled_with scikit-learn {made}"
        )
    return serving, [
        f"the pipeline was pickled with scikit-learn {made}: packaged anyway "
        f"({ACCEPT_FLAG}) under scikit-learn {serving}, which computed the holdout metrics; "
        f"model.json records pickled_with scikit-learn {made}"
    ]


_LIBRARY_CODE = frozenset(
    {"sklearn", "numpy", "scipy", "pandas", "joblib", "builtins", "functools", "operator", "math"}
)


def _own_code(pipeline: Any) -> list[str]:
    """Classes and functions in the pipeline from outside the libraries the layers ship:
    pickled by reference, they must be importable wherever ``model.joblib`` is loaded."""
    objects = [pipeline]
    if hasattr(pipeline, "get_params"):
        objects += list(pipeline.get_params(deep=True).values())
    found = set()
    for obj in objects:
        target = obj if callable(obj) and not hasattr(obj, "get_params") else type(obj)
        module = str(getattr(target, "__module__", None) or type(target).__module__)
        if module.split(".")[0] not in _LIBRARY_CODE:
            found.add(f"{module}.{getattr(target, '__qualname__', type(target).__name__)}")
    return sorted(found)


def python_note(pipeline: Any, serving: str) -> str | None:
    """A warning when packaging runs another Python minor version than the Lambda functions
    (``None`` when they agree, or outside the repository). Not a refusal: a pickle of numpy
    and scikit-learn objects loads across Python minor versions."""
    target = lambda_python()
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if target is None or target == here:
        return None
    note = (
        f"packaging runs Python {platform.python_version()}, the Lambda functions Python "
        f"{target} ({_shown(PLATFORM)}); not refused: a joblib pickle of numpy and "
        "scikit-learn objects loads across Python minor versions (nor does it record the "
        "Python that made it)"
    )
    own = _own_code(pipeline)
    if own:
        note += (
            f"; but the pipeline refers to code of your own ({', '.join(own[:3])}), pickled by "
            f"reference: it must be importable, under Python {target}, wherever model.joblib "
            "is loaded"
        )
    if serving == "onnx":
        note += " (the onnx runtime, which serves this model, does not unpickle it)"
    return note


# --- the champion gate --------------------------------------------------------------------

NO_CHAMPION_HINT = "package with --no-champion to skip the comparison"


def champion_dir(path: Path) -> Path:
    """The champion's artifact directory: ``path`` itself, or the directory of ``path`` when
    it names a ``model.json``."""
    if path.is_file() and path.name == MANIFEST_FILE:
        return path.parent
    if not path.exists():
        raise PackagingError(f"the champion {path} does not exist; {NO_CHAMPION_HINT}")
    if not path.is_dir():
        raise PackagingError(
            f"the champion {path} is neither a model directory nor a {MANIFEST_FILE}; "
            f"{NO_CHAMPION_HINT}"
        )
    if not (path / MANIFEST_FILE).exists():
        raise PackagingError(
            f"the champion directory {path} holds no packaged model (no {MANIFEST_FILE}); "
            f"{NO_CHAMPION_HINT}"
        )
    return path


def load_champion(path: Path) -> tuple[Model, str]:
    """The champion, loaded and verified as serving would load it (its manifest's runtime),
    and the SHA-256 of its ``model.json``."""
    where = champion_dir(path)
    try:
        raw = (where / MANIFEST_FILE).read_bytes()
        model = load(where)
    except OSError as exc:
        raise PackagingError(
            f"the champion {where} cannot be read: {exc.strerror}; {NO_CHAMPION_HINT}"
        ) from exc
    except ModelLoadError as exc:
        raise PackagingError(
            f"the champion {where} cannot be loaded: {exc}; {NO_CHAMPION_HINT}"
        ) from exc
    except Exception as exc:  # a graph or a pickle that passed its hash check but does not load
        raise PackagingError(
            f"the champion {where} cannot be loaded: {type(exc).__name__}: {exc}; "
            f"{NO_CHAMPION_HINT}"
        ) from exc
    try:
        same = parse_manifest(json.loads(raw)) == model.manifest
    except ValueError:
        same = False
    if not same:
        raise PackagingError(f"the champion's {MANIFEST_FILE} in {where} changed while it was read")
    return model, sha256_bytes(raw)


def _champion_records(
    holdout: pd.DataFrame, records: Sequence[dict[str, Any]], wanted: Sequence[str]
) -> list[dict[str, Any]]:
    """The candidate's holdout records with the champion's features: the candidate's values,
    and the holdout's own (as JSON values) for a feature only the champion has."""
    have = set(records[0]) if records else set()
    extra = {}
    for name in (n for n in wanted if n not in have):
        col = holdout[name]
        extra[name] = [
            None if missing else _plain(v)
            for v, missing in zip(col.to_numpy(dtype=object), col.isna().to_numpy(), strict=True)
        ]
    return [
        {n: row[n] if n in have else extra[n][i] for n in wanted} for i, row in enumerate(records)
    ]


def _same_classes(ours: Sequence[Label] | None, theirs: Sequence[Label] | None) -> bool:
    def key(classes: Sequence[Label] | None) -> set[tuple[str, str]]:
        return {(type(c).__name__, str(c)) for c in classes or ()}

    return key(ours) == key(theirs)


def compare_with_champion(
    path: Path,
    *,
    task: Task,
    target: str,
    holdout: pd.DataFrame,
    records: Sequence[dict[str, Any]],
    y_true: np.ndarray,
    classes: list[Label] | None,
    metrics: HoldoutMetrics,
    rule: evaluate.ChampionRule,
    primary: str,
    source: str,
    unavailable: dict[str, str],
) -> Champion:
    """Score the champion on the candidate's holdout through the scoring core, compute its
    metrics as the candidate's are computed, and compare them (``evaluate.check_champion``).

    Raises ``GateFailed`` when the candidate is worse, and ``PackagingError`` when the two
    cannot be compared: the champion does not load, predicts another task or target, or
    rejects a holdout row (the first one is named)."""
    model, manifest_sha = load_champion(path)
    m = model.manifest
    who = f"{m.name} {m.version}"
    if m.output.task != task:
        raise PackagingError(
            f"the champion {who} is a {m.output.task} model and the candidate a {task} one: "
            f"they cannot be compared; {NO_CHAMPION_HINT}"
        )
    if m.output.target != target:
        raise PackagingError(
            f"the champion {who} predicts {m.output.target!r} and the candidate {target!r}: "
            f"they cannot be compared; {NO_CHAMPION_HINT}"
        )
    cannot = (
        f"the champion {who} cannot score every row of the candidate's holdout, so the two "
        "cannot be compared"
    )
    absent = [n for n in m.feature_names if n not in holdout.columns]
    if absent:
        raise PackagingError(
            f"{cannot}: holdout row 0, {absent[0]}: the champion needs this feature, and the "
            f"holdout has no such column; {NO_CHAMPION_HINT}"
        )
    try:
        scored = score_records(model, _champion_records(holdout, records, m.feature_names))
    except Exception as exc:  # the champion's own failure on a row its schema accepted
        raise PackagingError(
            f"{cannot}: it failed on the holdout ({type(exc).__name__}: {exc}); {NO_CHAMPION_HINT}"
        ) from exc
    if scored.errors:
        e = scored.errors[0]
        rejected = len(scored.rejected_rows)
        raise PackagingError(
            f"{cannot}: holdout row {e.row}{'' if e.field is None else ', ' + e.field}: "
            f"{e.reason}{f' ({rejected} rows rejected)' if rejected > 1 else ''}; "
            f"{NO_CHAMPION_HINT}"
        )
    s = scored.scores
    predicted = s.values if task == "regression" else s.labels
    assert predicted is not None
    theirs = m.output.classes
    proba = s.probabilities
    champion_unavailable = evaluate.unavailable_metrics(task, y_true, proba, theirs)
    other_classes = None
    if task == "classification" and not _same_classes(classes, theirs):
        other_classes = (
            f"the champion's classes ({', '.join(map(str, theirs or []))}) are not the "
            f"candidate's ({', '.join(map(str, classes or []))})"
        )
        known = {(type(c).__name__, str(c)) for c in theirs or ()}
        labels = [_python_label(v) for v in y_true]
        strangers = sorted({str(v) for v in labels if (type(v).__name__, str(v)) not in known})
        if strangers and proba is not None:  # no probability for a class it does not know
            proba = None
            champion_unavailable = {
                k: f"the holdout has classes the champion does not know ({', '.join(strangers)})"
                for k in evaluate.PROBABILITY_METRICS
            }
    theirs_metrics = evaluate.holdout_metrics(
        task, y_true, predicted, proba, theirs, split=metrics.split
    )
    checks, skipped = evaluate.check_champion(  # raises GateFailed
        metrics.values,
        theirs_metrics.values,
        rule,
        primary,
        task=task,
        source=source,
        who=who,
        unavailable=unavailable,
        champion_unavailable=champion_unavailable,
        other_classes=other_classes,
    )
    return Champion(
        name=m.name,
        version=m.version,
        manifest_sha256=manifest_sha,
        runtime="onnx" if model.runtime == "onnx" else "sklearn",
        metrics=theirs_metrics,
        checks=checks,
        skipped=skipped,
        passed=True,
    )


# --- the whole job ------------------------------------------------------------------------


def build(
    pipeline: Any,
    holdout: pd.DataFrame,
    target: str,
    out_dir: str | Path,
    *,
    name: str,
    version: str | None = None,
    description: str = "",
    train: pd.DataFrame | None = None,
    gate: evaluate.Thresholds | None = None,
    gate_source: str = "built-in default",
    runtime: RuntimeChoice = "auto",
    split: str = "test",
    pickled_with: dict[str, str] | None = None,
    accept_version_mismatch: bool = False,
    nullable: Collection[str] = (),
    not_nullable: Collection[str] = (),
    champion: str | Path | None = None,
    champion_rule: evaluate.ChampionRule | None = None,
) -> Packaged:
    """Evaluate ``pipeline`` on ``holdout``, apply the gate, and write the artifact.

    ``pickled_with`` are the versions the submitted pickle recorded (``load_pipeline``); one
    that differs from the serving scikit-learn is refused unless ``accept_version_mismatch``.
    ``nullable`` / ``not_nullable`` name features whose nullability overrides the inferred one.
    ``champion`` is the directory of the packaged model this one would replace (or its
    ``model.json``), compared on ``holdout`` by ``champion_rule`` (the gate file's
    ``[champion]``, ``evaluate.read_champion``; default: the gate's first metric, no
    tolerance); ``None``: no comparison (this function never looks for one in ``out_dir``).

    Raises
    ------
    GateFailed
        A metric missed its threshold, or the candidate is worse than the champion; nothing
        was written.
    PackagingError
        The pipeline or the data cannot be packaged (the message says which and why).
    """
    try:
        check_is_fitted(pipeline)
    except (NotFittedError, TypeError) as exc:
        raise PackagingError("the pipeline is not fitted") from exc
    if not hasattr(pipeline, "feature_names_in_"):
        raise PackagingError(
            "the pipeline has no feature names: fit it on a pandas DataFrame with named columns"
        )
    task: Task
    if is_classifier(pipeline):
        task = "classification"
    elif is_regressor(pipeline):
        task = "regression"
    else:
        raise PackagingError("the pipeline must end in a classifier or a regressor")
    _, notes = check_versions(pickled_with, accept_version_mismatch)
    names = [str(n) for n in pipeline.feature_names_in_]
    _check_overrides(names, nullable, not_nullable, holdout)
    for frame, what in ((holdout, "holdout"), (train, "training")):
        if frame is None:
            continue
        missing = [n for n in [*names, target] if n not in frame.columns]
        if missing:
            raise PackagingError(f"the {what} data lacks the columns {missing}")
    if target in names:
        raise PackagingError(
            f"the target {target!r} is one of the pipeline's features: TARGET names the column "
            "the pipeline predicts"
        )
    if holdout[target].isna().any():
        raise PackagingError(f"the holdout target column {target!r} has missing values")
    if len(holdout) == 0:
        raise PackagingError("the holdout data has no rows")

    frames = [f[names] for f in (train, holdout) if f is not None]
    features = infer_features(pipeline, frames, nullable=nullable, not_nullable=not_nullable)
    has_proba = task == "classification" and hasattr(pipeline, "predict_proba")
    classes = [_python_label(c) for c in pipeline.classes_] if task == "classification" else None
    output = Output(task=task, target=target, classes=classes, probabilities=has_proba)

    records = frame_to_records(holdout, features)
    checked = InputSchema(features).validate(records)
    if checked.errors:
        e = checked.errors[0]
        raise PackagingError(f"holdout row {e.row}, {e.field}: {e.reason}")
    seen_missing = {n for n in names if any(bool(f[n].isna().any()) for f in frames)}
    features, missing_notes = _confirm_nullable(
        pipeline, output, features, records[0], seen_missing, set(nullable)
    )
    notes += missing_notes
    schema = InputSchema(features)
    checked = schema.validate(records)
    reference = SklearnBackend(pipeline, output).score(checked.columns, probabilities=True)
    predicted = reference.values if task == "regression" else reference.labels
    assert predicted is not None
    y_true = holdout[target].to_numpy()
    if task == "classification":
        y_true = np.asarray([_python_label(v) for v in y_true])
        known = {str(c) for c in classes or []}
        strangers = sorted({str(v) for v in y_true} - known)
        if strangers:
            raise PackagingError(
                f"the holdout target {target!r} holds values that are not the pipeline's "
                f"classes ({', '.join(strangers[:5])}{', ...' if len(strangers) > 5 else ''}; "
                f"the classes are {', '.join(sorted(known))}): is {target!r} the column it "
                "was trained to predict?"
            )
    metrics = evaluate.holdout_metrics(
        task, y_true, predicted, reference.probabilities, classes, split=split
    )
    if gate is None:
        gate, gate_source = evaluate.default_gate(task, y_true), "built-in default"
    unavailable = evaluate.unavailable_metrics(task, y_true, reference.probabilities, classes)
    gate_result = evaluate.check_gate(  # raises GateFailed
        metrics, gate, gate_source, task, unavailable
    )
    champion_result = None
    if champion is not None:
        champion_result = compare_with_champion(  # raises GateFailed
            Path(champion),
            task=task,
            target=target,
            holdout=holdout,
            records=records,
            y_true=y_true,
            classes=classes,
            metrics=metrics,
            rule=champion_rule or evaluate.ChampionRule(),
            primary=next(iter(gate)),
            source=gate_source,
            unavailable=unavailable,
        )

    base_frame = train if train is not None else holdout
    baselines = _baselines(
        features, base_frame, "training" if train is not None else "holdout", pipeline, output
    )
    faults = evaluate.known_faults(
        task, features, holdout, y_true, predicted, reference.probabilities, classes
    )

    exported = export.export(pipeline, features, output, records)
    inferred = [
        f.name for f in features if f.nullable and f.name not in seen_missing | set(nullable)
    ]
    if exported.graph is None and runtime != "sklearn" and inferred:
        # Nullable on the pipeline's word only is a convenience, not worth the onnx runtime:
        # the export may not reproduce how the pipeline treats a missing value (a tree trained
        # without one sends it down its larger branch; skl2onnx's trees do not). Those left to
        # an estimator's own NaN support go first; the imputed and encoded ones stay if they can.
        filled = handles_missing(pipeline, names, native=False)
        inferred = [n for n in inferred if not filled[n]] or inferred
        strict = [
            dataclasses.replace(f, nullable=False) if f.name in inferred else f for f in features
        ]
        retried = export.export(pipeline, strict, output, records)
        if retried.graph is not None:
            notes.append(
                f"{_listed(inferred)}: the pipeline handles a missing value there, but the "
                f"ONNX export does not agree with it on one ({exported.reason}); recorded as "
                "not nullable to keep the onnx runtime (--nullable "
                f"{','.join(inferred) if len(inferred) <= 5 else 'A,B,...'} keeps them "
                "nullable, served by the sklearn runtime)"
            )
            features, exported = strict, retried
    if runtime == "onnx" and exported.graph is None:
        raise PackagingError(f"--runtime onnx was asked for, but {exported.reason}")
    if runtime == "sklearn":
        runtime_info = RuntimeInfo(
            serving="sklearn",
            reason="chosen by the packager (--runtime sklearn)",
            onnx=exported.info,
            edge=exported.edge,
        )
    elif exported.graph is not None:
        runtime_info = RuntimeInfo(
            serving="onnx", reason=exported.reason, onnx=exported.info, edge=exported.edge
        )
    else:
        runtime_info = RuntimeInfo(serving="sklearn", reason=exported.reason, onnx=None)
    if export.casts_to_float32(pipeline):
        runtime_info = dataclasses.replace(runtime_info, float32_inputs=True)
    python = python_note(pipeline, runtime_info.serving)
    if python is not None:
        notes.append(python)

    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    files = {JOBLIB_FILE: buffer.getvalue()}
    if exported.graph is not None:
        files[ONNX_FILE] = exported.graph
    if exported.edge is not None and exported.edge_graph is not None:
        files[exported.edge.file] = exported.edge_graph
    artifacts = {k: ArtifactFile(sha256=sha256_bytes(v), bytes=len(v)) for k, v in files.items()}
    manifest = Manifest(
        name=name,
        version=version or artifacts[JOBLIB_FILE].sha256[:12],
        created=datetime.now(UTC).replace(microsecond=0).isoformat(),
        description=description,
        libraries=_library_versions(),
        artifacts=artifacts,
        data=DataInfo(
            training=fingerprint(train[[*names, target]]) if train is not None else None,
            holdout=fingerprint(holdout[[*names, target]]),
        ),
        features=features,
        output=output,
        metrics=metrics,
        gate=gate_result,
        baselines=baselines,
        known_faults=faults,
        runtime=runtime_info,
        pickled_with=dict(pickled_with) if pickled_with is not None else None,
        champion=champion_result,
    )
    files[PROBES_FILE] = probe_file(manifest, pipeline, records)
    artifacts[PROBES_FILE] = ArtifactFile(
        sha256=sha256_bytes(files[PROBES_FILE]), bytes=len(files[PROBES_FILE])
    )
    manifest = dataclasses.replace(manifest, artifacts=artifacts)
    return Packaged(_write(Path(out_dir), files, manifest), manifest, tuple(notes))


PROBE_HOLDOUT_ROWS = 64
PROBE_FILE_ROWS = 256
"""Rows of the probe file: the first holdout rows, then edge rows spread evenly over those the
parity check tried; a few hundred rows are one request to the deployed version (a few
tens of kB)."""


def probe_file(manifest: Manifest, pipeline: Any, records: Sequence[dict[str, Any]]) -> bytes:
    """``probes.json``: holdout rows and edge rows, with the answers the pipeline gives them
    through the scoring core (as the API would answer with the sklearn runtime)."""
    edges = export.probe_rows(manifest.features, records)
    rows = list(records[:PROBE_HOLDOUT_ROWS])
    room = PROBE_FILE_ROWS - len(rows)
    if len(edges) > room:
        edges = [edges[i * len(edges) // room] for i in range(room)]
    rows += edges
    model = Model(manifest, SklearnBackend(pipeline, manifest.output), "sklearn", Path("."))
    instances = [{k: _plain(v) for k, v in row.items()} for row in rows]
    try:
        predictions = predict_all(model, instances).predictions()
    except InvalidInput as exc:  # the export's checks passed on these rows: a bug if seen
        raise PackagingError(f"the probe rows cannot be scored: {exc}") from exc
    return probes.dumps(
        probes.ProbeSet(
            task=manifest.output.task,
            tolerance=export.TOLERANCE,
            rows=[
                probes.Probe(instance=i, expected=p)
                for i, p in zip(instances, predictions, strict=True)
            ],
        )
    )


def _plain(value: Any) -> Any:
    """A JSON value: numpy scalars as Python numbers, NaN as null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _listed(names: Sequence[str], at_most: int = 5) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 8 more``."""
    shown = ", ".join(names[:at_most])
    return shown if len(names) <= at_most else f"{shown} and {len(names) - at_most} more"


def _check_overrides(
    names: Sequence[str],
    nullable: Collection[str],
    not_nullable: Collection[str],
    holdout: pd.DataFrame,
) -> None:
    for flag, given in (("--nullable", nullable), ("--not-nullable", not_nullable)):
        unknown = [n for n in given if n not in names]
        if unknown:
            raise PackagingError(
                f"{flag}: the pipeline has no feature {', '.join(map(repr, unknown))}; "
                f"its features: {', '.join(names)}"
            )
    both = sorted(set(nullable) & set(not_nullable))
    if both:
        raise PackagingError(f"{', '.join(both)}: both --nullable and --not-nullable")
    for name in not_nullable:
        if name in holdout.columns and (gaps := int(holdout[name].isna().sum())):
            raise PackagingError(
                f"--not-nullable {name}: {plural(gaps, 'holdout row')} without {name}, and "
                "serving would refuse such a row; drop those rows from the holdout, or leave "
                "the feature nullable"
            )


def _scores_finite(scores: Scores) -> bool:
    arrays = [a for a in (scores.values, scores.probabilities) if a is not None]
    return all(bool(np.isfinite(np.asarray(a, dtype=np.float64)).all()) for a in arrays)


def _missing_fails(
    pipeline: Any, output: Output, schema: InputSchema, record: dict[str, Any], names: list[str]
) -> str | None:
    """Why the pipeline cannot score copies of ``record`` with each of ``names`` missing, or
    ``None`` when it can."""
    checked = schema.validate([{**record, n: None} for n in names])
    if checked.errors:
        return checked.errors[0].reason
    try:
        scores = SklearnBackend(pipeline, output).score(checked.columns, probabilities=True)
    except Exception as exc:  # the pipeline's own failure is the answer
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0][:200] if text else ''}".rstrip(": ")
    return None if _scores_finite(scores) else "it scores the row as NaN"


def _confirm_nullable(
    pipeline: Any,
    output: Output,
    features: list[Feature],
    record: dict[str, Any],
    seen_missing: set[str],
    forced: set[str],
) -> tuple[list[Feature], list[str]]:
    """Score a row with each feature missing that is nullable on the pipeline's word (or the
    packager's), not the data's: one the pipeline fails on is refused (``--nullable``) or
    made not nullable again (the walk was wrong), with a note."""
    schema = InputSchema(features)
    names = [f.name for f in features if f.nullable and f.name not in seen_missing]
    if not names or _missing_fails(pipeline, output, schema, record, names) is None:
        return features, []
    failing = {}
    for name in names:
        why = _missing_fails(pipeline, output, schema, record, [name])
        if why is not None:
            failing[name] = why
    for name, why in failing.items():
        if name in forced:
            raise PackagingError(
                f"--nullable {name}: the pipeline cannot score a row with {name} missing ({why})"
            )
    notes = [
        f"{name}: the pipeline looked as though it handles a missing value, but a row with it "
        f"missing does not score ({why}); recorded as not nullable"
        for name, why in failing.items()
    ]
    fixed = [dataclasses.replace(f, nullable=False) if f.name in failing else f for f in features]
    return fixed, notes


def _baselines(
    features: Sequence[Feature],
    frame: pd.DataFrame,
    source: Literal["training", "holdout"],
    pipeline: Any,
    output: Output,
) -> Baselines:
    per_feature: dict[str, Any] = {}
    for f in features:
        col = frame[f.name]
        if f.kind == "categorical" or f.kind == "boolean":
            values = [None if pd.isna(v) else str(v) for v in col.to_numpy(dtype=object)]
            per_feature[f.name] = drift.categorical_baseline(values)
        else:
            per_feature[f.name] = drift.numeric_baseline(
                col.to_numpy(dtype=np.float64, na_value=np.nan)
            )
    scores = SklearnBackend(pipeline, output).score(
        InputSchema(features).validate(frame_to_records(frame, features)).columns,
        probabilities=False,
    )
    if output.task == "regression":
        assert scores.values is not None
        prediction: Any = drift.numeric_baseline(scores.values)
    else:
        assert scores.labels is not None
        prediction = drift.categorical_baseline(str(v) for v in scores.labels)
    return Baselines(
        source=source,
        rows=len(frame),
        features=per_feature,
        prediction=prediction,
    )


def _write(out_dir: Path, files: dict[str, bytes], manifest: Manifest) -> Path:
    """Write the artifact files, then the manifest last: until the manifest is replaced, a
    reader sees the old manifest, whose hashes refuse the new files (never a silent mix)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = dict(files)
    contents[CARD_FILE] = render_card(manifest).encode()
    contents[MANIFEST_FILE] = dump_manifest(manifest).encode()
    for name, data in contents.items():
        tmp = out_dir / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, out_dir / name)
    if ONNX_FILE not in files:
        (out_dir / ONNX_FILE).unlink(missing_ok=True)
    return out_dir


# --- command line -------------------------------------------------------------------------


def _read_csv(path: str, what: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise PackagingError(f"cannot read the {what} CSV {path}: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sklambda_tools.package",
        description="Package a fitted scikit-learn pipeline as a sklambda model artifact.",
    )
    parser.add_argument("--model", required=True, help="fitted pipeline saved with joblib")
    parser.add_argument("--data", required=True, help="holdout CSV (features and target)")
    parser.add_argument("--target", required=True, help="target column in the holdout CSV")
    parser.add_argument("--train-data", help="training CSV, for drift baselines and schema")
    parser.add_argument("--name", help="model name (default: the model file's stem)")
    parser.add_argument(
        "--version", help="model version (default: SHA-256 prefix of the --model file)"
    )
    parser.add_argument("--description", default="")
    parser.add_argument("--out", help="artifact directory (default: models/<name>)")
    parser.add_argument("--gate", help="gate TOML (default: <out>/gate.toml if present)")
    parser.add_argument("--runtime", choices=["auto", "onnx", "sklearn"], default="auto")
    parser.add_argument(
        "--nullable",
        action="append",
        default=[],
        metavar="A,B",
        help="features that accept a missing value, whatever the data and the pipeline say "
        "(a row with it missing must still score); comma-separated, or the flag repeated",
    )
    parser.add_argument(
        "--not-nullable",
        action="append",
        default=[],
        metavar="C",
        help="features that must not be missing, even where the pipeline would handle it "
        "(the holdout must have no gap in them)",
    )
    parser.add_argument(
        ACCEPT_FLAG,
        action="store_true",
        help="package a pickle made by another scikit-learn version, re-recorded as the "
        "serving version once the holdout gate passes under it",
    )
    rival = parser.add_mutually_exclusive_group()
    rival.add_argument(
        "--champion",
        metavar="DIR",
        help="the packaged model this one would replace (its directory or its model.json): "
        "both are scored on the holdout, and a candidate worse on the gate file's [champion] "
        "metrics is refused (default: the model already in the output directory, if any)",
    )
    rival.add_argument(
        "--no-champion",
        action="store_true",
        help="package without comparing with a champion, even one in the output directory",
    )
    args = parser.parse_args(argv)

    name = args.name or Path(args.model).stem
    out_dir = Path(args.out or Path("models") / name)
    try:
        pipeline, pickled_with = load_pipeline(args.model)
        holdout = _read_csv(args.data, "holdout")
        train = _read_csv(args.train_data, "training") if args.train_data else None
        if args.target not in holdout.columns:
            raise PackagingError(f"the holdout data has no target column {args.target!r}")
        gate_path = Path(args.gate) if args.gate else out_dir / "gate.toml"
        gate, rule = None, None
        if args.gate or gate_path.exists():
            gate = evaluate.read_gate(gate_path)
            rule = evaluate.read_champion(gate_path)
        champion = None
        if args.champion:
            champion = Path(args.champion)
        elif not args.no_champion and (out_dir / MANIFEST_FILE).exists():
            champion = out_dir  # the model the candidate would replace
        packaged = build(
            pipeline,
            holdout,
            args.target,
            out_dir,
            name=name,
            # The same file gives the same version: the re-saved pickle's bytes are not
            # stable for every estimator (a tree's node arrays carry padding).
            version=args.version or sha256_bytes(Path(args.model).read_bytes())[:12],
            description=args.description,
            train=train,
            gate=gate,
            gate_source=str(gate_path) if gate is not None else "built-in default",
            runtime=args.runtime,
            pickled_with=pickled_with,
            accept_version_mismatch=args.accept_version_mismatch,
            nullable=_names(args.nullable),
            not_nullable=_names(args.not_nullable),
            champion=champion,
            champion_rule=rule,
        )
    except GateFailed as exc:
        print(f"sklambda_tools.package: refused: {exc}", file=sys.stderr)
        return 1
    except PackagingError as exc:
        print(f"sklambda_tools.package: error: {exc}", file=sys.stderr)
        return 2
    for note in packaged.notes:
        print(f"sklambda_tools.package: warning: {note}", file=sys.stderr)
    print(summary(packaged))
    return 0


def _names(values: Sequence[str]) -> list[str]:
    """``["a,b", "c"]`` (a flag given twice, comma-separated) as ``["a", "b", "c"]``."""
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def plural(n: int, noun: str) -> str:
    """``1 check``, ``4 checks``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# What a model served by the sklearn runtime costs, as measured by `make bench` and `make size`
# (docs/benchmarks.md, arm64 build).
SKLEARN_COST = (
    "the sklearn runtime: functions of about 226 MB with their layers (onnx: 88 MB), and a "
    "fresh interpreter's first answer in about 1.4 s (onnx: about 0.3 s); docs/benchmarks.md"
)


def summary(packaged: Packaged) -> str:
    m = packaged.manifest
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in m.metrics.values.items())
    files = ", ".join(f"{k} ({v.bytes:,} B)" for k, v in m.artifacts.items())
    return "\n".join(
        [
            f"packaged {m.name} {m.version} -> {packaged.path}",
            f"  holdout ({m.metrics.rows} rows): {metrics}",
            f"  gate ({m.gate.source}): passed {plural(len(m.gate.checks), 'check')}",
            champion_line(m),
            f"  serving runtime: {m.runtime.serving} ({m.runtime.reason})",
            *([f"  {SKLEARN_COST}"] if m.runtime.serving == "sklearn" else []),
            f"  files: {files}",
        ]
    )


def champion_line(m: Manifest) -> str:
    """The summary's line on the champion gate."""
    c = m.champion
    if c is None:
        return "  champion: none (not compared with a model it replaces)"
    checks = "; ".join(
        f"{k.metric} {evaluate.figure(k.candidate)} vs {evaluate.figure(k.champion)} "
        f"({k.better} is better, tolerance {k.tolerance:g})"
        for k in c.checks
    )
    skipped = f"; not compared: {', '.join(c.skipped)}" if c.skipped else ""
    return f"  champion {c.name} {c.version} ({c.runtime}): passed, {checks}{skipped}"


if __name__ == "__main__":
    sys.exit(main())
