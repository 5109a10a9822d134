"""The metrics vocabulary and the one way every function publishes metrics.

Functions print CloudWatch embedded-metric-format (EMF) records to standard output; Lambda's
log stream carries them to CloudWatch, which extracts the metrics. The functions here are pure:
they return records (JSON strings) for tests to read without AWS; ``MetricSet`` collects one
invocation's metrics and renders them.

Examples
--------
>>> record = emf("sklambda", {"service": "predict"}, {"Latency": 1.5}, {"Latency": "Milliseconds"},
...              timestamp_ms=0)
>>> json.loads(record)["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json.loads(record)["Latency"]
([['service']], 1.5)
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any


class MetricName:
    """Names of the metrics the functions publish."""

    COLD_START = "ColdStart"
    REQUEST_LATENCY = "RequestLatency"
    INSTANCES_PREDICTED = "InstancesPredicted"
    INVALID_REQUESTS = "InvalidRequests"
    PREDICTED_CLASS = "PredictedClass"
    MODEL_UNAVAILABLE = "ModelUnavailable"
    SERVER_ERRORS = "ServerErrors"
    CAPTURED_REQUESTS = "CapturedRequests"
    CAPTURE_FAILURES = "CaptureFailures"
    FILES_PROCESSED = "FilesProcessed"
    FILES_FAILED = "FilesFailed"
    FILES_SKIPPED = "FilesSkipped"
    FILES_SPLIT = "FilesSplit"  # handed to the split path
    ROWS_SCORED = "RowsScored"
    ROWS_REJECTED = "RowsRejected"
    ROWS_PER_SECOND = "RowsPerSecond"
    BATCH_DURATION = "BatchDuration"
    FEATURE_DRIFT = "FeatureDrift"
    MAX_FEATURE_DRIFT = "MaxFeatureDrift"
    PREDICTION_DRIFT = "PredictionDrift"
    DRIFT_ROWS = "DriftRows"


class Dimension:
    MODEL_NAME = "ModelName"
    MODEL_VERSION = "ModelVersion"
    CLASS = "Class"
    FEATURE = "Feature"
    SERVICE = "service"  # the function's service (predict, batch, drift), as Powertools names it
    FUNCTION_VERSION = "FunctionVersion"


class Unit:
    COUNT = "Count"
    MILLISECONDS = "Milliseconds"
    SECONDS = "Seconds"
    PER_SECOND = "Count/Second"
    NONE = "None"


def emf(
    namespace: str,
    dimensions: Mapping[str, str],
    values: Mapping[str, float | list[float]],
    units: Mapping[str, str],
    *,
    timestamp_ms: int | None = None,
) -> str:
    """One EMF record: ``values`` (a number or a list of numbers per metric name) under one
    set of ``dimensions``."""
    stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    directive = {
        "Namespace": namespace,
        "Dimensions": [list(dimensions)],
        "Metrics": [{"Name": name, "Unit": units.get(name, Unit.NONE)} for name in values],
    }
    payload: dict[str, Any] = {"_aws": {"Timestamp": stamp, "CloudWatchMetrics": [directive]}}
    payload.update(dimensions)
    payload.update(values)
    return json.dumps(payload, separators=(",", ":"), allow_nan=False)


def per_value(
    namespace: str,
    dimensions: Mapping[str, str],
    metric: str,
    dimension: str,
    values: Mapping[str, float],
    unit: str,
    *,
    timestamp_ms: int | None = None,
) -> list[str]:
    """One record per value of ``dimension`` (a predicted class, a feature): EMF gives a
    dimension one value per record."""
    return [
        emf(
            namespace,
            {**dimensions, dimension: key},
            {metric: value},
            {metric: unit},
            timestamp_ms=timestamp_ms,
        )
        for key, value in values.items()
    ]


class MetricSet:
    """One invocation's metrics under the function's dimensions, rendered as EMF records.

    ``add`` appends a value (a metric added twice holds both); ``add_per`` adds a metric per
    value of an extra dimension; ``alarmed`` metrics go out under ``service`` alone as well, the
    dimension set the template's alarms name without knowing which model is deployed;
    ``versioned`` ones under ``service`` and ``FunctionVersion``, what the rollout alarms name
    (the new version's number, so that the old version's errors never roll a deployment back).
    """

    def __init__(
        self, namespace: str, dimensions: Mapping[str, str], function_version: str = "$LATEST"
    ) -> None:
        self.namespace = namespace
        self.dimensions = dict(dimensions)
        self.function_version = function_version
        self.values: dict[str, list[float]] = {}
        self.units: dict[str, str] = {}
        self.per: list[tuple[str, str, dict[str, float], str]] = []
        self.alarmed: dict[str, list[float]] = {}
        self.versioned: dict[str, list[float]] = {}

    def add(self, name: str, value: float, unit: str = Unit.COUNT) -> None:
        self.values.setdefault(name, []).append(float(value))
        self.units[name] = unit

    def add_per(self, name: str, dimension: str, values: Mapping[str, float], unit: str) -> None:
        if values:
            self.per.append((name, dimension, {k: float(v) for k, v in values.items()}, unit))

    def add_alarmed(self, name: str, value: float, unit: str = Unit.NONE) -> None:
        """A metric the template alarms on: published under ``service`` alone."""
        self.alarmed.setdefault(name, []).append(float(value))
        self.units.setdefault(name, unit)

    def add_versioned(self, name: str, value: float, unit: str = Unit.COUNT) -> None:
        """A metric the rollout alarms watch: under ``service`` and ``FunctionVersion``."""
        self.versioned.setdefault(name, []).append(float(value))
        self.units.setdefault(name, unit)

    def records(self, *, timestamp_ms: int | None = None) -> list[str]:
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        out = []
        if self.values:
            values = _flat(self.values)
            out.append(emf(self.namespace, self.dimensions, values, self.units, timestamp_ms=stamp))
        for name, dimension, values_by_key, unit in self.per:
            out += per_value(
                self.namespace,
                self.dimensions,
                name,
                dimension,
                values_by_key,
                unit,
                timestamp_ms=stamp,
            )
        if self.alarmed:
            service = {Dimension.SERVICE: self.dimensions.get(Dimension.SERVICE, "")}
            alarmed = _flat(self.alarmed)
            out.append(emf(self.namespace, service, alarmed, self.units, timestamp_ms=stamp))
        if self.versioned:
            at = {
                Dimension.SERVICE: self.dimensions.get(Dimension.SERVICE, ""),
                Dimension.FUNCTION_VERSION: self.function_version,
            }
            versioned = _flat(self.versioned)
            out.append(emf(self.namespace, at, versioned, self.units, timestamp_ms=stamp))
        return out

    def flush(self, write: Callable[[str], Any] | None = None, **kwargs: Any) -> None:
        """Write the records (to standard output, where Lambda's log stream takes them) and
        start again empty."""
        out = write or _stdout
        for record in self.records(**kwargs):
            out(record)
        self.values, self.units, self.per, self.alarmed, self.versioned = {}, {}, [], {}, {}


def _flat(values: dict[str, list[float]]) -> dict[str, float | list[float]]:
    return {k: v[0] if len(v) == 1 else v for k, v in values.items()}


def _stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
