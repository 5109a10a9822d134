"""Strict construction of frozen dataclasses from JSON-like data, driven by their type hints.

The runtime's contracts (the model manifest, each function's settings) are plain dataclasses:
reading them must not cost the cold start pydantic's import and model building (about 100 ms
of a 300 ms onnx cold start). ``build`` checks what those contracts use: ``str``, ``int`` (not a
boolean), ``float`` (an int is fine), ``bool``, ``Literal``, unions (``X | None``), ``list[X]``,
``dict[str, X]``, nested dataclasses (unknown keys refused, missing required fields refused) and
unions of dataclasses told apart by their ``kind`` literal. Bounds come from field metadata
(``ge``, ``gt``, ``le``). The first offending field is named by its dotted path.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Point:
...     x: int
...     label: str | None = None
>>> build(Point, {"x": 1})
Point(x=1, label=None)
>>> build(Point, {"x": "one"})
Traceback (most recent call last):
...
sklambda.typed.ContractError: x: expected an integer, got a string
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from sklambda.errors import SklambdaError

T = TypeVar("T")


class ContractError(SklambdaError, ValueError):
    """Data that does not fit the contract; ``path`` names the first offending field (readers
    turn it into ``ManifestError`` or ``ConfigurationError``)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path or '(root)'}: {reason}")
        self.path, self.reason = path, reason


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@cache
def _fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    return dataclasses.fields(cls)


def describe(value: Any) -> str:
    """Name a JSON value's type for a message: ``a string``, ``a number``... (the contracts'
    errors and the input schema's reasons use the same words)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return "an unsupported value"


def build(cls: type[T], data: Any, path: str = "", *, text: bool = False) -> T:
    """An instance of dataclass ``cls`` from ``data`` (a mapping), checked field by field.

    ``text=True`` also reads numbers and booleans written as text (environment variables).
    """
    return typing.cast(T, _value(cls, data, path, text))


def _join(path: str, part: str | int) -> str:
    return f"{path}.{part}" if path else str(part)


def _object(cls: type, data: Any, path: str, text: bool) -> Any:
    if not isinstance(data, Mapping):
        raise ContractError(path, f"expected an object, got {describe(data)}")
    hints = _hints(cls)
    fields = _fields(cls)
    known = {f.name for f in fields}
    for key in data:
        if key not in known:
            raise ContractError(_join(path, str(key)), "unknown field")
    values: dict[str, Any] = {}
    for f in fields:
        where = _join(path, f.name)
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ContractError(where, "required")
            continue
        value = _value(hints[f.name], data[f.name], where, text)
        _bounds(f, value, where)
        values[f.name] = value
    return cls(**values)


def _bounds(f: dataclasses.Field[Any], value: Any, where: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    meta = f.metadata
    if "ge" in meta and value < meta["ge"]:
        raise ContractError(where, f"must be at least {meta['ge']}")
    if "gt" in meta and value <= meta["gt"]:
        raise ContractError(where, f"must be above {meta['gt']}")
    if "le" in meta and value > meta["le"]:
        raise ContractError(where, f"must be at most {meta['le']}")


def _value(hint: Any, data: Any, path: str, text: bool) -> Any:
    if hint is Any:
        return data
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _object(hint, data, path, text)
    origin = get_origin(hint)
    if origin is Literal:
        allowed = get_args(hint)
        for option in allowed:
            if data == option and type(data) is type(option):
                return option
            if text and isinstance(data, str) and str(option) == data:
                return option
        raise ContractError(path, f"expected one of {list(allowed)}, got {data!r:.40}")
    if origin is Union or origin is types.UnionType:
        return _union(get_args(hint), data, path, text)
    if origin is list:
        if not isinstance(data, list):
            raise ContractError(path, f"expected an array, got {describe(data)}")
        (item,) = get_args(hint)
        return [_value(item, v, _join(path, i), text) for i, v in enumerate(data)]
    if origin is dict:
        if not isinstance(data, Mapping):
            raise ContractError(path, f"expected an object, got {describe(data)}")
        _, item = get_args(hint)
        return {str(k): _value(item, v, _join(path, str(k)), text) for k, v in data.items()}
    return _scalar(hint, data, path, text)


def _union(options: tuple[Any, ...], data: Any, path: str, text: bool) -> Any:
    if data is None and type(None) in options:
        return None
    classes = [o for o in options if isinstance(o, type) and dataclasses.is_dataclass(o)]
    if classes and isinstance(data, Mapping):
        for cls in classes:
            kind = _hints(cls).get("kind")
            if kind is None or data.get("kind") in get_args(kind):
                return _object(cls, data, path, text)
        raise ContractError(_join(path, "kind"), f"unknown kind {data.get('kind')!r:.40}")
    first: ContractError | None = None
    for option in options:
        if option is type(None):
            continue
        try:
            return _value(option, data, path, text)
        except ContractError as exc:
            first = first or exc
    if first is None or data is None:
        raise ContractError(path, "must not be null")
    raise first


def _scalar(hint: Any, data: Any, path: str, text: bool) -> Any:
    if hint is str:
        if isinstance(data, str):
            return data
        raise ContractError(path, f"expected a string, got {describe(data)}")
    if hint is bool:
        if isinstance(data, bool):
            return data
        if text and isinstance(data, str) and data.lower() in ("true", "false"):
            return data.lower() == "true"
        raise ContractError(path, f"expected a boolean, got {describe(data)}")
    if hint is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        if text and isinstance(data, str):
            try:
                return int(data)
            except ValueError:
                pass
        raise ContractError(path, f"expected an integer, got {describe(data)}")
    if hint is float:
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return float(data)
        if text and isinstance(data, str):
            try:
                number = float(data)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
        raise ContractError(path, f"expected a number, got {describe(data)}")
    if hint is type(None):
        if data is None:
            return None
        raise ContractError(path, f"expected null, got {describe(data)}")
    raise TypeError(f"unsupported type in a contract: {hint!r}")


def as_dict(instance: Any) -> dict[str, Any]:
    """The instance as plain JSON-ready data (the inverse of ``build``)."""
    return dataclasses.asdict(instance)
