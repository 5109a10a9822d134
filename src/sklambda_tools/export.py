"""Export a fitted pipeline to ONNX and prove that the export agrees with it (packaging time).

The graph has one input per feature, so numbers and strings keep their types. Numeric inputs
are tried in double precision first, then single precision; an export is kept only when, on the
holdout, it gives identical labels and probabilities within ``TOLERANCE`` (or regression values
within a relative ``TOLERANCE``). There is no looser tolerance: a pipeline that does not agree is
served by the sklearn runtime, and the manifest says why.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin, is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.ensemble._forest import BaseForest
from sklearn.ensemble._gb import BaseGradientBoosting
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.tree._classes import BaseDecisionTree

from sklambda.manifest import ONNX_FILE, EdgeInfo, Feature, OnnxInfo, Output, Parity
from sklambda.model import UNSEEN, OnnxBackend, Scores, SklearnBackend
from sklambda.schema import Columns, InputSchema
from sklambda_tools.errors import PackagingError

TOLERANCE = 1e-5
OPSET = {"": 21, "ai.onnx.ml": 3}
MISSING_CATEGORY = "nan"
"""skl2onnx names the missing-value category of an encoder by ``str(nan)``."""
MATRIX_INPUT = "features"
TREE_INPUT = "tree_input"


@dataclass(frozen=True)
class Export:
    graph: bytes | None
    info: OnnxInfo | None
    reason: str
    edge: EdgeInfo | None = None
    edge_graph: bytes | None = None
    """The edge graph's bytes when they differ from ``graph`` (``None``: the same file)."""


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


Layout = Literal["columns", "matrix"]


def _parts(est: Any) -> Iterator[Any]:
    """The estimator and every estimator inside it: pipeline steps, column transformers'
    parts, at any depth."""
    yield est
    if isinstance(est, Pipeline):
        for _, step in est.steps:
            yield from _parts(step)
    elif isinstance(est, ColumnTransformer):
        for _, trans, _ in est.transformers_:
            yield from _parts(trans)


def _classifiers(est: Any) -> list[Any]:
    """Every classifier in a (nested) pipeline: each gets its own converter options."""
    return [e for e in _parts(est) if is_classifier(e) and not isinstance(e, Pipeline)]


# scikit-learn's trees (and the forests and gradient boosting built of them) cast their input
# to float32 before comparing it with their thresholds.
TREE_MODELS = (BaseDecisionTree, BaseForest, BaseGradientBoosting)


class NanFill(TransformerMixin, BaseEstimator):
    """A numeric ``SimpleImputer`` as the exported copy holds it: NaN replaced by the fitted
    statistics. onnxruntime's ``Imputer`` runs in float32 only; this one converts to a graph
    in the input's own precision."""

    def __init__(self, values: Any = None) -> None:
        self.values = values

    def fit(self, X: Any, y: Any = None) -> NanFill:
        return self

    def transform(self, X: Any) -> np.ndarray:
        arr = np.array(X, dtype=np.float64)
        return np.where(np.isnan(arr), np.asarray(self.values, dtype=np.float64), arr)


def _nanfill_shape(operator: Any) -> None:
    kind = type(operator.inputs[0].type)
    rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = kind([rows, len(operator.raw_operator.values)])


def _nanfill_convert(scope: Any, operator: Any, container: Any) -> None:
    from skl2onnx.algebra.onnx_ops import OnnxIsNaN, OnnxWhere
    from skl2onnx.common.data_types import guess_numpy_type
    from skl2onnx.operator_converters.common import concatenate_variables

    dtype = guess_numpy_type(operator.outputs[0].type)
    joined = concatenate_variables(scope, operator.inputs, container)
    fill = np.asarray(operator.raw_operator.values, dtype=dtype).reshape(1, -1)
    opv = container.target_opset
    node = OnnxWhere(
        OnnxIsNaN(joined, op_version=opv),
        fill,
        joined,
        op_version=opv,
        output_names=operator.outputs[:1],
    )
    node.add_to(scope, container)


