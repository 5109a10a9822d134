"""The Open Inference Protocol (KServe's "V2" REST protocol) as a door to the scoring core.

A V2 request carries tensors: MLServer's pandas codec sends one input per feature (shape
``[N, 1]`` or ``[N]``, ``BYTES`` for strings, a numeric datatype for numbers, ``null`` for a
missing value), and an all-numeric model also takes one 2-D input ``[N, features]`` in the
manifest's feature order. This module checks the tensors (names, shapes, datatypes, each
element against its datatype), turns them into the rows the core validates
(``sklambda.scoring.predict_all``), and writes the core's answer as output tensors: ``predict``
(the label, or the value of a regressor, shape ``[N, 1]`` as MLServer's sklearn runtime returns
it) and, for a classifier with probabilities, ``predict_proba`` (``FP64``, ``[N, classes]``).

A feature's reasons are the core's, so a bad row gets the same reason as through ``/predict``;
only its place is written for tensors: ``row 3, 'island' (inputs[0])`` for a column input and
``row 3, 'body_mass_g' (inputs[0] column 4)`` for the 2-D input (the native API's
``instances[3].island``). A malformed tensor is named by its place in the request
(``inputs[2].shape``, ``inputs[2].data[5]``, ``outputs[0].name``). The handler chooses the
statuses (``functions/predict/app.py``); this module never sees an event.

Not supported: the binary tensor extension (refused, naming the parameter), shared memory,
the classification extension, and the protocol's per-output parameters other than
``binary_data: false``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from sklambda.errors import FieldError, SklambdaError
from sklambda.schema import FLOAT32_LIMIT, _cut, number_limit
from sklambda.typed import describe

if TYPE_CHECKING:
    from sklambda.manifest import Feature, Manifest
    from sklambda.model import Model
    from sklambda.scoring import Scored

MAX_REASONS = 100  # reasons in one error message; the rest are counted
PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
CONTENT_TYPES = ("pd", "np")  # request-level content types MLServer's codecs write
INPUT_CONTENT_TYPES = ("str", "np", "pd_json")
_INT_BOUNDS = {
    f"{kind}{bits}": (
        (0, 2**bits - 1) if kind == "UINT" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    )
    for kind in ("INT", "UINT")
    for bits in (8, 16, 32, 64)
}
_FLOAT_LIMITS = {"FP16": 65520.0, "FP32": FLOAT32_LIMIT, "FP64": math.inf}
NUMERIC = frozenset(_INT_BOUNDS) | frozenset(_FLOAT_LIMITS)
DATATYPES = NUMERIC | {"BOOL", "BYTES"}


class TensorRefused(SklambdaError):
    """A V2 request whose tensors, or whose rows, cannot be scored: a fixed message and the
    reasons, each naming its place (at most ``MAX_REASONS``; ``omitted`` counts the others)."""

    def __init__(self, message: str, reasons: list[str], omitted: int = 0) -> None:
        super().__init__(message)
        self.message, self.reasons, self.omitted = message, reasons, omitted

    def text(self) -> str:
        """The whole message, as the protocol's ``{"error": ...}`` carries it."""
        text = f"{self.message}: {'; '.join(self.reasons)}" if self.reasons else self.message
        return f"{text} ({self.omitted} more not shown)" if self.omitted else text


