"""The probe file (``probes.json``): rows and what the packaged pipeline answered for them.

Packaging records a few hundred of the rows its parity check scored (holdout rows, and copies
of them with a value missing, a category unseen, a number between whole numbers) with the
prediction the pipeline itself gave, in the form ``POST /predict`` answers. The file is one of
the artifacts, hashed in ``model.json``. The pre-traffic check (``sklambda.pretraffic``) sends
the rows to a newly deployed version and compares its answers with these, within
``tolerance``: a version that serves another model, another runtime build or a tampered
artifact disagrees somewhere.

Examples
--------
>>> probes = parse({"format": 1, "task": "regression", "tolerance": 1e-5,
...                 "rows": [{"instance": {"x": 1.0}, "expected": {"value": 2.0}}]})
>>> disagreement(probes, probes.rows[0].expected, {"value": 2.000001})
>>> disagreement(probes, probes.rows[0].expected, {"value": 2.1})
'value 2.1 where the packaged pipeline gave 2.0 (tolerance 1e-05, relative)'
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sklambda.errors import IntegrityError, ModelLoadError
from sklambda.manifest import Manifest, Task
from sklambda.typed import ContractError, build

PROBES_FILE = "probes.json"
FORMAT: Literal[1] = 1
REQUEST_ID_PREFIX = "pretraffic-"
"""The ``requestContext.requestId`` of the pre-traffic check's requests (``pretraffic-1``, ...):
the predict function does not capture them (probe rows are not traffic, and would feed drift)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Probe:
    instance: dict[str, Any]
    """The instance as a client sends it (``null`` for a missing value)."""
    expected: dict[str, Any]
    """The packaged pipeline's prediction, as ``POST /predict`` answers it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeSet:
    format: Literal[1] = FORMAT
    task: Task
    tolerance: float
    """Probabilities within this (absolute), values within this (relative to max(|v|, 1))."""
    rows: list[Probe]


def parse(data: Any) -> ProbeSet:
    """A ``ProbeSet`` from JSON-like data; ``ContractError`` names the first offending field."""
    probes = build(ProbeSet, data)
    if not (math.isfinite(probes.tolerance) and probes.tolerance >= 0):
        # NaN or infinity would let every answer agree (a comparison with NaN is never over it)
        raise ContractError("tolerance", "must be a finite number of 0 or more")
    if not probes.rows:
        raise ContractError("rows", "must hold at least one row")
    for i, row in enumerate(probes.rows):
        if probes.task == "regression" and not _number(row.expected.get("value")):
            raise ContractError(f"rows.{i}.expected.value", "must be a finite number")
        if probes.task == "classification" and "label" not in row.expected:
            raise ContractError(f"rows.{i}.expected.label", "required")
        probabilities = row.expected.get("probabilities")
        if probabilities is not None and not (
            isinstance(probabilities, dict) and all(map(_number, probabilities.values()))
        ):
            raise ContractError(f"rows.{i}.expected.probabilities", "must map classes to numbers")
    return probes


def dumps(probes: ProbeSet) -> bytes:
    """The file's bytes (compact JSON, one row a line, so that a diff shows a row)."""
    head = {"format": probes.format, "task": probes.task, "tolerance": probes.tolerance}
    lines = [
        json.dumps({"instance": p.instance, "expected": p.expected}, allow_nan=False)
        for p in probes.rows
    ]
    text = json.dumps(head, allow_nan=False)[:-1] + ', "rows": [\n' + ",\n".join(lines) + "\n]}\n"
    parse(json.loads(text))
    return text.encode()


def read(model_dir: str | Path, manifest: Manifest) -> ProbeSet:
    """Read and check the probe file of a model directory against its manifest.

    Raises
    ------
    IntegrityError
        The model has no probe file, or it does not match its SHA-256 in ``model.json``.
    ModelLoadError
        The file is not a probe file.
    """
    from sklambda.model import verify_artifact

    if PROBES_FILE not in manifest.artifacts:
        raise IntegrityError(
            f"model {manifest.name!r} {manifest.version} has no {PROBES_FILE} (packaged before "
            "probe files were recorded): package it again"
        )
    data = verify_artifact(Path(model_dir), manifest, PROBES_FILE)  # that file alone
    try:
        return parse(json.loads(data))
    except ValueError as exc:  # not JSON, or a ContractError naming the field
        raise ModelLoadError(f"{PROBES_FILE} is not a probe file: {exc}") from None
    except RecursionError:
        raise ModelLoadError(f"{PROBES_FILE} is not a probe file: nested too deep") from None


def disagreement(probes: ProbeSet, expected: dict[str, Any], got: Any) -> str | None:
    """Why the answer ``got`` differs from ``expected``, or ``None`` when it agrees."""
    if not isinstance(got, dict):
        return "the answer is not a prediction object"
    tolerance = probes.tolerance
    if probes.task == "regression":
        want, value = float(expected["value"]), got.get("value")  # parse checked "value"
        if not isinstance(value, (int, float)) or not _number(value):
            return "the answer has no numeric value"
        if abs(value - want) / max(abs(want), 1.0) > tolerance:
            return (
                f"value {value!r} where the packaged pipeline gave {want!r} "
                f"(tolerance {tolerance:g}, relative)"
            )
        return None
    if got.get("label") != expected.get("label") or type(got.get("label")) is not type(
        expected.get("label")
    ):
        return (
            f"label {json.dumps(got.get('label'))} where the packaged pipeline gave "
            f"{json.dumps(expected.get('label'))}"
        )
    want_p = expected.get("probabilities")
    if want_p is None:
        return None
    got_p = got.get("probabilities")
    if not isinstance(got_p, dict) or set(got_p) != set(want_p):
        return "the answer's probabilities are not over the packaged model's classes"
    for name, want in want_p.items():
        value = got_p[name]
        if not _number(value) or abs(value - want) > tolerance:
            return (
                f"probability of {name} {value!r} where the packaged pipeline gave {want!r} "
                f"(tolerance {tolerance:g})"
            )
    return None


def _number(value: Any) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float (JSON allows any length)
        return False
