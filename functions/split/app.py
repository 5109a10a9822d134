"""The split path's steps: plan a file too big for one invocation, score a share of it, finish
it, or abort it (``sklambda.shares``).

Invoked by the split state machine (``statemachines/split.asl.json``) only, with
``{"action": "plan" | "score" | "finish" | "abort", ...}``. A step that ends the file (a plan
that fails, a finish, an abort) publishes the file's metrics and, for a failed file, sends its
dead-letter message and records that it was sent, as the batch function does; a send that
fails is raised, for the state machine to retry the step (which finds the letter pending).
A fault of S3 or of the network is raised as ``RetryableError``, the error the state
machine's retries match; anything else a step cannot do fails the file, not the step.
"""

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda import aws, shares, snapstart
from sklambda.batch import check_settings, file_metrics, retryable, send_dead_letter
from sklambda.metrics import Dimension, MetricSet
from sklambda.model import get_model
from sklambda.settings import BatchSettings, get_settings

logger = Logger()
settings = get_settings(BatchSettings)
model = get_model(settings)
check_settings(model, settings)
DIMENSIONS = {
    Dimension.MODEL_NAME: model.name,
    Dimension.MODEL_VERSION: model.version,
    Dimension.SERVICE: settings.service,
}
aws.client("s3")
snapstart.register(lambda: model, after_restore=logger.refresh_sample_rate_calculation)


def _step(event: dict[str, Any], context: LambdaContext) -> shares.Step:
    s3, action = aws.client("s3"), event.get("action")
    if action == "plan":
        return shares.plan_file(s3, event["source"], model, settings)
    if action == "finish":
        return shares.finish(
            s3, event["source"], event["plan"], model, settings, execution=event.get("execution")
        )
    if action == "abort":
        state = event["state"]
        planned = (state.get("plan") or {}).get("Payload")
        return shares.abort(
            s3,
            state["source"],
            state.get("error"),
            model,
            settings,
            planned=planned if isinstance(planned, dict) else None,
            execution=event.get("execution"),
        )
    raise ValueError(f"unknown action {action!r}: plan, score, finish or abort")


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") == "score":
        item = event["item"]
        done = shares.score_share(
            aws.client("s3"), item, model, settings, context.get_remaining_time_in_millis
        )
        logger.info("share scored", extra={"prefix": item.get("prefix"), **done})
        return done
    metrics = MetricSet(settings.metrics_namespace, DIMENSIONS)
    try:
        step = _step(event, context)
        result = step.result
        if result is not None:
            log = {"key": result.key, "status": result.status, "reason": result.reason}
            if result.status == "failed" and result.dead_letter == "pending":
                logger.error("file failed", extra=log)
                try:
                    queue = settings.dead_letter_queue_url
                    send_dead_letter(aws.client("s3"), aws.client("sqs"), queue, result)
                except Exception as exc:  # SQS or S3 trouble: the step again sends it
                    if retryable(exc):
                        raise shares.RetryableError(f"dead letter not sent: {exc}") from exc
                    raise
            else:
                logger.info("file done", extra=log)
            file_metrics(metrics, result)
        return step.payload
    finally:
        metrics.flush()