class TooManyRows(SklambdaError):
    """More rows than a request may carry."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a request may carry at most {limit} rows")
        self.limit = limit


class UnknownModel(SklambdaError):
    """A model name or version this API does not serve."""


MALFORMED = "the request does not match the Open Inference Protocol"
INVALID_ROWS = "some rows do not match the model's input schema"


class _Reasons:
    """Reasons collected up to ``MAX_REASONS``; the others only counted."""

    __slots__ = ("items", "omitted")

    def __init__(self) -> None:
        self.items: list[str] = []
        self.omitted = 0

    def add(self, path: str, reason: str) -> None:
        if len(self.items) < MAX_REASONS:
            self.items.append(f"{path}: {reason}")
        else:
            self.omitted += 1

    def raise_if_any(self, message: str = MALFORMED) -> None:
        if self.items:
            raise TensorRefused(message, self.items, self.omitted)


def _echo(value: str) -> str:
    return repr(_cut(value))


# --- the model as the protocol describes it ---------------------------------------------------


def datatype(feature: Feature, manifest: Manifest) -> str:
    """The datatype a feature's input is described with: ``BYTES`` for a category, ``FP32``
    for a number when the artifact takes float32 (else ``FP64``), ``INT64``, ``BOOL``."""
    if feature.kind == "categorical":
        return "BYTES"
    if feature.kind == "integer":
        return "INT64"
    if feature.kind == "boolean":
        return "BOOL"
    return "FP32" if number_limit(manifest) == FLOAT32_LIMIT else "FP64"


def _label_datatype(classes: Sequence[Any]) -> str:
    if classes and all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return "INT64"
    return "BYTES"


def output_names(model: Model) -> list[str]:
    """The outputs a request may ask for, in the order they are answered by default."""
    if model.task == "classification" and model.manifest.output.probabilities:
        return [PREDICT, PREDICT_PROBA]
    return [PREDICT]


def metadata(model: Model) -> dict[str, Any]:
    """The model metadata response: the features as inputs, the outputs with their shapes."""
    manifest = model.manifest
    inputs = [
        {"name": f.name, "datatype": datatype(f, manifest), "shape": [-1, 1]}
        for f in manifest.features
    ]
    classes = list(model.classes or ())
    outputs = [
        {
            "name": PREDICT,
            "datatype": "FP64" if model.task == "regression" else _label_datatype(classes),
            "shape": [-1, 1],
        }
    ]
    if PREDICT_PROBA in output_names(model):
        outputs.append({"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, len(classes)]})
    parameters: dict[str, Any] = {"content_type": "pd"}
    if classes:
        parameters["classes"] = json.dumps(classes)  # the columns of predict_proba, in order
    return {
        "name": model.name,
        "versions": [model.version],
        "platform": "onnx_onnxv1" if model.runtime == "onnx" else "sklearn_joblib",
        "inputs": inputs,
        "outputs": outputs,
        "parameters": parameters,
    }


def check_model(model: Model, name: str | None, version: str | None) -> None:
    """Raise ``UnknownModel`` unless ``name`` (and ``version``, when given) are the model's."""
    if name != model.name:
        raise UnknownModel(f"unknown model: this API serves the model {model.name!r}")
    if version is not None and version != model.version:
        raise UnknownModel(
            f"unknown version of the model {model.name!r}: this API serves version "
            f"{model.version!r}"
        )


# --- the request ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """A checked V2 request: the rows for the core, the outputs to answer, and where each
    feature came from (for the reasons of a bad row)."""

    id: str | None
    rows: list[dict[str, Any]]
    outputs: list[str]
    places: dict[str, str]  # feature -> "'island' (inputs[0])"

    def row_reasons(self, errors: Sequence[FieldError]) -> TensorRefused:
        """The core's reasons of bad rows, placed in the request's tensors."""
        reasons = _Reasons()
        for error in errors:
            where = f"row {error.row}"
            if error.field is not None:
                where += f", {self.places.get(error.field, repr(error.field))}"
            reasons.add(where, error.reason)
        return TensorRefused(INVALID_ROWS, reasons.items, reasons.omitted)


def _parameters(value: Any, path: str, reasons: _Reasons) -> dict[str, Any]:
    """A ``parameters`` object: string keys to strings, numbers or booleans (the protocol's)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        reasons.add(path, f"expected an object, got {describe(value)}")
        return {}
    for key, item in value.items():
        if not isinstance(item, (str, int, float)) or (
            isinstance(item, float) and not math.isfinite(item)
        ):
            reasons.add(
                f"{path}.{_cut(str(key))}",
                f"expected a string, number or boolean, got {describe(item)}",
            )
    return value


def _is_shape(shape: Any) -> TypeGuard[list[int]]:
    return isinstance(shape, list) and all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    )


def _flatten(data: list[Any], shape: list[int]) -> list[Any] | None:
    """The elements of ``data`` in row-major order: flat data as it is, nested data only when
    it is the shape's natural form; ``None`` for nesting that is neither."""
    if not any(isinstance(x, list) for x in data):
        return data
    flat: list[Any] = []

    def walk(node: list[Any], depth: int) -> bool:
        if len(node) != shape[depth]:
            return False
        if depth == len(shape) - 1:
            if any(isinstance(x, list) for x in node):
                return False
            flat.extend(node)
            return True
        return all(isinstance(x, list) and walk(x, depth + 1) for x in node)

    return flat if shape and walk(data, 0) else None


