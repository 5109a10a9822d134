"""The drift job: a window of captured requests and batch files against the training data.

Captured requests (``capture/YYYY/MM/DD/HH/``, JSON lines, gzip or not) are validated and
counted into the model's baseline bins; batch files contribute the bin counts their manifests
carry. One report per window: JSON for machines and an HTML page with a small chart per drifted
feature, both under ``monitoring/drift/``.
"""

from __future__ import annotations

import gzip
import html
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from sklambda.model import Model
from sklambda.monitor import PREDICTION, DriftCounter, drift_counter

CAPTURE = "capture/"
MANIFESTS = "manifests/"
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
    """Captured instances and predictions, validated and counted in batches."""

    def __init__(self, model: Model, counter: DriftCounter) -> None:
        self.model, self.counter = model, counter
        self.instances: list[Any] = []
        self.predictions: list[Any] = []
        self.requests = self.rows = self.invalid = self.other_models = 0

    def add(self, record: dict[str, Any]) -> None:
        model = record.get("model") or {}
        if model.get("version") != self.model.version:
            self.other_models += 1
            return
        self.requests += 1
        self.instances.extend(record.get("instances") or [])
        for p in record.get("predictions") or []:
            self.predictions.append(p.get("value", p.get("label")))
        if len(self.instances) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.instances:
            return
        checked = self.model.validate(self.instances, unknown="ignore")
        for name in self.model.schema.names:
            self.counter.add(name, checked.columns[name])
        self.invalid += len(checked.rejected_rows)
        self.rows += len(checked.rows)
        if self.model.task == "regression":
            self.counter.add(PREDICTION, np.asarray(self.predictions, dtype=np.float64))
        else:
            self.counter.add(PREDICTION, np.asarray(self.predictions, dtype=object))
        self.instances, self.predictions = [], []


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
    for obj in _keys(s3, bucket, MANIFESTS):
        modified = obj["LastModified"]
        if not start <= modified < end:
            continue
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
        drift = manifest.get("drift") or {}
        if manifest.get("model", {}).get("version") != model.version or "counts" not in drift:
            continue
        counter.load_json(drift["counts"])
        files += 1
        batch_rows += manifest.get("rows", {}).get("scored", 0)
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
