"""Batch inference: a file dropped under ``incoming/`` in the data bucket is scored in full.

Triggered by S3 ``ObjectCreated`` notifications (asynchronous invocation). The handler walks the
records, URL-decodes each key, and hands the object to ``sklambda.batch``. A failure that a retry
cannot mend (a bad file, too little time) is recorded in the file's job record, with its
dead-letter message pending, and sent to the dead-letter queue at once; the record then says it
was sent. A send that fails is raised: the retry finds the letter pending and sends it. Anything
else is raised too, so that Lambda retries the event and, when the retries are spent, sends it
to the same queue. A file over ``SKLAMBDA_SPLIT_BYTES`` is handed to the split path's state
machine instead (``sklambda.shares``), when the stack has one.
"""

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda import aws, snapstart
from sklambda.batch import (
    Result,
    check_settings,
    file_metrics,
    process_object,
    send_dead_letter,
)
from sklambda.metrics import Dimension, MetricName, MetricSet
from sklambda.model import get_model
from sklambda.settings import BatchSettings, get_settings
from sklambda.shares import start_split

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


def _split(source: dict[str, Any]) -> Result:
    """Hand a file over SKLAMBDA_SPLIT_BYTES to the split path's state machine."""
    assert settings.split_state_machine_arn
    return start_split(aws.client("stepfunctions"), settings.split_state_machine_arn, source)


split = _split if settings.split_state_machine_arn else None  # unset: every file is scored here
# SnapStart: the model scored once before the snapshot and every client dropped (one is made
# anew on the first file after a restore); randomness and log sampling renewed after it.
snapstart.register(lambda: model, after_restore=logger.refresh_sample_rate_calculation)


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
                    split=split,
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
                        queue = settings.dead_letter_queue_url
                        send_dead_letter(aws.client("s3"), aws.client("sqs"), queue, result)
                    except Exception:
                        logger.exception(
                            "dead-letter message not sent or not recorded; raising so that "
                            "Lambda retries (the retry sends it)",
                            extra={"key": key},
                        )
                        raise
            else:
                logger.info("file done", extra=log)
            file_metrics(metrics, result)
            results.append({"key": key, "status": result.status, "reason": result.reason})
    finally:
        metrics.flush()
    return {"results": results}
