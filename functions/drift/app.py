"""The drift job, on an EventBridge schedule: one report per window, metrics to CloudWatch.

Writes ``monitoring/drift/<date>.json`` and ``.html`` to the data bucket and publishes
``FeatureDrift`` per feature, ``MaxFeatureDrift``, ``PredictionDrift`` and ``DriftRows`` with
``PutMetricData`` (the job runs once a day; the alarms read these under ``service=drift``).
"""

import json
import os
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda import driftjob
from sklambda.model import get_model
from sklambda.monitor import Dimension, Metric
from sklambda.settings import get_settings

logger = Logger()
settings = get_settings()
model = get_model()
s3 = boto3.client("s3")
cloudwatch = boto3.client("cloudwatch")
NAMESPACE_ENV = "POWERTOOLS_METRICS_NAMESPACE"


def _publish(report: dict[str, Any], namespace: str, when: datetime) -> None:
    service = [{"Name": Dimension.SERVICE, "Value": "drift"}]
    data: list[dict[str, Any]] = [
        {
            "MetricName": Metric.DRIFT_ROWS,
            "Dimensions": service,
            "Value": float(report["rows"]),
            "Unit": "Count",
            "Timestamp": when,
        },
    ]
    if report["status"] != "not enough data":
        data.append(
            {
                "MetricName": Metric.MAX_FEATURE_DRIFT,
                "Dimensions": service,
                "Value": float(report["max_psi"]),
                "Unit": "None",
                "Timestamp": when,
            }
        )
        if "prediction" in report:
            data.append(
                {
                    "MetricName": Metric.PREDICTION_DRIFT,
                    "Dimensions": service,
                    "Value": float(report["prediction"]["psi"]),
                    "Unit": "None",
                    "Timestamp": when,
                }
            )
        for name, entry in report["features"].items():
            dims = [*service, {"Name": Dimension.FEATURE, "Value": name}]
            data.append(
                {
                    "MetricName": Metric.FEATURE_DRIFT,
                    "Dimensions": dims,
                    "Value": float(entry["psi"]),
                    "Unit": "None",
                    "Timestamp": when,
                }
            )
    for start in range(0, len(data), 500):
        cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start : start + 500])


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if not settings.data_bucket:
        raise RuntimeError("SKLAMBDA_DATA_BUCKET is not set")
    when = (
        datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        if "time" in event
        else datetime.now(UTC)
    )
    end = when.replace(minute=0, second=0, microsecond=0)
    report = driftjob.run(
        s3,
        settings.data_bucket,
        model,
        end=end,
        hours=settings.drift_window_hours,
        threshold=settings.drift_threshold,
        min_rows=settings.drift_min_rows,
    )
    json_key, html_key = driftjob.report_keys(end, settings.drift_window_hours)
    s3.put_object(
        Bucket=settings.data_bucket,
        Key=json_key,
        Body=json.dumps(report, indent=2).encode(),
        ContentType="application/json",
    )
    s3.put_object(
        Bucket=settings.data_bucket,
        Key=html_key,
        Body=driftjob.render_html(report).encode(),
        ContentType="text/html; charset=utf-8",
    )
    _publish(report, os.environ.get(NAMESPACE_ENV, "sklambda"), end)
    summary = {
        "status": report["status"],
        "rows": report["rows"],
        "max_psi": report.get("max_psi"),
        "max_feature": report.get("max_feature"),
        "report": json_key,
    }
    logger.info("drift report", extra=summary)
    return summary
