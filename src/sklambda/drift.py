"""Drift: the training baselines, new data counted into their bins, and the drift report.

Numeric features are summarised by quantile bins of the baseline data, categorical ones by
category frequencies; the missing rate is kept apart from both. New data (a batch file's scored
rows, a window of captured requests) is counted into the same bins (categories never seen get a
bin of their own) and compared with the population stability index (PSI). Counts add up, so
chunks, files and windows merge before the PSI is computed. Rows reach the counters through the
scoring core (``sklambda.scoring``), so drift counts exactly what was scored. Needs only numpy.

The scheduled drift job (``run``) reads captured requests (``capture/YYYY/MM/DD/HH/``) and the
bin counts that batch job records carry, and writes one report per window, JSON and HTML, under
``monitoring/drift/``.
"""

from __future__ import annotations

import gzip
import html
import itertools
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from sklambda.manifest import Baselines, CategoricalBaseline, NumericBaseline
from sklambda.scoring import Scored, score_records

if TYPE_CHECKING:
    from sklambda.model import Model

DEFAULT_BINS = 10


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


def count(counter: DriftCounter, scored: Scored) -> None:
    """Add the rows the core scored (their validated columns and predictions) to a counter."""
    for name in scored.model.schema.names:
        counter.add(name, scored.columns[name])
    scores = scored.scores
    if scores.values is not None:
        counter.add(PREDICTION, scores.values)
    elif scores.labels is not None:
        counter.add(PREDICTION, scores.labels.astype(object))


# --- the drift job -------------------------------------------------------------------------

CAPTURE = "capture/"
JOB_RECORDS = "manifests/"  # where sklambda.batch writes its job records (a test checks)
REPORTS = "monitoring/drift/"
BATCH_ROWS = 10_000


def hour_prefixes(end: datetime, hours: int) -> list[str]:
    """The capture prefixes of the ``hours`` hours before ``end`` (Firehose's UTC layout)."""
    last = end.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return [f"{CAPTURE}{(last - timedelta(hours=h)):%Y/%m/%d/%H}/" for h in range(hours)][::-1]


def _keys(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _lines(data: bytes) -> Iterator[str]:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            yield line


class _CaptureCounter:
    """Captured instances, scored again by the core in batches and counted: drift counts what
    the deployed model says of them, exactly as for a batch file."""

    def __init__(self, model: Model, counter: DriftCounter) -> None:
        self.model, self.counter = model, counter
        self.instances: list[Any] = []
        self.requests = self.rows = self.invalid = self.other_models = 0

    def add(self, record: dict[str, Any]) -> None:
        model = record.get("model") or {}
        if model.get("version") != self.model.version:
            self.other_models += 1
            return
        self.requests += 1
        self.instances.extend(record.get("instances") or [])
        if len(self.instances) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.instances:
            return
        scored = score_records(self.model, self.instances, unknown="ignore")
        count(self.counter, scored)
        self.invalid += len(scored.rejected_rows)
        self.rows += len(scored.rows)
        self.instances = []


def run(
    s3: Any,
    bucket: str,
    model: Model,
    *,
    end: datetime,
    hours: int,
    threshold: float,
    min_rows: int,
) -> dict[str, Any]:
    """The drift report of the window that ends at ``end`` (exclusive, whole hours)."""
    counter = drift_counter(model.manifest.baselines)
    captured = _CaptureCounter(model, counter)
    prefixes = hour_prefixes(end, hours)
    objects = 0
    for prefix in prefixes:
        for obj in _keys(s3, bucket, prefix):
            objects += 1
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            for line in _lines(body):
                try:
                    captured.add(json.loads(line))
                except json.JSONDecodeError:
                    captured.invalid += 1
    captured.flush()
    start = end - timedelta(hours=hours)
    files = batch_rows = 0
    for obj in _keys(s3, bucket, JOB_RECORDS):
        modified = obj["LastModified"]
        if not start <= modified < end:
            continue
        record = json.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        drift = record.get("drift") or {}
        if record.get("model", {}).get("version") != model.version or "counts" not in drift:
            continue
        counter.load_json(drift["counts"])
        files += 1
        batch_rows += record.get("rows", {}).get("scored", 0)
    report = counter.report(threshold=threshold, min_rows=min_rows)
    report.update(
        {
            "model": {"name": model.name, "version": model.version},
            "window": {"start": start.isoformat(), "end": end.isoformat(), "hours": hours},
            "sources": {
                "capture_objects": objects,
                "captured_requests": captured.requests,
                "captured_rows": captured.rows,
                "captured_rows_invalid": captured.invalid,
                "captured_other_models": captured.other_models,
                "batch_files": files,
                "batch_rows": batch_rows,
            },
        }
    )
    return report


def report_keys(end: datetime, hours: int) -> tuple[str, str]:
    stamp = f"{end:%Y-%m-%d}" if hours % 24 == 0 else f"{end:%Y-%m-%dT%H}"
    return f"{REPORTS}{stamp}.json", f"{REPORTS}{stamp}.html"


def _chart(entry: dict[str, Any]) -> str:
    """A small SVG bar chart: expected (grey) against actual (orange) share per bin."""
    bins = entry["bins"]
    width, row = 420, 16
    top = max([max(b["expected"], b["actual"]) for b in bins] + [1e-9])
    bars = []
    for i, b in enumerate(bins):
        y = i * row
        for j, (key, colour) in enumerate((("expected", "#9e9e9e"), ("actual", "#e6550d"))):
            length = int((width - 170) * b[key] / top)
            bars.append(
                f'<rect x="170" y="{y + j * 7}" width="{length}" height="6" fill="{colour}"/>'
            )
        bars.append(f'<text x="0" y="{y + 11}" font-size="11">{html.escape(b["bin"])}</text>')
    height = row * len(bins)
    return f'<svg width="{width}" height="{height}" role="img">{"".join(bars)}</svg>'


def render_html(report: dict[str, Any]) -> str:
    """A readable page: the verdict, a table of every feature, a chart per drifted one."""
    model = report.get("model", {})
    rows = [
        f"<tr><td>{html.escape(name)}</td><td>{e['psi']:.3f}</td>"
        f"<td>{'drift' if e['drifted'] else 'ok'}</td></tr>"
        for name, e in sorted(report.get("features", {}).items(), key=lambda kv: -kv[1]["psi"])
    ]
    if "prediction" in report:
        e = report["prediction"]
        rows.append(
            f"<tr><td>(prediction)</td><td>{e['psi']:.3f}</td>"
            f"<td>{'drift' if e['drifted'] else 'ok'}</td></tr>"
        )
    charts = [
        f"<h2>{html.escape(name)}: PSI {e['psi']:.3f}</h2>{_chart(e)}"
        for name, e in report.get("features", {}).items()
        if e["drifted"]
    ]
    window = report.get("window", {})
    title = f"{model.get('name')} {model.get('version')}"
    span = f"from {window.get('start', '')} to {window.get('end', '')}"
    return "\n".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'>",
            "<title>Drift report</title></head><body>",
            f"<h1>Drift of {html.escape(title)}: {html.escape(report['status'])}</h1>",
            f"<p>{report['rows']} rows {html.escape(span)}; "
            f"PSI above {report['threshold']} counts as drift.</p>",
            "<table><tr><th>Feature</th><th>PSI</th><th></th></tr>",
            *rows,
            "</table>",
            "<p>Grey: the training data's share of each bin; orange: the window's.</p>",
            *charts,
            "</body></html>",
        ]
    )
