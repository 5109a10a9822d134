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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard
from weakref import WeakKeyDictionary

from sklambda.errors import FieldError, SklambdaError
from sklambda.schema import FLOAT32_LIMIT, _cut, _echo, number_limit
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
    places: dict[str, tuple[int, int | None]]  # feature -> (its input, its column in a 2-D one)

    def row_reasons(self, errors: Sequence[FieldError]) -> TensorRefused:
        """The core's reasons of bad rows, placed in the request's tensors:
        ``row 3, 'island' (inputs[0])``, ``row 3, 'age' (inputs[0] column 1)``."""
        reasons = _Reasons()
        for error in errors:
            where = f"row {error.row}"
            if error.field is not None:
                where += f", {error.field!r}"
                if error.field in self.places:
                    index, column = self.places[error.field]
                    at = (
                        f"inputs[{index}]" if column is None else f"inputs[{index}] column {column}"
                    )
                    where += f" ({at})"
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
            # NaN and infinity go to the core, which gives the native API's reasons; an
            # integer is compared exactly, however long (no conversion to a double)
            if isinstance(x, float) and not math.isfinite(x):
                return x, None
            if abs(x) >= limit:
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
    kinds: frozenset[type] | None = None  # the elements' types, when the quick check saw them


_QUICK_PARAMETERS = frozenset({"content_type"})


def _quick(index: int, item: Any) -> _Tensor | None:
    """A plainly well-formed input (flat data of the shape's size, no parameter but a known
    content type), found with few checks; ``None`` sends it to ``_tensors``' full checks."""
    if type(item) is not dict:
        return None
    name, shape, kind, data = (
        item.get("name"),
        item.get("shape"),
        item.get("datatype"),
        item.get("data"),
    )
    parameters = item.get("parameters")
    if (
        type(name) is not str
        or not name
        or type(kind) is not str
        or kind not in DATATYPES
        or type(data) is not list
        or type(shape) is not list
    ):
        return None
    content_type = None
    if parameters is not None:
        if type(parameters) is not dict or not _QUICK_PARAMETERS.issuperset(parameters):
            return None
        content_type = parameters.get("content_type")
        if content_type is not None and content_type not in INPUT_CONTENT_TYPES:
            return None
    if len(shape) == 1:
        (size,) = shape
        if type(size) is not int or size < 0:
            return None
    elif len(shape) == 2:
        rows, width = shape
        if type(rows) is not int or type(width) is not int or rows < 0 or width < 0:
            return None
        size = rows * width
    else:
        return None
    if len(data) != size:
        return None
    kinds = frozenset(map(type, data))
    if list in kinds:
        return None  # nested data: the full checks flatten it
    return _Tensor(index, name, shape, kind, content_type, data, kinds)


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
        quick = _quick(i, item)
        if quick is not None and quick.name not in seen:
            seen.add(quick.name)
            tensors.append(quick)
            continue
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


_NONE = type(None)
_PLAIN: dict[str, frozenset[type]] = {
    "FP64": frozenset({float, int, _NONE}),
    "BYTES": frozenset({str, _NONE}),
    "BOOL": frozenset({bool, _NONE}),
}


def _values(tensor: _Tensor, reasons: _Reasons) -> list[Any]:
    """A tensor's elements checked against its datatype, as values for the core."""
    plain = _PLAIN.get(tensor.datatype)
    if (
        plain is not None
        and tensor.kinds is not None
        and tensor.kinds <= plain
        and tensor.content_type != "pd_json"
    ):
        return tensor.data  # every element is of the datatype's JSON type: nothing to convert
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


def parse(model: Model, document: Any, max_rows: int, *, quick: bool = True) -> Request:
    """Check a V2 inference request (a parsed JSON document) and build its rows.

    A plainly well-formed request (one column input per feature, the datatypes the metadata
    names or INT64, no parameter but the content types) takes a quick path with the same
    answer; any doubt, or ``quick=False``, takes the full checks, where every reason is found.

    Raises
    ------
    TensorRefused
        Every reason the request's envelope or tensors are wrong, each naming its place.
    TooManyRows
        More than ``max_rows`` rows.
    """
    if quick:
        found = _quick_request(model, document)
        if found is not None:
            if len(found.rows) > max_rows:
                raise TooManyRows(max_rows)
            return found
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
    plan = _plan(model)
    if len(tensors) == 1 and tensors[0].name not in plan.by_name and len(tensors[0].shape) == 2:
        rows, places = _matrix(tensors[0], plan, reasons)
    else:
        rows, places = _columns(tensors, plan, reasons)
    reasons.raise_if_any()
    if len(rows) > max_rows:
        raise TooManyRows(max_rows)
    return Request(request_id, rows, outputs, places)


