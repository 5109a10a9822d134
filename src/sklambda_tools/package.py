"""Package a fitted scikit-learn pipeline into a model artifact, behind a validation gate.

``python -m sklambda_tools.package --model pipe.joblib --data holdout.csv --target y`` writes
``models/<name>/``: ``model.joblib``, ``model.onnx`` (when the export agrees with the pipeline),
``model.json`` and ``MODEL_CARD.md``. Nothing is written when a holdout metric misses its
threshold (exit status 1) or the input is unusable (exit status 2).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
from collections.abc import Sequence
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
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder
from sklearn.utils.validation import check_is_fitted

from sklambda import drift
from sklambda.manifest import (
    CARD_FILE,
    JOBLIB_FILE,
    MANIFEST_FILE,
    ONNX_FILE,
    ArtifactFile,
    Baselines,
    DataFingerprint,
    DataInfo,
    Feature,
    FeatureKind,
    Label,
    Manifest,
    Output,
    RuntimeInfo,
    Task,
    dump_manifest,
    sha256_bytes,
)
from sklambda.model import SklearnBackend
from sklambda.schema import InputSchema
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


@dataclass(frozen=True)
class Packaged:
    path: Path
    manifest: Manifest


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
    arr = np.atleast_1d(np.asarray(cols))
    if arr.dtype == bool:
        return [n for n, keep in zip(names, arr, strict=True) if keep]
    if arr.dtype.kind in "iu":
        return [names[i] for i in arr]
    return [str(c) for c in arr]


def _unseen(encoder: Any) -> tuple[Literal["score", "reject"], str | None]:
    how = getattr(encoder, "handle_unknown", "error")
    if how == "error":
        return "reject", None
    if isinstance(encoder, OneHotEncoder):
        if how == "ignore":
            return "score", "OneHotEncoder(handle_unknown='ignore'): every indicator is zero"
        return "score", f"OneHotEncoder(handle_unknown={how!r}): counted as infrequent"
    return "score", f"OrdinalEncoder: encoded as {encoder.unknown_value!r}"


def infer_features(pipeline: Any, frames: Sequence[pd.DataFrame]) -> list[Feature]:
    """The input schema: feature names in the pipeline's order, kinds from the first frame's
    dtypes, categories from the pipeline's encoders (else the data), observed ranges and
    nullability from all frames."""
    names = [str(n) for n in pipeline.feature_names_in_]
    encoders = _encoders(pipeline, names)
    features = []
    for name in names:
        col = pd.concat([f[name] for f in frames], ignore_index=True)
        kind = _kind(frames[0][name])
        nullable = bool(col.isna().any())
        if kind == "categorical":
            unseen: Literal["score", "reject"] = "score"
            handling = None
            if name in encoders:
                encoder, j = encoders[name]
                known = encoder.categories_[j]
                nullable = nullable or bool(pd.isna(known).any())
                categories = sorted(str(c) for c in known if not pd.isna(c))
                unseen, handling = _unseen(encoder)
            else:
                categories = sorted(col.dropna().astype(str).unique())
            features.append(
                Feature(
                    name=name,
                    kind="categorical",
                    nullable=nullable,
                    categories=categories,
                    unseen=unseen,
                    unseen_handling=handling,
                )
            )
        elif kind == "boolean":
            features.append(Feature(name=name, kind="boolean", nullable=nullable))
        else:
            present = col.dropna()
            features.append(
                Feature(
                    name=name,
                    kind=kind,
                    nullable=nullable,
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
) -> Packaged:
    """Evaluate ``pipeline`` on ``holdout``, apply the gate, and write the artifact.

    Raises
    ------
    GateFailed
        A metric missed its threshold; nothing was written.
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
    names = [str(n) for n in pipeline.feature_names_in_]
    for frame, what in ((holdout, "holdout"), (train, "training")):
        if frame is None:
            continue
        missing = [n for n in [*names, target] if n not in frame.columns]
        if missing:
            raise PackagingError(f"the {what} data lacks the columns {missing}")
    if holdout[target].isna().any():
        raise PackagingError(f"the holdout target column {target!r} has missing values")
    if len(holdout) == 0:
        raise PackagingError("the holdout data has no rows")

    frames = [f[names] for f in (train, holdout) if f is not None]
    features = infer_features(pipeline, frames)
    schema = InputSchema(features)
    has_proba = task == "classification" and hasattr(pipeline, "predict_proba")
    classes = [_python_label(c) for c in pipeline.classes_] if task == "classification" else None
    output = Output(task=task, target=target, classes=classes, probabilities=has_proba)

    records = frame_to_records(holdout, features)
    checked = schema.validate(records)
    if checked.errors:
        e = checked.errors[0]
        raise PackagingError(f"holdout row {e.row}, {e.field}: {e.reason}")
    reference = SklearnBackend(pipeline, output).score(checked.columns, probabilities=True)
    predicted = reference.values if task == "regression" else reference.labels
    assert predicted is not None
    y_true = holdout[target].to_numpy()
    if task == "classification":
        y_true = np.asarray([_python_label(v) for v in y_true])
    metrics = evaluate.holdout_metrics(
        task, y_true, predicted, reference.probabilities, classes, split=split
    )
    if gate is None:
        gate, gate_source = evaluate.default_gate(task, y_true), "built-in default"
    gate_result = evaluate.check_gate(metrics, gate, gate_source, task)  # raises GateFailed

    base_frame = train if train is not None else holdout
    baselines = _baselines(
        features, base_frame, "training" if train is not None else "holdout", pipeline, output
    )
    faults = evaluate.known_faults(
        task, features, holdout, y_true, predicted, reference.probabilities, classes
    )

    exported = export.export(pipeline, features, output, records)
    if runtime == "onnx" and exported.graph is None:
        raise PackagingError(f"--runtime onnx was asked for, but {exported.reason}")
    if runtime == "sklearn":
        runtime_info = RuntimeInfo(
            serving="sklearn",
            reason="chosen by the packager (--runtime sklearn)",
            onnx=exported.info,
        )
    elif exported.graph is not None:
        runtime_info = RuntimeInfo(serving="onnx", reason=exported.reason, onnx=exported.info)
    else:
        runtime_info = RuntimeInfo(serving="sklearn", reason=exported.reason, onnx=None)

    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    files = {JOBLIB_FILE: buffer.getvalue()}
    if exported.graph is not None:
        files[ONNX_FILE] = exported.graph
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
    )
    return Packaged(_write(Path(out_dir), files, manifest), manifest)


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
    parser.add_argument("--version", help="model version (default: SHA-256 prefix of model.joblib)")
    parser.add_argument("--description", default="")
    parser.add_argument("--out", help="artifact directory (default: models/<name>)")
    parser.add_argument("--gate", help="gate TOML (default: <out>/gate.toml if present)")
    parser.add_argument("--runtime", choices=["auto", "onnx", "sklearn"], default="auto")
    args = parser.parse_args(argv)

    name = args.name or Path(args.model).stem
    out_dir = Path(args.out or Path("models") / name)
    try:
        try:
            pipeline = joblib.load(args.model)
        except Exception as exc:  # unpickling can raise anything; the user's file is at fault
            raise PackagingError(f"cannot load the pipeline {args.model}: {exc}") from exc
        holdout = _read_csv(args.data, "holdout")
        train = _read_csv(args.train_data, "training") if args.train_data else None
        if args.target not in holdout.columns:
            raise PackagingError(f"the holdout data has no target column {args.target!r}")
        gate_path = Path(args.gate) if args.gate else out_dir / "gate.toml"
        gate = None
        if args.gate or gate_path.exists():
            gate = evaluate.read_gate(gate_path)
        packaged = build(
            pipeline,
            holdout,
            args.target,
            out_dir,
            name=name,
            version=args.version,
            description=args.description,
            train=train,
            gate=gate,
            gate_source=str(gate_path) if gate is not None else "built-in default",
            runtime=args.runtime,
        )
    except GateFailed as exc:
        print(f"sklambda_tools.package: refused: {exc}", file=sys.stderr)
        return 1
    except PackagingError as exc:
        print(f"sklambda_tools.package: error: {exc}", file=sys.stderr)
        return 2
    print(summary(packaged))
    return 0


def plural(n: int, noun: str) -> str:
    """``1 check``, ``4 checks``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def summary(packaged: Packaged) -> str:
    m = packaged.manifest
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in m.metrics.values.items())
    files = ", ".join(f"{k} ({v.bytes:,} B)" for k, v in m.artifacts.items())
    return "\n".join(
        [
            f"packaged {m.name} {m.version} -> {packaged.path}",
            f"  holdout ({m.metrics.rows} rows): {metrics}",
            f"  gate ({m.gate.source}): passed {plural(len(m.gate.checks), 'check')}",
            f"  serving runtime: {m.runtime.serving} ({m.runtime.reason})",
            f"  files: {files}",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
