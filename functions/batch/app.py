"""Batch inference: a file dropped under ``incoming/`` in the data bucket is scored in full.

Triggered by S3 ``ObjectCreated`` notifications (asynchronous invocation). The handler walks the
records, URL-decodes each key, and hands the object to ``sklambda.batch``. A failure that a retry
cannot mend (a bad file, too little time) is recorded in the file's job record, with its
dead-letter message pending, and sent to the dead-letter queue at once; the record then says it
was sent. A send that fails is raised: the retry finds the letter pending and sends it. Anything
else is raised too, so that Lambda retries the event and, when the retries are spent, sends it
to the same queue.
"""

import json
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda import aws, snapstart
from sklambda.batch import (
    Result,
    bounded,
    check_settings,
    dead_letter_sent,
    output_keys,
    process_object,
)
from sklambda.metrics import Dimension, MetricName, MetricSet, Unit
from sklambda.model import get_model
from sklambda.settings import BatchSettings, get_settings

logger = Logger()
settings = get_settings(BatchSettings)  # a missing queue fails the init, naming the variable
model = get_model(settings)  # a model that does not load fails the init: Lambda retries, then DLQ
check_settings(model, settings)  # passthrough columns that clash with the outputs fail it too
DIMENSIONS = {
    Dimension.MODEL_NAME: model.name,
    Dimension.MODEL_VERSION: model.version,
    Dimension.SERVICE: settings.service,
}
aws.client("s3")  # made during the init phase, not on the first file
# SnapStart: the model scored once before the snapshot and every client dropped (one is made
# anew on the first file after a restore); randomness and log sampling renewed after it.
snapstart.register(lambda: model, after_restore=logger.refresh_sample_rate_calculation)


def record_metrics(metrics: MetricSet, result: Result) -> None:
    """What one file adds to the invocation's metrics."""
    if result.status == "succeeded":
        metrics.add(MetricName.FILES_PROCESSED, 1)
    elif result.status == "failed":
        metrics.add(MetricName.FILES_FAILED, 1)
    else:  # a duplicate delivery, or a key that is not ours
        metrics.add(MetricName.FILES_SKIPPED, 1)
    if result.status in ("succeeded", "failed"):
        metrics.add(MetricName.ROWS_SCORED, result.rows_scored)
        metrics.add(MetricName.ROWS_REJECTED, result.rows_rejected)
        metrics.add(MetricName.BATCH_DURATION, result.duration, Unit.SECONDS)
        if result.duration > 0:
            rate = result.rows_read / result.duration
            metrics.add(MetricName.ROWS_PER_SECOND, rate, Unit.PER_SECOND)
    metrics.add_alarmed(MetricName.FILES_FAILED, 1.0 if result.status == "failed" else 0.0)
    drift = result.record.get("drift") or {}
    if result.status == "succeeded" and drift.get("status") in ("ok", "drift"):
        metrics.add_alarmed(MetricName.MAX_FEATURE_DRIFT, drift["max_psi"])
        metrics.add(MetricName.MAX_FEATURE_DRIFT, drift["max_psi"], Unit.NONE)
        if drift.get("prediction_psi") is not None:
            metrics.add(MetricName.PREDICTION_DRIFT, drift["prediction_psi"], Unit.NONE)
        metrics.add_per(MetricName.FEATURE_DRIFT, Dimension.FEATURE, drift["psi"], Unit.NONE)


def _dead_letter(result: Result, bucket: str) -> None:
    body = {
        "reason": bounded(str(result.reason)),
        "source": result.record.get("source"),
        "record": f"s3://{bucket}/{output_keys(result.key).record}",
    }
    aws.client("sqs").send_message(
        QueueUrl=settings.dead_letter_queue_url, MessageBody=json.dumps(body)
    )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    results = []
    metrics = MetricSet(settings.metrics_namespace, DIMENSIONS)
    try:
        for record in event.get("Records", []):
            s3_info = record["s3"]
            bucket = s3_info["bucket"]["name"]
            key = unquote_plus(s3_info["object"]["key"])  # event keys are URL-encoded
            try:
                result = process_object(
                    aws.client("s3"),
                    bucket,
                    key,
                    model,
                    settings,
                    version_id=s3_info["object"].get("versionId"),
                    etag=s3_info["object"].get("eTag"),
                    size=s3_info["object"].get("size"),
                    remaining_ms=context.get_remaining_time_in_millis,
                    request_id=context.aws_request_id,
                )
            except Exception:
                metrics.add(MetricName.FILES_FAILED, 1)
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
                if result.dead_letter == "pending":
                    try:
                        _dead_letter(result, bucket)
                        dead_letter_sent(aws.client("s3"), bucket, result)
                    except Exception:
                        logger.exception(
                            "dead-letter message not sent or not recorded; raising so that "
                            "Lambda retries (the retry sends it)",
                            extra={"key": key},
                        )
                        raise
            else:
                logger.info("file done", extra=log)
            record_metrics(metrics, result)
            results.append({"key": key, "status": result.status, "reason": result.reason})
    finally:
        metrics.flush()
    return {"results": results}