_QUICK_TYPES: dict[str, frozenset[type]] = {
    **_PLAIN,
    "INT64": frozenset({int, _NONE}),
}
_INT64 = _INT_BOUNDS["INT64"]
_NO_TYPES: dict[str, frozenset[type]] = {}


def _quick_request(model: Model, document: Any) -> Request | None:
    """The request when it is plainly well formed (see ``parse``), else ``None``."""
    if type(document) is not dict:
        return None
    request_id, parameters = document.get("id"), document.get("parameters")
    if request_id is not None and type(request_id) is not str:
        return None
    if parameters is not None and (
        type(parameters) is not dict
        or not _QUICK_PARAMETERS.issuperset(parameters)
        or parameters.get("content_type") not in (None, *CONTENT_TYPES)
    ):
        return None
    plan = _plan(model)
    outputs = _quick_outputs(document.get("outputs"), plan)
    inputs = document.get("inputs")
    if outputs is None or type(inputs) is not list or len(inputs) != len(plan.names):
        return None
    columns: dict[str, list[Any]] = {}
    places: dict[str, tuple[int, int | None]] = {}
    n = -1
    for index, item in enumerate(inputs):
        if type(item) is not dict:
            return None
        name, kind = item.get("name"), item.get("datatype")
        shape, data = item.get("shape"), item.get("data")
        if type(name) is not str or type(kind) is not str or name in columns:
            return None
        plain = plan.quick.get(name, _NO_TYPES).get(kind)  # the element types its datatype takes
        if plain is None:
            return None
        extra = item.get("parameters")
        if extra is not None and (
            type(extra) is not dict
            or not _QUICK_PARAMETERS.issuperset(extra)
            or extra.get("content_type") not in (None, "str", "np")
        ):
            return None
        if type(shape) is not list or type(data) is not list:
            return None
        if len(shape) == 2:
            rows, width = shape
            if type(width) is not int or width != 1:
                return None
        elif len(shape) == 1:
            rows = shape[0]
        else:
            return None
        if type(rows) is not int or rows != len(data) or (n != -1 and rows != n):
            return None
        if not plain.issuperset(map(type, data)):
            return None
        if kind == "INT64":
            low, high = _INT64
            if not all(low <= x <= high for x in data if x is not None):
                return None
        n = rows
        columns[name] = data
        places[name] = (index, None)
    if n < 1:
        return None
    names = plan.names
    if n == 1:
        return Request(request_id, [{k: columns[k][0] for k in names}], outputs, places)
    values = [columns[k] for k in names]
    table = [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]
    return Request(request_id, table, outputs, places)


def _quick_outputs(requested: Any, plan: _Plan) -> list[str] | None:
    if requested is None or requested == []:
        return plan.outputs
    if type(requested) is not list:
        return None
    names: list[str] = []
    for item in requested:
        if type(item) is not dict or not {"name", "parameters"}.issuperset(item):
            return None
        name, extra = item.get("name"), item.get("parameters")
        if type(name) is not str or name not in plan.outputs or name in names:
            return None
        if extra is not None and extra != {} and extra != {"binary_data": False}:
            return None
        if extra and type(extra["binary_data"]) is not bool:
            return None
        names.append(name)
    return names


def _no_rows(reasons: _Reasons, at: str) -> None:
    reasons.add(at, "must hold at least one row")