def _register_converters() -> None:
    from skl2onnx import update_registered_converter

    update_registered_converter(NanFill, "SklambdaNanFill", _nanfill_shape, _nanfill_convert)


def _is_nan(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def for_export(pipeline: Any) -> Any:
    """A copy of the pipeline that skl2onnx can convert and that scores what the original does
    with the inputs serving feeds the graph; the parity check compares the copy's graph with
    the original pipeline. An imputer fitted on strings looks for ``MISSING_CATEGORY`` (how a
    missing category reaches the graph) where the original looks for NaN; one fitted on
    numbers becomes a ``NanFill`` with the same statistics."""

    def visit(est: Any) -> Any:
        if isinstance(est, Pipeline):
            est.steps = [(name, visit(step)) for name, step in est.steps]
        elif isinstance(est, ColumnTransformer):
            est.transformers_ = [(n, visit(t), c) for n, t, c in est.transformers_]
        elif isinstance(est, SimpleImputer) and _is_nan(est.missing_values):
            stats = getattr(est, "statistics_", None)
            if stats is not None and stats.dtype == object:
                est.missing_values = MISSING_CATEGORY
            elif (
                stats is not None
                and not getattr(est, "add_indicator", False)
                and not np.isnan(np.asarray(stats, dtype=np.float64)).any()
            ):
                return NanFill(values=np.asarray(stats, dtype=np.float64))
        return est

    _register_converters()
    return visit(deepcopy(pipeline))


def _steps(est: Any) -> list[tuple[str, Any]]:
    """A pipeline's steps with nested pipelines flattened; a bare estimator is one step."""
    if not isinstance(est, Pipeline):
        return [("model", est)]
    out: list[tuple[str, Any]] = []
    for name, step in est.steps:
        out += (
            [(f"{name}__{n}", s) for n, s in _steps(step)]
            if isinstance(step, Pipeline)
            else [(name, step)]
        )
    return out


def _final(est: Any) -> Any:
    return _steps(est)[-1][1]


def _tree_split(pipeline: Any) -> tuple[Pipeline | None, Any] | None:
    """``(preprocessing, tree model)`` of a pipeline that ends in a tree model (``None``
    preprocessing for a tree model alone): exported as two graphs joined by a float32 cast,
    the way scikit-learn runs it."""
    steps = _steps(pipeline)
    last = steps[-1][1]
    if not isinstance(last, TREE_MODELS):
        return None
    return (Pipeline(steps[:-1]) if len(steps) > 1 else None), last


def casts_to_float32(est: Any) -> bool:
    """Whether a tree model in the pipeline (anywhere: a step, a column transformer's part)
    casts its input to float32, which refuses a number float32 cannot hold."""
    return any(isinstance(e, TREE_MODELS) for e in _parts(est))


class NotExact(Exception):
    """An attempt that cannot give scikit-learn's answers, found before converting."""


def _convert(
    pipeline: Any, features: Sequence[Feature], output: Output, dtype: str, layout: Layout
) -> bytes:
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    number = DoubleTensorType if dtype == "float64" else FloatTensorType
    if layout == "matrix":
        inputs = [(MATRIX_INPUT, number([None, len(features)]))]
    else:
        inputs = [
            (f.name, StringTensorType([None, 1]) if f.kind == "categorical" else number([None, 1]))
            for f in features
        ]
    split = _tree_split(pipeline)
    final = _final(pipeline)
    if split is not None and dtype == "float32" and split[0] is not None:
        raise NotExact(
            "a tree model behind preprocessing: scikit-learn preprocesses in double precision "
            "and casts to float32 before the trees, a float32 graph rounds earlier"
        )
    if split is not None and dtype == "float64" and split[0] is None:
        raise NotExact(
            "a tree model alone takes float32 inputs (scikit-learn casts them; the float32 "
            "attempt is the exact one)"
        )
    if split is None or dtype == "float32":
        return _serialise(_forest_votes(_to_onnx(pipeline, inputs, output), final, output))
    # Preprocessing in double precision, then the tree model on float32, as in scikit-learn
    # (a double-precision tree graph would compare unrounded values with the thresholds).
    import onnx
    from onnx import compose, helper

    pre, model = split
    assert pre is not None
    first = _to_onnx(pre, inputs, output)
    (produced,) = first.graph.output
    first.graph.node.append(
        helper.make_node("Cast", [produced.name], [TREE_INPUT], to=onnx.TensorProto.FLOAT)
    )
    first.graph.output.pop()
    first.graph.output.append(
        helper.make_tensor_value_info(TREE_INPUT, onnx.TensorProto.FLOAT, None)
    )
    second = _to_onnx(model, [("X", FloatTensorType([None, model.n_features_in_]))], output)
    second = compose.add_prefix(second, "model_")
    _same_imports(first, second)
    merged = compose.merge_models(first, second, io_map=[(TREE_INPUT, "model_X")])
    return _serialise(_forest_votes(merged, final, output))


def _forest_votes(graph: Any, model: Any, output: Output) -> Any:
    """A forest classifier's graph that adds up its trees' votes exactly, as scikit-learn does.

    skl2onnx weighs each tree's leaf by ``1 / trees`` in float32, so where the trees tie (half
    say one class), the two sums differ in their last bit and the label tips either way, while
    scikit-learn's sums are exact and it takes the first class. Here the leaves weigh their class
    shares (whole numbers for pure leaves, so the sums are exact), the label is the first class
    with the largest sum (``ArgMax``), and the probabilities are the sums over the trees."""
    from onnx import helper, numpy_helper

    if output.task != "classification" or not isinstance(model, BaseForest) or not output.classes:
        return graph
    nodes = [n for n in graph.graph.node if n.op_type == "TreeEnsembleClassifier"]
    if len(nodes) != 1 or len(nodes[0].output) != 2:
        return graph
    (node,) = nodes
    attributes = {a.name: a for a in node.attribute}
    if attributes.get("post_transform") and attributes["post_transform"].s not in (b"", b"NONE"):
        return graph
    trees = len(model.estimators_)
    weights = np.asarray(attributes["class_weights"].floats, dtype=np.float64) * trees
    whole = np.round(weights)
    # only float32 rounding of a whole number is snapped back to it
    weights = np.where(np.abs(weights - whole) <= 1e-6 * np.maximum(1.0, whole), whole, weights)
    del attributes["class_weights"].floats[:]
    attributes["class_weights"].floats.extend(weights.astype(np.float32).tolist())
    label, probabilities = node.output
    sums, votes = f"{probabilities}_sums", f"{probabilities}_votes"
    node.output[0], node.output[1] = f"{label}_unused", sums
    classes = np.asarray(output.classes)
    binary = len(classes) == 2 and len(set(attributes["class_ids"].ints)) == 1
    new = []
    if binary:  # onnxruntime gives the second class's sum and fills the first with 1 - sum
        new += [
            helper.make_node("Slice", [sums, "sk_one", "sk_two", "sk_one"], ["sk_second"]),
            helper.make_node("Sub", ["sk_trees", "sk_second"], ["sk_first"]),
            helper.make_node("Concat", ["sk_first", "sk_second"], [votes], axis=1),
        ]
    else:
        new.append(helper.make_node("Identity", [sums], [votes]))
    labels = classes.astype(np.int64) if classes.dtype.kind in "iub" else classes.astype(object)
    new += [
        helper.make_node("Div", [votes, "sk_trees"], [probabilities]),
        helper.make_node("ArgMax", [votes], ["sk_first_largest"], axis=1, keepdims=0),
        helper.make_node("Gather", ["sk_classes", "sk_first_largest"], [label], axis=0),
    ]
    graph.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([1], dtype=np.int64), "sk_one"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "sk_two"),
            numpy_helper.from_array(np.array(trees, dtype=np.float32), "sk_trees"),
            numpy_helper.from_array(labels, "sk_classes"),
        ]
    )
    at = list(graph.graph.node).index(node) + 1
    for offset, extra in enumerate(new):
        graph.graph.node.insert(at + offset, extra)
    return graph


