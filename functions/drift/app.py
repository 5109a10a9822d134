"""The drift job, on an EventBridge schedule: one report per window, metrics to CloudWatch.

Writes ``monitoring/drift/<date>.json`` and ``.html`` to the data bucket and publishes
``FeatureDrift`` per feature, ``MaxFeatureDrift``, ``PredictionDrift`` and ``DriftRows`` under
``service=drift``, stamped with the window's end (the alarms read them there).
"""

import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda import aws, drift
from sklambda.metrics import Dimension, MetricName, MetricSet, Unit
from sklambda.model import get_model
from sklambda.settings import DriftSettings, get_settings

logger = Logger()
settings = get_settings(DriftSettings)  # a missing bucket fails the init, naming the variable
model = get_model(settings)
aws.client("s3")


def report_metrics(report: dict[str, Any]) -> MetricSet:
    """A window's drift as metrics under ``service`` alone (the drift job runs once a day)."""
    metrics = MetricSet(settings.metrics_namespace, {Dimension.SERVICE: settings.service})
    metrics.add(MetricName.DRIFT_ROWS, report["rows"])
    if report["status"] != "not enough data":
        metrics.add(MetricName.MAX_FEATURE_DRIFT, report["max_psi"], Unit.NONE)
        if "prediction" in report:
            metrics.add(MetricName.PREDICTION_DRIFT, report["prediction"]["psi"], Unit.NONE)
        psi = {name: entry["psi"] for name, entry in report["features"].items()}
        metrics.add_per(MetricName.FEATURE_DRIFT, Dimension.FEATURE, psi, Unit.NONE)
    return metrics


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    when = (
        datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        if "time" in event
        else datetime.now(UTC)
    )
    end = when.replace(minute=0, second=0, microsecond=0)
    s3 = aws.client("s3")
    report = drift.run(
        s3,
        settings.data_bucket,
        model,
        end=end,
        hours=settings.drift_window_hours,
        threshold=settings.drift_threshold,
        min_rows=settings.drift_min_rows,
    )
    json_key, html_key = drift.report_keys(end, settings.drift_window_hours)
    s3.put_object(
        Bucket=settings.data_bucket,
        Key=json_key,
        Body=json.dumps(report, indent=2).encode(),
        ContentType="application/json",
    )
    s3.put_object(
        Bucket=settings.data_bucket,
        Key=html_key,
        Body=drift.render_html(report).encode(),
        ContentType="text/html; charset=utf-8",
    )
    report_metrics(report).flush(timestamp_ms=int(end.timestamp() * 1000))
    summary = {
        "status": report["status"],
        "rows": report["rows"],
        "max_psi": report.get("max_psi"),
        "max_feature": report.get("max_feature"),
        "report": json_key,
    }
    logger.info("drift report", extra=summary)
    return summary