def _element_check(name: str, content_type: Any) -> Callable[[Any], tuple[Any, str | None]]:
    """A function giving ``(value for the core, reason)`` for one element of a ``name``
    tensor (``null`` is a missing value in every datatype)."""
    if name in _INT_BOUNDS:
        low, high = _INT_BOUNDS[name]

        def integer(x: Any) -> tuple[Any, str | None]:
            if x is None:
                return None, None
            if isinstance(x, bool) or not isinstance(x, int):
                return None, f"expected an integer ({name}), got {describe(x)}"
            if not low <= x <= high:
                return None, f"number out of range for {name}"
            return x, None

        return integer
    if name in _FLOAT_LIMITS:
        limit = _FLOAT_LIMITS[name]

        def number(x: Any) -> tuple[Any, str | None]:
            if x is None:
                return None, None
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                return None, f"expected a number ({name}), got {describe(x)}"
            # NaN and infinity go to the core, which gives the native API's reasons
            if math.isfinite(limit) and math.isfinite(x) and abs(x) >= limit:
                return None, f"number out of range for {name}"
            return x, None

        return number
    if name == "BOOL":

        def boolean(x: Any) -> tuple[Any, str | None]:
            if x is None or isinstance(x, bool):
                return x, None
            return None, f"expected a boolean (BOOL), got {describe(x)}"

        return boolean
    if content_type == "pd_json":  # MLServer's codec writes each element as JSON text

        def json_text(x: Any) -> tuple[Any, str | None]:
            if x is None:
                return None, None
            if not isinstance(x, str):
                return None, f"expected a string (BYTES), got {describe(x)}"
            try:
                return json.loads(x), None
            except (ValueError, RecursionError):
                return None, "not JSON text (the input's content_type is pd_json)"

        return json_text

    def text(x: Any) -> tuple[Any, str | None]:
        if x is None or isinstance(x, str):
            return x, None
        return None, f"expected a string (BYTES), got {describe(x)}"

    return text


def _allowed(feature: Feature) -> frozenset[str]:
    if feature.kind == "categorical":
        return frozenset({"BYTES"})
    if feature.kind == "boolean":
        return frozenset({"BOOL"})
    return NUMERIC


@dataclass(slots=True)
class _Tensor:
    index: int
    name: str
    shape: list[int]
    datatype: str
    content_type: Any
    data: list[Any]


def _tensors(inputs: Any, reasons: _Reasons) -> list[_Tensor]:
    """The well-formed inputs (name, shape, datatype, data, parameters); reasons for the rest."""
    if not isinstance(inputs, list):
        reasons.add("inputs", "required" if inputs is None else "expected an array")
        return []
    if not inputs:
        reasons.add("inputs", "must hold at least one input")
        return []
    tensors: list[_Tensor] = []
    seen: set[str] = set()
    for i, item in enumerate(inputs):
        at = f"inputs[{i}]"
        if not isinstance(item, dict):
            reasons.add(at, f"expected an object, got {describe(item)}")
            continue
        problems = len(reasons.items) + reasons.omitted
        name, shape, kind, data = (item.get(k) for k in ("name", "shape", "datatype", "data"))
        if not isinstance(name, str) or not name:
            reasons.add(f"{at}.name", "required" if name is None else "expected a non-empty string")
        elif name in seen:
            reasons.add(f"{at}.name", f"duplicate input {_echo(name)}")
        else:
            seen.add(name)
        if not _is_shape(shape):
            reasons.add(
                f"{at}.shape",
                "required" if shape is None else "expected an array of non-negative integers",
            )
        elif not 1 <= len(shape) <= 2:
            reasons.add(f"{at}.shape", "expected [N], [N, 1] or [N, features]")
        if not isinstance(kind, str) or kind not in DATATYPES:
            reasons.add(
                f"{at}.datatype",
                "required"
                if kind is None
                else f"expected one of the protocol's datatypes {sorted(DATATYPES)}",
            )
        if not isinstance(data, list):
            reasons.add(f"{at}.data", "required" if data is None else "expected an array")
        parameters = _parameters(item.get("parameters"), f"{at}.parameters", reasons)
        content_type = parameters.get("content_type")
        if content_type is not None and content_type not in INPUT_CONTENT_TYPES:
            reasons.add(
                f"{at}.parameters.content_type", f"expected one of {list(INPUT_CONTENT_TYPES)}"
            )
        for key in ("binary_data_size", "shared_memory_region"):
            if key in parameters:
                reasons.add(
                    f"{at}.parameters.{key}",
                    "binary and shared-memory tensors are not supported; send the data as "
                    "JSON (tritonclient: set_data_from_numpy(..., binary_data=False))",
                )
        if len(reasons.items) + reasons.omitted > problems:
            continue
        assert isinstance(name, str) and isinstance(kind, str) and isinstance(data, list)
        assert isinstance(shape, list)
        flat = _flatten(data, shape)
        if flat is None:
            reasons.add(f"{at}.data", f"nested data that is not the natural form of shape {shape}")
            continue
        if math.prod(shape) != len(flat):
            reasons.add(
                f"{at}.data",
                f"{len(flat)} elements, but shape {shape} holds {math.prod(shape)}",
            )
            continue
        tensors.append(_Tensor(i, name, shape, kind, content_type, flat))
    return tensors