def _same_imports(*models: Any) -> None:
    """Give the models one IR version and one opset per domain (the highest any uses), as
    merging requires; skl2onnx imports only the opsets a graph uses, some at lower versions."""
    versions: dict[str, int] = {}
    for model in models:
        for entry in model.opset_import:
            versions[entry.domain] = max(versions.get(entry.domain, 0), entry.version)
    ir_version = max(model.ir_version for model in models)
    for model in models:
        del model.opset_import[:]
        for domain, version in sorted(versions.items()):
            entry = model.opset_import.add()
            entry.domain, entry.version = domain, version
        model.ir_version = ir_version


def _to_onnx(pipeline: Any, inputs: list[tuple[str, Any]], output: Output) -> Any:
    from skl2onnx import to_onnx

    options: dict[int, dict[str, Any]] | None = None
    if output.task == "classification":
        # Probabilities as a plain (rows, classes) tensor rather than a list of maps.
        options = {id(c): {"zipmap": False} for c in _classifiers(pipeline)}
    try:
        return to_onnx(pipeline, initial_types=inputs, options=options, target_opset=OPSET)
    except NameError:
        # A classifier without probabilities (LinearSVC, say) has no zipmap option; naming it
        # with no options keeps the exporter from adding one.
        if not options:
            raise
        options = {key: {} for key in options}
        return to_onnx(pipeline, initial_types=inputs, options=options, target_opset=OPSET)


