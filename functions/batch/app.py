"""Batch inference: a file dropped under ``incoming/`` in the data bucket is scored in full.

Triggered by S3 ``ObjectCreated`` notifications (asynchronous invocation). The handler walks the
records, URL-decodes each key, and hands the object to ``sklambda.batch``. A failure that a retry
cannot mend (a bad file, too little time) is recorded in the file's manifest and sent to the
dead-letter queue at once; anything else is raised, so that Lambda retries the event and, when
the retries are spent, sends it to the same queue.
"""

import json
from typing import Any
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda.batch import Result, output_keys, process_object
from sklambda.model import get_model
from sklambda.monitor import Dimension, Metric, per_value_records, service_record
from sklambda.settings import get_settings

logger = Logger()
metrics = Metrics()
settings = get_settings()
model = get_model()  # a model that does not load fails the init phase: Lambda retries, then DLQ
metrics.set_default_dimensions(
    **{Dimension.MODEL_NAME: model.name, Dimension.MODEL_VERSION: model.version}
)
_clients: dict[str, Any] = {}


def client(name: str) -> Any:
    """One boto3 client per service and execution environment."""
    if name not in _clients:
        _clients[name] = boto3.client(name)
    return _clients[name]


client("s3")  # made during the init phase, not on the first file


def _record_metrics(result: Result) -> None:
    if result.status == "succeeded":
        metrics.add_metric(name=Metric.FILES_PROCESSED, unit=MetricUnit.Count, value=1)
    elif result.status == "failed":
        metrics.add_metric(name=Metric.FILES_FAILED, unit=MetricUnit.Count, value=1)
    else:  # a duplicate delivery, or a key that is not ours
        metrics.add_metric(name=Metric.FILES_SKIPPED, unit=MetricUnit.Count, value=1)
    if result.status in ("succeeded", "failed"):
        metrics.add_metric(name=Metric.ROWS_SCORED, unit=MetricUnit.Count, value=result.rows_scored)
        metrics.add_metric(
            name=Metric.ROWS_REJECTED, unit=MetricUnit.Count, value=result.rows_rejected
        )
        metrics.add_metric(
            name=Metric.BATCH_DURATION, unit=MetricUnit.Seconds, value=result.duration
        )
        if result.duration > 0:
            rate = result.rows_read / result.duration
            metrics.add_metric(
                name=Metric.ROWS_PER_SECOND, unit=MetricUnit.CountPerSecond, value=rate
            )
    alarmed = {Metric.FILES_FAILED: 1.0 if result.status == "failed" else 0.0}
    drift = result.manifest.get("drift") or {}
    if drift.get("status") in ("ok", "drift"):
        alarmed[Metric.MAX_FEATURE_DRIFT] = drift["max_psi"]
    print(service_record(metrics.namespace or "", metrics.service or "batch", alarmed, unit="None"))
    if result.status == "succeeded" and drift.get("status") in ("ok", "drift"):
        metrics.add_metric(
            name=Metric.MAX_FEATURE_DRIFT, unit=MetricUnit.NoUnit, value=drift["max_psi"]
        )
        if drift.get("prediction_psi") is not None:
            metrics.add_metric(
                name=Metric.PREDICTION_DRIFT, unit=MetricUnit.NoUnit, value=drift["prediction_psi"]
            )
        dimensions = {**metrics.default_dimensions, "service": metrics.service or "batch"}
        records = per_value_records(
            metrics.namespace or "",
            dimensions,
            Metric.FEATURE_DRIFT,
            Dimension.FEATURE,
            drift["psi"],
            unit="None",
        )
        for line in records:
            print(line)


def _dead_letter(result: Result, record: dict[str, Any]) -> None:
    if not settings.dead_letter_queue_url:
        logger.warning("no dead-letter queue configured", extra={"key": result.key})
        return
    manifest_key = output_keys(result.key).manifest
    body = {
        "reason": result.reason,
        "source": result.manifest.get("source"),
        "manifest": f"s3://{record['s3']['bucket']['name']}/{manifest_key}",
    }
    client("sqs").send_message(
        QueueUrl=settings.dead_letter_queue_url, MessageBody=json.dumps(body)
    )


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    results = []
    for record in event.get("Records", []):
        s3_info = record["s3"]
        bucket = s3_info["bucket"]["name"]
        key = unquote_plus(s3_info["object"]["key"])  # event keys are URL-encoded
        try:
            result = process_object(
                client("s3"),
                bucket,
                key,
                model,
                settings,
                version_id=s3_info["object"].get("versionId"),
                etag=s3_info["object"].get("eTag"),
                size=s3_info["object"].get("size"),
                remaining_ms=context.get_remaining_time_in_millis,
            )
        except Exception:
            metrics.add_metric(name=Metric.FILES_FAILED, unit=MetricUnit.Count, value=1)
            logger.exception("file failed; raising so that Lambda retries", extra={"key": key})
            raise
        log = {
            "key": key,
            "status": result.status,
            "reason": result.reason,
            "rows": {
                "read": result.rows_read,
                "scored": result.rows_scored,
                "rejected": result.rows_rejected,
            },
        }
        if result.status == "failed":
            logger.error("file failed", extra=log)
            _dead_letter(result, record)
        else:
            logger.info("file done", extra=log)
        _record_metrics(result)
        results.append({"key": key, "status": result.status, "reason": result.reason})
    return {"results": results}
