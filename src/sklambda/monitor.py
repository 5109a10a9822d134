"""Drift statistics: the baselines recorded at packaging time and the binning they use.

Numeric features are summarised by quantile bins of the baseline data, categorical ones by
category frequencies; the missing rate is kept apart from both. Later comparisons (population
stability index) bin new data with the same edges. Needs only numpy.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable

import numpy as np

from sklambda.manifest import CategoricalBaseline, NumericBaseline

DEFAULT_BINS = 10


class Metric:
    """Metric names shared by every function (CloudWatch, embedded metric format)."""

    COLD_START = "ColdStart"
    REQUEST_LATENCY = "RequestLatency"
    INSTANCES_PREDICTED = "InstancesPredicted"
    INVALID_REQUESTS = "InvalidRequests"
    PREDICTED_CLASS = "PredictedClass"
    MODEL_UNAVAILABLE = "ModelUnavailable"
    FILES_PROCESSED = "FilesProcessed"
    FILES_FAILED = "FilesFailed"
    FILES_SKIPPED = "FilesSkipped"
    ROWS_SCORED = "RowsScored"
    ROWS_REJECTED = "RowsRejected"
    ROWS_PER_SECOND = "RowsPerSecond"
    BATCH_DURATION = "BatchDuration"


class Dimension:
    MODEL_NAME = "ModelName"
    MODEL_VERSION = "ModelVersion"
    CLASS = "Class"


def class_count_records(
    namespace: str, dimensions: dict[str, str], counts: dict[str, int]
) -> list[str]:
    """One embedded-metric-format line per predicted class: ``PredictedClass`` with the class
    as a dimension (EMF gives a dimension one value per line).

    The lines are written by hand rather than through Powertools' ``single_metric``, which
    builds a metrics provider per line and cost a fifth of a warm one-instance request.
    """
    timestamp = int(time.time() * 1000)
    names = [*dimensions, Dimension.CLASS]
    directive = {
        "Namespace": namespace,
        "Dimensions": [names],
        "Metrics": [{"Name": Metric.PREDICTED_CLASS, "Unit": "Count"}],
    }
    return [
        json.dumps(
            {
                "_aws": {"Timestamp": timestamp, "CloudWatchMetrics": [directive]},
                **dimensions,
                Dimension.CLASS: label,
                Metric.PREDICTED_CLASS: count,
            },
            separators=(",", ":"),
        )
        for label, count in counts.items()
    ]


def numeric_bins(values: np.ndarray, edges: Iterable[float]) -> np.ndarray:
    """Count finite values per bin; bin i holds ``edges[i-1] < x <= edges[i]``."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    inner = np.asarray(list(edges), dtype=np.float64)
    return np.bincount(np.searchsorted(inner, x, side="left"), minlength=inner.size + 1)


def numeric_baseline(values: np.ndarray, bins: int = DEFAULT_BINS) -> NumericBaseline:
    """Quantile-bin proportions and the missing rate of a numeric column.

    Examples
    --------
    >>> b = numeric_baseline(np.array([1.0, 2.0, 3.0, 4.0, np.nan]), bins=2)
    >>> b.edges, b.proportions, b.missing_rate
    ([2.5], [0.5, 0.5], 0.2)
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    finite = x[np.isfinite(x)]
    missing_rate = float(np.isnan(x).mean()) if n else 0.0
    if finite.size == 0:
        return NumericBaseline(edges=[], proportions=[], missing_rate=missing_rate)
    quantiles = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(quantiles)
    counts = numeric_bins(finite, edges)
    return NumericBaseline(
        edges=[float(e) for e in edges],
        proportions=[round(float(c) / finite.size, 6) for c in counts],
        missing_rate=round(missing_rate, 6),
    )


def categorical_baseline(values: Iterable[object]) -> CategoricalBaseline:
    """Category frequencies (of present values) and the missing rate.

    Examples
    --------
    >>> b = categorical_baseline(["a", "a", "b", None])
    >>> b.frequencies, b.missing_rate
    ({'a': 0.666667, 'b': 0.333333}, 0.25)
    """
    items = list(values)
    present = [str(v) for v in items if v is not None and v == v]
    counts = Counter(present)
    total = len(present)
    freqs = {k: round(c / total, 6) for k, c in sorted(counts.items())} if total else {}
    missing = (len(items) - total) / len(items) if items else 0.0
    return CategoricalBaseline(frequencies=freqs, missing_rate=round(missing, 6))