def graph_inputs(graph: bytes) -> list[str]:
    """The graph's input names, in order."""
    import onnx

    return [i.name for i in onnx.load_from_string(graph).graph.input]


def _reason(exc: BaseException) -> str:
    """The exporter's or the runtime's whole message, on one line: the manifest keeps it in
    full, so a user can look it up."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


PROBE_ROWS = 50
"""Holdout rows each edge is tried on: a missing value can take another branch on every row."""


def probe_rows(
    features: Sequence[Feature], records: Sequence[Mapping[str, Any]], rows: int = PROBE_ROWS
) -> list[dict[str, Any]]:
    """Copies of valid rows with one edge each, on the first ``rows`` holdout rows: a nullable
    feature missing, every nullable feature missing at once, a category the pipeline never saw
    (where the schema lets it be scored), a number between whole numbers (a graph that casts a
    number to an integer category would round it). Serving meets all of them; a holdout may
    hold none."""
    probes: list[dict[str, Any]] = []
    nullable = [f.name for f in features if f.nullable]
    for record in records[:rows]:
        for f in features:
            value = record.get(f.name)
            if f.nullable:
                probes.append({**record, f.name: None})
            if f.kind == "categorical" and f.unseen == "score":
                probes.append({**record, f.name: UNSEEN})
            if f.kind == "numeric" and isinstance(value, (int, float)) and math.isfinite(value):
                between = value + 0.37
                if f.min is None or f.max is None or f.min <= between <= f.max:
                    probes.append({**record, f.name: between})
        if len(nullable) > 1:
            probes.append({**record, **dict.fromkeys(nullable)})
    return probes


def export(
    pipeline: Any,
    features: Sequence[Feature],
    output: Output,
    records: Sequence[Mapping[str, Any]],
) -> Export:
    """Try to export ``pipeline``; return the first graph that agrees with the pipeline on the
    holdout ``records`` plus probe rows, or the reasons none did."""
    probes = probe_rows(features, records)
    checked = InputSchema(features).validate([*records, *probes])
    if checked.errors:
        e = checked.errors[0]
        raise PackagingError(f"holdout row {e.row}, {e.field}: {e.reason}")
    columns = checked.columns
    try:
        reference = SklearnBackend(pipeline, output).score(columns, probabilities=True)
    except Exception as exc:  # the pipeline itself fails on a row the schema accepts
        raise PackagingError(_unscorable(pipeline, output, features, probes, exc)) from exc
    convertible = for_export(pipeline)
    layouts: list[Layout] = ["columns"]
    if len(features) > 1 and all(f.kind != "categorical" for f in features):
        layouts.append("matrix")  # an estimator with no column step takes one matrix
    tried: list[str] = []
    for layout in layouts:
        for dtype in ("float64", "float32"):
            what = f"{dtype}, {layout}"
            # skl2onnx and onnxruntime fail in many ways (unsupported estimator, missing
            # kernel, shape inference); each is a reason to fall back, recorded, never a crash.
            try:
                graph = _convert(convertible, features, output, dtype, layout)
                inputs = graph_inputs(graph)
            except NotExact as exc:
                tried.append(f"{what}: not tried ({exc})")
                continue
            except Exception as exc:
                tried.append(f"{what}: conversion failed ({_reason(exc)})")
                continue
            try:
                backend = OnnxBackend(graph, features, output, dtype, MISSING_CATEGORY, inputs)
                scores = backend.score(columns, probabilities=True)
            except Exception as exc:
                tried.append(f"{what}: onnxruntime cannot run the graph ({_reason(exc)})")
                continue
            check = parity(reference, scores, output, probes=len(probes))
            if check.passed:
                info = OnnxInfo(
                    file=ONNX_FILE,
                    opset=OPSET[""],
                    input_dtype=dtype,
                    missing_category=MISSING_CATEGORY,
                    parity=check,
                    inputs=inputs,
                )
                found = Export(graph, info, _agreement(check, dtype))
                return _with_edge(found, features, output, columns, reference, len(probes))
            tried.append(f"{what}: {_disagreement(check)}")
    return Export(None, None, "the ONNX export was not used: " + "; ".join(tried))


def _with_edge(
    exported: Export,
    features: Sequence[Feature],
    output: Output,
    columns: Columns,
    reference: Scores,
    probes: int,
) -> Export:
    """``exported`` with its edge graph (``sklambda_tools.edge.edge_graph``) when the edge
    runtimes can read one that agrees with the pipeline as the serving graph must: scored on the
    same rows, compared with the pipeline's answers with the same tolerance."""
    from sklambda_tools.edge import EDGE_FILE, NotEdgeReady, edge_graph

    graph, info = exported.graph, exported.info
    assert graph is not None and info is not None
    try:
        edge, outputs = edge_graph(graph)
    except NotEdgeReady:
        return exported
    if edge == graph:  # the serving graph ends in tensors already: its check is the edge's
        return replace(exported, edge=EdgeInfo(file=ONNX_FILE, outputs=outputs, parity=info.parity))
    try:
        backend = OnnxBackend(
            edge, features, output, info.input_dtype, info.missing_category, info.inputs
        )
        check = parity(reference, backend.score(columns, probabilities=True), output, probes)
    except Exception:  # the cut graph does not run: no edge graph, the serving one stands
        return exported
    if not check.passed:
        return exported
    found = EdgeInfo(file=EDGE_FILE, outputs=outputs, parity=check)
    return replace(exported, edge=found, edge_graph=edge)


def _unscorable(
    pipeline: Any,
    output: Output,
    features: Sequence[Feature],
    probes: Sequence[Mapping[str, Any]],
    exc: BaseException,
) -> str:
    """Name the first probe row the pipeline cannot score, and what to pass instead."""
    backend = SklearnBackend(pipeline, output)
    schema = InputSchema(features)
    for probe in probes:
        try:
            backend.score(schema.validate([probe]).columns, probabilities=True)
        except Exception as failure:
            edge = [f.name for f in features if probe.get(f.name) is None]
            unseen = [f.name for f in features if probe.get(f.name) == UNSEEN]
            if unseen:
                what, fix = f"an unseen category in {unseen[0]}", "an encoder that handles it"
            elif edge:
                what = f"{', '.join(edge)} missing"
                fix = f"--not-nullable {','.join(edge)} (or an imputer)"
            else:
                what, fix = "a number between the holdout's values", "a numeric feature kind"
            return (
                f"the pipeline cannot score a row the schema accepts ({what}): "
                f"{_reason(failure)}; package with {fix}"
            )
    return f"the pipeline cannot score the holdout with the probe rows: {_reason(exc)}"


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