def _values(tensor: _Tensor, reasons: _Reasons) -> list[Any]:
    """A tensor's elements checked against its datatype, as values for the core."""
    check = _element_check(tensor.datatype, tensor.content_type)
    values = []
    at = f"inputs[{tensor.index}].data"
    for k, element in enumerate(tensor.data):
        value, reason = check(element)
        if reason is not None:
            reasons.add(f"{at}[{k}]", reason)
        values.append(value)
    return values


def _outputs(requested: Any, model: Model, reasons: _Reasons) -> list[str]:
    available = output_names(model)
    if requested is None or requested == []:
        return available
    if not isinstance(requested, list):
        reasons.add("outputs", f"expected an array, got {describe(requested)}")
        return available
    names: list[str] = []
    for i, item in enumerate(requested):
        at = f"outputs[{i}]"
        if not isinstance(item, dict):
            reasons.add(at, f"expected an object, got {describe(item)}")
            continue
        name = item.get("name")
        parameters = _parameters(item.get("parameters"), f"{at}.parameters", reasons)
        if parameters.get("binary_data") not in (None, False):
            reasons.add(
                f"{at}.parameters.binary_data",
                "binary outputs are not supported; ask for JSON "
                "(tritonclient: InferRequestedOutput(name, binary_data=False))",
            )
        for key in ("classification", "shared_memory_region"):
            if key in parameters:
                reasons.add(f"{at}.parameters.{key}", "not supported")
        if not isinstance(name, str):
            reasons.add(f"{at}.name", "required" if name is None else "expected a string")
        elif name not in available:
            reasons.add(f"{at}.name", f"unknown output {_echo(name)}; expected one of {available}")
        elif name in names:
            reasons.add(f"{at}.name", f"duplicate output {_echo(name)}")
        else:
            names.append(name)
    return names


def parse(model: Model, document: Any, max_rows: int) -> Request:
    """Check a V2 inference request (a parsed JSON document) and build its rows.

    Raises
    ------
    TensorRefused
        Every reason the request's envelope or tensors are wrong, each naming its place.
    TooManyRows
        More than ``max_rows`` rows.
    """
    reasons = _Reasons()
    if not isinstance(document, dict):
        reasons.add("body", "required" if document is None else "expected a JSON object")
        reasons.raise_if_any()
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        reasons.add("id", f"expected a string, got {describe(request_id)}")
    parameters = _parameters(document.get("parameters"), "parameters", reasons)
    content_type = parameters.get("content_type")
    if content_type is not None and content_type not in CONTENT_TYPES:
        reasons.add("parameters.content_type", f"expected one of {list(CONTENT_TYPES)}")
    if parameters.get("binary_data_output") not in (None, False):
        reasons.add(
            "parameters.binary_data_output",
            "binary outputs are not supported; ask for each output with "
            "binary_data=False (tritonclient: InferRequestedOutput(name, binary_data=False))",
        )
    outputs = _outputs(document.get("outputs"), model, reasons)
    tensors = _tensors(document.get("inputs"), reasons)
    reasons.raise_if_any()
    features = model.manifest.features
    by_name = {f.name: f for f in features}
    if len(tensors) == 1 and tensors[0].name not in by_name and len(tensors[0].shape) == 2:
        rows, places = _matrix(tensors[0], features, reasons)
    else:
        rows, places = _columns(tensors, by_name, reasons)
    reasons.raise_if_any()
    if len(rows) > max_rows:
        raise TooManyRows(max_rows)
    return Request(request_id, rows, outputs, places)


def _no_rows(reasons: _Reasons, at: str) -> None:
    reasons.add(at, "must hold at least one row")


