"""The pre-traffic hook of the predict function's rollout (CodeDeploy ``BeforeAllowTraffic``).

CodeDeploy invokes it, asynchronously, with ``DeploymentId`` and
``LifecycleEventHookExecutionId`` before moving any traffic to a new version; it runs the check
(``sklambda.pretraffic``: ``GET /health``, then the probe rows of ``/opt/model``, the same model
layer as the new version's) against ``SKLAMBDA_TARGET_FUNCTION`` and reports ``Succeeded`` or
``Failed``. Every outcome is reported, so that CodeDeploy is never left waiting for its hook
timeout: a bad version, settings that are wrong (the init does not fail, the check does, naming
the variable) and a check that itself raised. Only a report CodeDeploy did not take escapes
the handler, so that Lambda retries the invocation. An event without the two ids (an invocation
by hand) runs the check and returns the verdict without reporting it.
"""

import time
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda import aws
from sklambda.errors import ConfigurationError
from sklambda.pretraffic import FAILED, Verdict, check, failed, lambda_invoker
from sklambda.settings import PreTrafficSettings, get_settings

logger = Logger()
REPORT_MARGIN_SECONDS = 10.0
"""Of the invocation's remaining time, what the check leaves for logging and reporting."""
ALREADY_REPORTED = "LifecycleEventAlreadyCompletedException"


def _settings_at_init() -> tuple[PreTrafficSettings | None, ConfigurationError | None]:
    try:
        return get_settings(PreTrafficSettings), None
    except ConfigurationError as exc:
        logger.error("the hook's settings are wrong: every check fails", extra={"reason": str(exc)})
        return None, exc


settings, _settings_error = _settings_at_init()


def _hook_ids(event: Any) -> tuple[str, str] | None:
    """``(DeploymentId, LifecycleEventHookExecutionId)`` of a CodeDeploy event, else ``None``."""
    if not isinstance(event, dict):
        return None
    deployment = event.get("DeploymentId")
    execution = event.get("LifecycleEventHookExecutionId")
    if isinstance(deployment, str) and deployment and isinstance(execution, str) and execution:
        return deployment, execution
    return None


def run_check(deadline_seconds: float) -> Verdict:
    """The check of the target version, or a ``Failed`` verdict naming what kept it from
    running (wrong settings, or an error of the check itself)."""
    started = time.monotonic()
    if settings is None:
        return failed(f"the hook's settings are wrong: {_settings_error}")
    try:
        return check(
            lambda_invoker(settings.target_function),
            settings.model_dir,
            max_instances=settings.max_instances,
            deadline_seconds=deadline_seconds,
        )
    except Exception as exc:
        logger.exception("the check itself failed")
        return failed(
            f"the check itself failed: {type(exc).__name__}", seconds=time.monotonic() - started
        )


def report(ids: tuple[str, str], verdict: Verdict) -> None:
    """Tell CodeDeploy the verdict; raises when it was not taken (Lambda then retries)."""
    from botocore.exceptions import ClientError

    deployment, execution = ids
    try:
        aws.client("codedeploy").put_lifecycle_event_hook_execution_status(
            deploymentId=deployment,
            lifecycleEventHookExecutionId=execution,
            status=verdict.status,
        )
    except Exception as exc:
        if (
            isinstance(exc, ClientError)
            and exc.response.get("Error", {}).get("Code") == ALREADY_REPORTED
        ):
            # a retry after a report that was taken but whose answer was lost: nothing to do
            logger.warning(
                "CodeDeploy already has this hook's status", extra={"deployment": deployment}
            )
            return
        logger.exception(
            "CodeDeploy did not take the verdict: Lambda retries the invocation",
            extra={"deployment": deployment, "status": verdict.status},
        )
        raise
    logger.info(
        "verdict reported to CodeDeploy", extra={"deployment": deployment, "status": verdict.status}
    )


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ids = _hook_ids(event)
    deadline = context.get_remaining_time_in_millis() / 1000 - REPORT_MARGIN_SECONDS
    verdict = run_check(deadline)
    fields = {
        **verdict.as_dict(),
        "target": settings.target_function if settings else None,
        "deployment": ids[0] if ids else None,
    }
    if verdict.status == FAILED:
        logger.warning("pre-traffic check failed", extra=fields)
    else:
        logger.info("pre-traffic check succeeded", extra=fields)
    if ids is None:
        logger.info("no CodeDeploy ids in the event: the verdict is not reported")
    else:
        report(ids, verdict)
    return verdict.as_dict()
