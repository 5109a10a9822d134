"""Monitoring: the metrics vocabulary, the drift baselines and the drift statistics.

Numeric features are summarised by quantile bins of the baseline data, categorical ones by
category frequencies; the missing rate is kept apart from both. New data is counted into the
same bins (categories never seen get a bin of their own) and compared with the population
stability index (PSI). Counts add up, so chunks, files and windows can be merged. Needs only
numpy.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from sklambda.manifest import Baselines, CategoricalBaseline, NumericBaseline

if TYPE_CHECKING:
    from sklambda.model import Model, Scores
    from sklambda.schema import Columns

DEFAULT_BINS = 10


class Metric:
    """Metric names shared by every function (CloudWatch, embedded metric format)."""

    COLD_START = "ColdStart"
    REQUEST_LATENCY = "RequestLatency"
    INSTANCES_PREDICTED = "InstancesPredicted"
    INVALID_REQUESTS = "InvalidRequests"
    PREDICTED_CLASS = "PredictedClass"
    MODEL_UNAVAILABLE = "ModelUnavailable"
    CAPTURED_REQUESTS = "CapturedRequests"
    CAPTURE_FAILURES = "CaptureFailures"
    FILES_PROCESSED = "FilesProcessed"
    FILES_FAILED = "FilesFailed"
    FILES_SKIPPED = "FilesSkipped"
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
    SERVICE = "service"  # Powertools' name for the function's service (predict, batch)


def per_value_records(
    namespace: str,
    dimensions: dict[str, str],
    metric: str,
    dimension: str,
    values: dict[str, float],
    unit: str = "Count",
) -> list[str]:
    """One embedded-metric-format line per value of a dimension (a predicted class, a
    feature): EMF gives a dimension one value per line.

    The lines are written by hand rather than through Powertools' ``single_metric``, which
    builds a metrics provider per line and cost a fifth of a warm one-instance request.
    """
    timestamp = int(time.time() * 1000)
    directive = {
        "Namespace": namespace,
        "Dimensions": [[*dimensions, dimension]],
        "Metrics": [{"Name": metric, "Unit": unit}],
    }
    return [
        json.dumps(
            {
                "_aws": {"Timestamp": timestamp, "CloudWatchMetrics": [directive]},
                **dimensions,
                dimension: key,
                metric: value,
            },
            separators=(",", ":"),
        )
        for key, value in values.items()
    ]


def service_record(
    namespace: str, service: str, values: dict[str, float], unit: str = "Count"
) -> str:
    """One EMF line publishing metrics under the ``service`` dimension alone: what an alarm in
    template.yaml can name without knowing which model version is deployed."""
    directive = {
        "Namespace": namespace,
        "Dimensions": [[Dimension.SERVICE]],
        "Metrics": [{"Name": name, "Unit": unit} for name in values],
    }
    timestamp = int(time.time() * 1000)
    payload = {
        "_aws": {"Timestamp": timestamp, "CloudWatchMetrics": [directive]},
        Dimension.SERVICE: service,
        **values,
    }
    return json.dumps(payload, separators=(",", ":"))


def class_count_records(
    namespace: str, dimensions: dict[str, str], counts: dict[str, int]
) -> list[str]:
    """``PredictedClass`` per class (see ``per_value_records``)."""
    values = {k: float(v) for k, v in counts.items()}
    return per_value_records(namespace, dimensions, Metric.PREDICTED_CLASS, Dimension.CLASS, values)


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


# --- drift ---------------------------------------------------------------------------------

PSI_THRESHOLD = 0.2
MIN_ROWS = 200
_FLOOR = 1e-4  # an empty bin counts as this share, so that PSI stays finite
UNSEEN = "(unseen)"
MISSING = "(missing)"


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two distributions over the same bins (shares)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), _FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def _expected(baseline: NumericBaseline | CategoricalBaseline) -> tuple[list[str], np.ndarray]:
    """Bin labels and expected shares, the missing bin last (and an unseen-category bin)."""
    present = 1.0 - baseline.missing_rate
    if isinstance(baseline, NumericBaseline):
        edges = baseline.edges
        labels = [f"<= {edges[0]:g}"] if edges else ["all"]
        labels += [f"({lo:g}, {hi:g}]" for lo, hi in itertools.pairwise(edges)]
        if edges:
            labels.append(f"> {edges[-1]:g}")
        shares = [p * present for p in baseline.proportions] or [present]
    else:
        labels = [*baseline.frequencies, UNSEEN]
        shares = [f * present for f in baseline.frequencies.values()] + [0.0]
    return [*labels, MISSING], np.array([*shares, baseline.missing_rate])


class DriftCounter:
    """Counts of new data in the baseline's bins, for features and predictions; additive."""

    def __init__(self, baselines: dict[str, NumericBaseline | CategoricalBaseline]) -> None:
        self.baselines = baselines
        self.counts = {
            name: np.zeros(len(_expected(b)[0]), dtype=np.int64) for name, b in baselines.items()
        }

    def add(self, name: str, values: np.ndarray) -> None:
        """Count one column (numbers with NaN for missing, or objects with None)."""
        baseline = self.baselines[name]
        counts = self.counts[name]
        if isinstance(baseline, NumericBaseline):
            x = np.asarray(values, dtype=np.float64)
            missing = ~np.isfinite(x)
            binned = (
                numeric_bins(x[~missing], baseline.edges)
                if baseline.edges
                else np.array([int((~missing).sum())])
            )
            counts[: len(binned)] += binned
            counts[-1] += int(missing.sum())
            return
        arr = np.asarray(values, dtype=object)
        missing = (arr == None) | (arr != arr)  # noqa: E711 (elementwise: None, and NaN)
        present = arr[~missing]
        if present.size and not isinstance(present[0], str):
            present = present.astype(str).astype(object)  # labels that are numbers or booleans
        known = 0
        for i, category in enumerate(baseline.frequencies):
            n = int((present == category).sum())
            counts[i] += n
            known += n
        counts[-2] += present.size - known  # categories the baseline never saw
        counts[-1] += int(missing.sum())

    def to_json(self) -> dict[str, list[int]]:
        return {name: counts.tolist() for name, counts in self.counts.items()}

    def load_json(self, data: dict[str, list[int]]) -> None:
        for name, counts in data.items():
            if name in self.counts and len(counts) == len(self.counts[name]):
                self.counts[name] += np.asarray(counts, dtype=np.int64)

    def report(
        self, *, threshold: float = PSI_THRESHOLD, min_rows: int = MIN_ROWS
    ) -> dict[str, Any]:
        """PSI per feature (and for the predictions), or "not enough data" below ``min_rows``."""
        out: dict[str, Any] = {"threshold": threshold, "min_rows": min_rows, "features": {}}
        rows = max((int(c.sum()) for c in self.counts.values()), default=0)
        out["rows"] = rows
        if rows < min_rows:
            out["status"] = "not enough data"
            return out
        worst, worst_name = 0.0, None
        for name, counts in self.counts.items():
            labels, expected = _expected(self.baselines[name])
            total = counts.sum()
            actual = counts / total if total else np.zeros_like(expected)
            value = psi(expected, actual)
            entry = {
                "psi": round(value, 6),
                "drifted": value > threshold,
                "bins": [
                    {"bin": label, "expected": round(float(e), 6), "actual": round(float(a), 6)}
                    for label, e, a in zip(labels, expected, actual, strict=True)
                ],
            }
            if name == PREDICTION:
                out["prediction"] = entry
                continue
            out["features"][name] = entry
            if value >= worst:
                worst, worst_name = value, name
        out["status"] = "drift" if worst > threshold else "ok"
        out["max_psi"] = round(worst, 6)
        out["max_feature"] = worst_name
        return out


PREDICTION = "(prediction)"


def drift_counter(baselines: Baselines) -> DriftCounter:
    """A counter for a model's features and its predictions."""
    return DriftCounter({**baselines.features, PREDICTION: baselines.prediction})


def count(counter: DriftCounter, model: Model, columns: Columns, scores: Scores) -> None:
    """Add validated columns and their scores to a counter."""
    for name in model.schema.names:
        counter.add(name, columns[name])
    predicted = scores.values if scores.values is not None else scores.labels
    if predicted is not None:
        counter.add(
            PREDICTION, predicted if scores.values is not None else predicted.astype(object)
        )
