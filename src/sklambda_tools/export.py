"""Export a fitted pipeline to ONNX and prove that the export agrees with it (packaging time).

The graph has one input per feature, so numbers and strings keep their types. Numeric inputs
are tried in double precision first, then single precision; an export is kept only when, on the
holdout, it gives identical labels and probabilities within ``TOLERANCE`` (or regression values
within a relative ``TOLERANCE``). There is no looser tolerance: a pipeline that does not agree is
served by the sklearn runtime, and the manifest says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sklambda.manifest import ONNX_FILE, Feature, OnnxInfo, Output, Parity
from sklambda.model import OnnxBackend, Scores, SklearnBackend
from sklambda.schema import InputSchema
from sklambda_tools.errors import PackagingError

TOLERANCE = 1e-5
OPSET = {"": 21, "ai.onnx.ml": 3}
MISSING_CATEGORY = "nan"
"""skl2onnx names the missing-value category of an encoder by ``str(nan)``."""


@dataclass(frozen=True)
class Export:
    graph: bytes | None
    info: OnnxInfo | None
    reason: str


def parity(reference: Scores, candidate: Scores, output: Output, probes: int = 0) -> Parity:
    """Compare the export's scores with the pipeline's on the same rows."""
    if output.task == "regression":
        assert reference.values is not None and candidate.values is not None
        ref, got = reference.values, candidate.values
        rel = np.abs(got - ref) / np.maximum(np.abs(ref), 1.0)
        max_rel = float(rel.max()) if rel.size else 0.0
        return Parity(
            rows=int(ref.size),
            probes=probes,
            label_agreement=None,
            max_abs_proba_diff=None,
            max_rel_value_diff=max_rel,
            tolerance=TOLERANCE,
            passed=max_rel <= TOLERANCE,
        )
    assert reference.labels is not None and candidate.labels is not None
    agreement = (
        float(np.mean(reference.labels == candidate.labels)) if reference.labels.size else 1.0
    )
    max_diff = None
    if reference.probabilities is not None and candidate.probabilities is not None:
        diff = np.abs(reference.probabilities - candidate.probabilities)
        max_diff = float(diff.max()) if diff.size else 0.0
    return Parity(
        rows=int(reference.labels.size),
        probes=probes,
        label_agreement=agreement,
        max_abs_proba_diff=max_diff,
        max_rel_value_diff=None,
        tolerance=TOLERANCE,
        passed=agreement == 1.0 and (max_diff is None or max_diff <= TOLERANCE),
    )


def _serialise(graph: Any) -> bytes:
    """Bytes that depend only on the graph: skl2onnx lists the opset imports in set order,
    which changes from one interpreter to the next (string hash randomisation)."""
    imports = sorted((o.domain, o.version) for o in graph.opset_import)
    del graph.opset_import[:]
    for domain, version in imports:
        entry = graph.opset_import.add()
        entry.domain, entry.version = domain, version
    return bytes(graph.SerializeToString())


def _convert(pipeline: Any, features: Sequence[Feature], output: Output, dtype: str) -> bytes:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    number = DoubleTensorType if dtype == "float64" else FloatTensorType
    inputs = [
        (f.name, StringTensorType([None, 1]) if f.kind == "categorical" else number([None, 1]))
        for f in features
    ]
    if output.task == "classification":
        try:
            # Probabilities as a plain (rows, classes) tensor rather than a list of maps.
            graph = to_onnx(
                pipeline, initial_types=inputs, options={"zipmap": False}, target_opset=OPSET
            )
            return _serialise(graph)
        except NameError:  # the classifier has no probability output to shape (e.g. LinearSVC)
            pass
    graph = to_onnx(pipeline, initial_types=inputs, target_opset=OPSET)
    return _serialise(graph)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


UNSEEN_PROBE = "__sklambda_unseen__"


def probe_rows(features: Sequence[Feature], record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Copies of one valid row with one edge each: a nullable feature missing, or a category
    the pipeline never saw (where the schema lets it be scored). Serving meets both; a
    holdout may hold neither."""
    probes = []
    for f in features:
        if f.nullable:
            probes.append({**record, f.name: None})
        if f.kind == "categorical" and f.unseen == "score":
            probes.append({**record, f.name: UNSEEN_PROBE})
    return probes


def export(
    pipeline: Any,
    features: Sequence[Feature],
    output: Output,
    records: Sequence[Mapping[str, Any]],
) -> Export:
    """Try to export ``pipeline``; return the first graph that agrees with the pipeline on the
    holdout ``records`` plus probe rows, or the reasons none did."""
    probes = probe_rows(features, records[0]) if records else []
    checked = InputSchema(features).validate([*records, *probes])
    if checked.errors:
        e = checked.errors[0]
        raise PackagingError(f"holdout row {e.row}, {e.field}: {e.reason}")
    columns = checked.columns
    reference = SklearnBackend(pipeline, output).score(columns, probabilities=True)
    tried: list[str] = []
    for dtype in ("float64", "float32"):
        # skl2onnx and onnxruntime fail in many ways (unsupported estimator, missing kernel,
        # shape inference); each is a reason to fall back, recorded, never a crash.
        try:
            graph = _convert(pipeline, features, output, dtype)
        except Exception as exc:
            tried.append(f"{dtype}: conversion failed ({_first_line(exc)})")
            continue
        try:
            backend = OnnxBackend(graph, features, output, dtype, MISSING_CATEGORY)
            scores = backend.score(columns, probabilities=True)
        except Exception as exc:
            tried.append(f"{dtype}: onnxruntime cannot run the graph ({_first_line(exc)})")
            continue
        check = parity(reference, scores, output, probes=len(probes))
        if check.passed:
            info = OnnxInfo(
                file=ONNX_FILE,
                opset=OPSET[""],
                input_dtype=dtype,
                missing_category=MISSING_CATEGORY,
                parity=check,
            )
            return Export(graph, info, _agreement(check, dtype))
        tried.append(f"{dtype}: {_disagreement(check)}")
    return Export(None, None, "the ONNX export was not used: " + "; ".join(tried))


def _agreement(check: Parity, dtype: str) -> str:
    if check.max_rel_value_diff is not None:
        figure = f"max relative difference {check.max_rel_value_diff:.2g}"
    elif check.max_abs_proba_diff is not None:
        figure = f"identical labels, max probability difference {check.max_abs_proba_diff:.2g}"
    else:
        figure = "identical labels"
    return (
        f"the ONNX export ({dtype} inputs) agrees with the pipeline on {check.rows} rows "
        f"(holdout and {check.probes} probes) "
        f"({figure}, tolerance {check.tolerance:g})"
    )


def _disagreement(check: Parity) -> str:
    parts = []
    if check.label_agreement is not None and check.label_agreement < 1.0:
        parts.append(f"labels agree on {check.label_agreement:.2%} of rows")
    if check.max_abs_proba_diff is not None and check.max_abs_proba_diff > check.tolerance:
        parts.append(f"probabilities differ by up to {check.max_abs_proba_diff:.2g}")
    if check.max_rel_value_diff is not None and check.max_rel_value_diff > check.tolerance:
        parts.append(f"values differ by up to {check.max_rel_value_diff:.2g} relative")
    return "disagrees with the pipeline: " + ", ".join(parts) + f" (tolerance {check.tolerance:g})"