def _columns(
    tensors: list[_Tensor], plan: _Plan, reasons: _Reasons
) -> tuple[list[dict[str, Any]], dict[str, tuple[int, int | None]]]:
    """One input per feature, shape ``[N]`` or ``[N, 1]``."""
    by_name = plan.by_name
    present = {t.name for t in tensors}
    if present != plan.names_set:
        for tensor in tensors:
            if tensor.name not in by_name:
                hint = (
                    "; a single 2-D input serves all-numeric models only"
                    if len(tensors) == 1 and len(tensor.shape) == 2
                    else ""
                )
                reasons.add(
                    f"inputs[{tensor.index}].name",
                    f"unknown input {_echo(tensor.name)}; the model's inputs are "
                    f"{plan.names}{hint}",
                )
        for name in plan.names:
            if name not in present:
                reasons.add("inputs", f"missing input {name!r}")
        return [], {}
    rows_of = tensors[0].shape[0]
    columns: dict[str, list[Any]] = {}
    places: dict[str, tuple[int, int | None]] = {}
    allowed = plan.allowed
    for tensor in tensors:
        name, shape = tensor.name, tensor.shape
        places[name] = (tensor.index, None)
        if len(shape) == 2 and shape[1] != 1:
            reasons.add(
                f"inputs[{tensor.index}].shape",
                f"expected [N] or [N, 1] (one column), got {shape}",
            )
        elif shape[0] != rows_of:
            reasons.add(
                f"inputs[{tensor.index}].shape",
                f"{shape[0]} rows, but inputs[{tensors[0].index}] has {rows_of}",
            )
        elif tensor.datatype not in allowed[name]:
            feature = by_name[name]
            reasons.add(
                f"inputs[{tensor.index}].datatype",
                f"{tensor.datatype} does not fit the {feature.kind} feature {name!r}; "
                f"expected {_expected(feature)}",
            )
        else:
            columns[name] = _values(tensor, reasons)
    if rows_of == 0:
        _no_rows(reasons, f"inputs[{tensors[0].index}].shape")
    if reasons.items:
        return [], places
    names = plan.names
    if rows_of == 1:
        return [{n: columns[n][0] for n in names}], places
    values = [columns[n] for n in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)], places


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the checks need of a model, built once per model."""

    names: list[str]
    names_set: frozenset[str]
    by_name: dict[str, Feature]
    allowed: dict[str, frozenset[str]]  # feature -> the datatypes its input may have
    numeric: bool  # every feature a number: one 2-D input may carry them all
    outputs: list[str]  # the outputs a request may ask for
    label_datatype: str
    quick: dict[str, dict[str, frozenset[type]]]  # feature -> datatype -> its element types


_plans: WeakKeyDictionary[Model, _Plan] = WeakKeyDictionary()


def _plan(model: Model) -> _Plan:
    found = _plans.get(model)
    if found is None:
        features = model.manifest.features
        found = _plans[model] = _Plan(
            names=[f.name for f in features],
            names_set=frozenset(f.name for f in features),
            by_name={f.name: f for f in features},
            allowed={f.name: _allowed(f) for f in features},
            numeric=all(f.kind in ("numeric", "integer") for f in features),
            outputs=output_names(model),
            label_datatype=_label_datatype(list(model.classes or ())),
            quick={
                f.name: {k: t for k, t in _QUICK_TYPES.items() if k in _allowed(f)}
                for f in features
            },
        )
    return found


def _expected(feature: Feature) -> str:
    if feature.kind == "categorical":
        return "BYTES"
    if feature.kind == "boolean":
        return "BOOL"
    return "a numeric datatype (INT*, UINT*, FP*)"


def _matrix(
    tensor: _Tensor, plan: _Plan, reasons: _Reasons
) -> tuple[list[dict[str, Any]], dict[str, tuple[int, int | None]]]:
    """One 2-D input ``[N, features]``, columns in the manifest's feature order."""
    at = f"inputs[{tensor.index}]"
    names = plan.names
    if not plan.numeric:
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
    places: dict[str, tuple[int, int | None]] = {n: (tensor.index, j) for j, n in enumerate(names)}
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
                    "data": proba.ravel().tolist(),
                }
            )
        elif scores.values is not None:
            outputs.append(
                {
                    "name": PREDICT,
                    "datatype": "FP64",
                    "shape": [n, 1],
                    "data": scores.values.tolist(),
                }
            )
        else:
            assert scores.labels is not None
            outputs.append(
                {
                    "name": PREDICT,
                    "datatype": _plan(model).label_datatype,
                    "shape": [n, 1],
                    "data": scores.labels.tolist(),
                }
            )
    body: dict[str, Any] = {"model_name": model.name, "model_version": model.version}
    if request.id is not None:
        body["id"] = request.id
    body["outputs"] = outputs
    return body