def _columns(
    tensors: list[_Tensor], by_name: Mapping[str, Feature], reasons: _Reasons
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """One input per feature, shape ``[N]`` or ``[N, 1]``."""
    for tensor in tensors:
        if tensor.name not in by_name:
            hint = (
                "; a single 2-D input serves all-numeric models only"
                if len(tensors) == 1 and len(tensor.shape) == 2
                else ""
            )
            reasons.add(
                f"inputs[{tensor.index}].name",
                f"unknown input {_echo(tensor.name)}; the model's inputs are {list(by_name)}{hint}",
            )
    present = {t.name for t in tensors}
    for name in by_name:
        if name not in present:
            reasons.add("inputs", f"missing input {name!r}")
    if reasons.items:
        return [], {}
    rows_of: int | None = None
    columns: dict[str, list[Any]] = {}
    places: dict[str, str] = {}
    for tensor in tensors:
        at = f"inputs[{tensor.index}]"
        feature = by_name[tensor.name]
        places[feature.name] = f"{feature.name!r} ({at})"
        shape = tensor.shape
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            reasons.add(f"{at}.shape", f"expected [N] or [N, 1] (one column), got {shape}")
            continue
        if rows_of is None:
            rows_of = shape[0]
        elif shape[0] != rows_of:
            reasons.add(
                f"{at}.shape",
                f"{shape[0]} rows, but inputs[{tensors[0].index}] has {rows_of}",
            )
            continue
        if tensor.datatype not in _allowed(feature):
            reasons.add(
                f"{at}.datatype",
                f"{tensor.datatype} does not fit the {feature.kind} feature {feature.name!r}; "
                f"expected {_expected(feature)}",
            )
            continue
        columns[feature.name] = _values(tensor, reasons)
    if rows_of == 0:
        _no_rows(reasons, "inputs[0].shape")
    if reasons.items or rows_of is None:
        return [], places
    names = list(by_name)
    values = [columns[n] for n in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)], places


def _expected(feature: Feature) -> str:
    if feature.kind == "categorical":
        return "BYTES"
    if feature.kind == "boolean":
        return "BOOL"
    return "a numeric datatype (INT*, UINT*, FP*)"


def _matrix(
    tensor: _Tensor, features: Sequence[Feature], reasons: _Reasons
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """One 2-D input ``[N, features]``, columns in the manifest's feature order."""
    at = f"inputs[{tensor.index}]"
    names = [f.name for f in features]
    if any(f.kind not in ("numeric", "integer") for f in features):
        reasons.add(
            f"{at}.name",
            f"unknown input {_echo(tensor.name)}; the model's inputs are {names} (a single 2-D "
            "input serves all-numeric models only)",
        )
        return [], {}
    rows, width = tensor.shape
    if width != len(names):
        reasons.add(f"{at}.shape", f"expected [N, {len(names)}] (one column per feature {names})")
    if tensor.datatype not in NUMERIC:
        reasons.add(f"{at}.datatype", "expected a numeric datatype (INT*, UINT*, FP*)")
    if rows == 0:
        _no_rows(reasons, f"{at}.shape")
    if reasons.items:
        return [], {}
    values = _values(tensor, reasons)
    places = {n: f"{n!r} ({at} column {j})" for j, n in enumerate(names)}
    return [
        dict(zip(names, values[r * width : (r + 1) * width], strict=True)) for r in range(rows)
    ], places


# --- the response -----------------------------------------------------------------------------


def response(model: Model, request: Request, scored: Scored) -> dict[str, Any]:
    """The inference response: the requested outputs of every row, in the request's order."""
    scores = scored.scores
    n = len(scored.rows)
    outputs: list[dict[str, Any]] = []
    for name in request.outputs:
        if name == PREDICT_PROBA:
            assert scores.probabilities is not None
            proba = scores.probabilities
            outputs.append(
                {
                    "name": PREDICT_PROBA,
                    "datatype": "FP64",
                    "shape": [n, int(proba.shape[1])],
                    "data": proba.astype("float64", copy=False).ravel().tolist(),
                }
            )
        elif scores.values is not None:
            outputs.append(
                {
                    "name": PREDICT,
                    "datatype": "FP64",
                    "shape": [n, 1],
                    "data": scores.values.astype("float64", copy=False).tolist(),
                }
            )
        else:
            assert scores.labels is not None
            outputs.append(
                {
                    "name": PREDICT,
                    "datatype": _label_datatype(list(model.classes or ())),
                    "shape": [n, 1],
                    "data": scores.labels.tolist(),
                }
            )
    body: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if request.id is not None:
        body["id"] = request.id
    body["outputs"] = outputs
    return body
