"""The pre-traffic hook: the check of a new version and its report to CodeDeploy.

CodeDeploy is a real boto3 client under botocore's ``Stubber`` (the exact report asserted);
the new version is the predict handler in this process, on the committed model or a broken
copy of it, or a fake where the fault is the transport's (a timeout, a FunctionError,
throttling).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from sklambda import aws, pretraffic, probes
from sklambda.errors import ConfigurationError
from sklambda.manifest import dump_manifest, read_manifest
from sklambda.pretraffic import (
    InvokeFailed,
    InvokeTimeout,
    check,
    lambda_invoker,
    proxy_event,
)
from sklambda.settings import PreTrafficSettings, read_settings
from sklambda_tools.local import LambdaContext, load_handler, new_execution_environment
from sklambda_tools.rollout import tampered_copy

from support import EVENTS, PENGUINS_DIR, REPO

HOOK = REPO / "functions" / "pretraffic" / "app.py"
PREDICT = REPO / "functions" / "predict" / "app.py"
TARGET = "arn:aws:lambda:us-east-1:123456789012:function:sklambda-PredictFunction-AbC123:7"
HOOK_EVENT: dict[str, str] = json.loads((EVENTS / "pretraffic-hook.json").read_text())
MANIFEST = read_manifest(PENGUINS_DIR)
PROBES = probes.read(PENGUINS_DIR, MANIFEST)
ROWS = len(PROBES.rows)


class _CurrentStdout:
    """Writes to whatever sys.stdout is when a line is logged, so that capsys sees it."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def logs(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def codedeploy(fake_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """The CodeDeploy client the hook gets from ``sklambda.aws.client``, stubbed: a report not
    queued with ``add_response`` fails the test."""
    client = boto3.client("codedeploy", region_name="us-east-1")
    real = boto3.client

    def client_for(service: str, *args: Any, **options: Any) -> Any:
        return client if service == "codedeploy" else real(service, *args, **options)

    monkeypatch.setattr(boto3, "client", client_for)
    aws.reset_clients()
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def expect_report(stubber: Stubber, status: str, event: dict[str, str] = HOOK_EVENT) -> None:
    stubber.add_response(
        "put_lifecycle_event_hook_execution_status",
        {"lifecycleEventHookExecutionId": event["LifecycleEventHookExecutionId"]},
        {
            "deploymentId": event["DeploymentId"],
            "lifecycleEventHookExecutionId": event["LifecycleEventHookExecutionId"],
            "status": status,
        },
    )


@dataclasses.dataclass
class Version:
    """The predict handler in this process, standing in for the new version; every request
    it got is kept (event and timeout)."""

    module: ModuleType
    asked: list[tuple[dict[str, Any], float]] = dataclasses.field(default_factory=list)

    def __call__(self, event: dict[str, Any], timeout: float) -> Any:
        self.asked.append((event, timeout))
        context = LambdaContext(function_name="PredictFunction")
        return json.loads(
            json.dumps(self.module.lambda_handler(json.loads(json.dumps(event)), context))
        )

    def answer(self, payload: bytes) -> bytes:
        """What the Invoke API would return for ``payload``."""
        event = json.loads(payload)
        self.asked.append((event, 0.0))
        context = LambdaContext(function_name="PredictFunction")
        return json.dumps(self.module.lambda_handler(event, context)).encode()


@pytest.fixture
def deploy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., tuple[ModuleType, Version]]]:
    """``deploy(served_dir)``: the predict function on ``served_dir`` (the new version) and the
    hook that checks it with the probes of the committed model, in that order (each load is a
    new execution environment)."""

    def make(
        served: Path = PENGUINS_DIR,
        *,
        predict_env: dict[str, str] | None = None,
        **hook_env: str,
    ) -> tuple[ModuleType, Version]:
        monkeypatch.setenv("SKLAMBDA_MODEL_DIR", str(served))
        monkeypatch.delenv("SKLAMBDA_RUNTIME", raising=False)
        monkeypatch.delenv("SKLAMBDA_CAPTURE_RATE", raising=False)
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "predict")
        for key, value in (predict_env or {}).items():
            monkeypatch.setenv(key, value)
        version = Version(load_handler(PREDICT, name="pretraffic_target"))
        monkeypatch.setenv("SKLAMBDA_MODEL_DIR", str(PENGUINS_DIR))
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "pretraffic")
        monkeypatch.setenv("SKLAMBDA_TARGET_FUNCTION", TARGET)
        for key, value in hook_env.items():
            monkeypatch.setenv(key, value)
        hook = load_handler(HOOK)
        hook.logger.logger_handler.setStream(_CurrentStdout())
        monkeypatch.setattr(hook, "lambda_invoker", lambda arn: version)
        return hook, version

    yield make
    new_execution_environment()


def run(hook: ModuleType, event: Any = HOOK_EVENT, timeout: float = 30.0) -> dict[str, Any]:
    result: dict[str, Any] = hook.lambda_handler(
        event, LambdaContext(function_name="pretraffic", timeout_seconds=timeout)
    )
    return result


def predict_requests(version: Version) -> list[dict[str, Any]]:
    return [event for event, _ in version.asked if event["httpMethod"] == "POST"]


# --- the hook, end to end ----------------------------------------------------------------------


def test_a_version_that_serves_the_packaged_model_succeeds(
    deploy: Callable[..., tuple[ModuleType, Version]],
    codedeploy: Stubber,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the new version serving the committed model, limited to 100 instances a request
    hook, version = deploy(
        predict_env={"SKLAMBDA_MAX_INSTANCES": "100"}, SKLAMBDA_MAX_INSTANCES="100"
    )
    expect_report(codedeploy, "Succeeded")
    # When CodeDeploy invokes the hook
    verdict = run(hook)
    # Then every probe row was sent, GET /health first, then at most 100 rows a request
    assert verdict["status"] == "Succeeded", verdict
    assert verdict["rows"] == ROWS == 256
    assert verdict["reason"] == (
        f'all 256 probe rows agree with the packaged pipeline (model "penguins" '
        f"{MANIFEST.version}, 4 requests)"
    )
    asked = [event for event, _ in version.asked]
    assert [(e["httpMethod"], e["path"]) for e in asked] == [("GET", "/health")] + [
        ("POST", "/predict")
    ] * 3
    assert [e["requestContext"]["requestId"] for e in asked] == [
        "pretraffic-1",
        "pretraffic-2",
        "pretraffic-3",
        "pretraffic-4",
    ]
    sent = [i for e in predict_requests(version) for i in json.loads(e["body"])["instances"]]
    assert [len(json.loads(e["body"])["instances"]) for e in predict_requests(version)] == [
        100,
        100,
        56,
    ]
    assert sent == [row.instance for row in PROBES.rows]
    # each request was given the time left, less the margin kept for reporting
    timeouts = [t for _, t in version.asked]
    assert timeouts == sorted(timeouts, reverse=True)
    assert 30 - hook.REPORT_MARGIN_SECONDS - 5 < timeouts[-1] <= 30 - hook.REPORT_MARGIN_SECONDS
    # And the verdict is logged with the target and the deployment
    (line,) = [
        x for x in logs(capsys.readouterr().out) if x.get("message", "").startswith("pre-traffic")
    ]
    assert line["level"] == "INFO" and line["status"] == "Succeeded"
    assert line["target"] == TARGET and line["deployment"] == HOOK_EVENT["DeploymentId"]


def test_a_version_that_disagrees_fails_naming_the_row(
    deploy: Callable[..., tuple[ModuleType, Version]],
    codedeploy: Stubber,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a new version whose graph's weights were changed (and re-hashed: it loads)
    hook, _ = deploy(tampered_copy(PENGUINS_DIR, tmp_path / "tampered"))
    expect_report(codedeploy, "Failed")
    verdict = run(hook)
    # Then it fails at the first row that disagrees, quoting the row and the instance
    assert verdict["status"] == "Failed"
    assert verdict["reason"].startswith("row 0 of probes.json disagrees: probability of ")
    assert "where the packaged pipeline gave" in verdict["reason"]
    instance = json.dumps(PROBES.rows[0].instance, separators=(",", ":"))
    assert verdict["reason"].endswith("; instance " + instance)
    assert verdict["rows"] == 1
    (line,) = [
        x for x in logs(capsys.readouterr().out) if x.get("message", "").startswith("pre-traffic")
    ]
    assert line["level"] == "WARNING" and line["reason"] == verdict["reason"]


@pytest.mark.parametrize(
    ("change", "served"),
    [({"version": "0123456789ab"}, '"penguins" 0123456789ab'), ({"name": "birds"}, '"birds" ')],
)
def test_a_version_that_serves_another_model_fails_naming_both(
    deploy: Callable[..., tuple[ModuleType, Version]],
    codedeploy: Stubber,
    penguins_copy: Path,
    change: dict[str, str],
    served: str,
) -> None:
    # Given a new version serving another model (model.json is not hashed: it loads)
    manifest = read_manifest(penguins_copy)
    manifest = dataclasses.replace(
        manifest,
        name=change.get("name", manifest.name),
        version=change.get("version", manifest.version),
    )
    (penguins_copy / "model.json").write_text(dump_manifest(manifest))
    hook, version = deploy(penguins_copy)
    expect_report(codedeploy, "Failed")
    verdict = run(hook)
    assert verdict["status"] == "Failed"
    assert verdict["reason"] == (
        f"the new version serves model {served}{'' if 'version' in change else MANIFEST.version} "
        f'where the packaged model is "penguins" {MANIFEST.version}'
    )
    assert not predict_requests(version)  # no probe row sent to the wrong model


def test_a_version_whose_model_is_unavailable_fails_with_the_503(
    deploy: Callable[..., tuple[ModuleType, Version]], codedeploy: Stubber, penguins_copy: Path
) -> None:
    # Given a new version whose model layer was tampered with (not re-hashed: it will not load)
    graph = bytearray((penguins_copy / "model.onnx").read_bytes())
    graph[-1] ^= 0xFF
    (penguins_copy / "model.onnx").write_bytes(bytes(graph))
    hook, _ = deploy(penguins_copy)
    expect_report(codedeploy, "Failed")
    assert run(hook) == {
        "status": "Failed",
        "reason": 'GET /health answered 503: "the model is unavailable"',
        "rows": 0,
        "seconds": pytest.approx(0, abs=5),
    }


def test_a_version_that_does_not_answer_in_time_fails(
    deploy: Callable[..., tuple[ModuleType, Version]],
    codedeploy: Stubber,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a new version that answers GET /health but no prediction in time
    hook, version = deploy()

    def slow(event: dict[str, Any], timeout: float) -> Any:
        if event["httpMethod"] == "POST":
            raise InvokeTimeout()
        return version(event, timeout)

    monkeypatch.setattr(hook, "lambda_invoker", lambda arn: slow)
    expect_report(codedeploy, "Failed")
    verdict = run(hook, timeout=12.0)
    assert verdict["status"] == "Failed"
    # the 12 s the invocation had, less the 10 s kept for reporting, less what /health took
    assert verdict["reason"] in {
        f"the new version did not answer POST /predict (probe rows 0-255) within {s} seconds"
        for s in ("2.0", "1.9", "1.8")
    }


def test_a_function_error_fails_with_its_type(
    deploy: Callable[..., tuple[ModuleType, Version]],
    codedeploy: Stubber,
    fake_aws: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a new version that fails its init: the Invoke API answers 200 with FunctionError
    hook, _ = deploy()
    client = boto3.client("lambda", region_name="us-east-1")
    error = json.dumps(
        {"errorType": "Runtime.ImportModuleError", "errorMessage": "Unable to import module 'app'"}
    ).encode()
    with Stubber(client) as stub:
        stub.add_response(
            "invoke",
            {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": body(error)},
            {"FunctionName": TARGET, "InvocationType": "RequestResponse", "Payload": ANY},
        )
        monkeypatch.setattr(
            hook, "lambda_invoker", functools.partial(lambda_invoker, client_for=lambda s: client)
        )
        expect_report(codedeploy, "Failed")
        verdict = run(hook)
        stub.assert_no_pending_responses()
    assert verdict["reason"] == (
        "GET /health failed: the function failed (Unhandled): Runtime.ImportModuleError: "
        "Unable to import module 'app'"
    )


class LambdaService:
    """Lambda's Invoke API behind a real boto3 client (its requests built and its errors
    raised by botocore): throttles the first ``throttle`` calls, then runs ``version``."""

    def __init__(self, version: Version, throttle: int) -> None:
        self.version, self.throttle, self.calls = version, throttle, 0
        self.client = boto3.client("lambda", region_name="us-east-1")
        self.client.meta.events.register("before-call.lambda.Invoke", self.answer)

    def answer(self, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        self.calls += 1
        if self.calls <= self.throttle:
            error = {"Error": {"Code": "TooManyRequestsException", "Message": "Rate exceeded"}}
            return AWSResponse(None, 429, {}, None), {**error, "ResponseMetadata": {}}
        data = self.version.answer(params["body"])
        return AWSResponse(None, 200, {}, None), {"StatusCode": 200, "Payload": body(data)}


def test_a_throttled_invoke_is_tried_again_and_the_check_succeeds(
    deploy: Callable[..., tuple[ModuleType, Version]],
    codedeploy: Stubber,
    fake_aws: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given Lambda throttling the first two invokes
    hook, version = deploy()
    service = LambdaService(version, throttle=2)
    pauses: list[float] = []
    invoker = functools.partial(
        lambda_invoker, client_for=lambda s: service.client, sleep=pauses.append
    )
    monkeypatch.setattr(hook, "lambda_invoker", invoker)
    expect_report(codedeploy, "Succeeded")
    verdict = run(hook)
    # Then the first request is tried again after growing pauses, and all rows are checked
    assert verdict["status"] == "Succeeded" and verdict["rows"] == ROWS
    assert pauses == [0.25, 0.5]
    assert service.calls == 4  # health three times, one prediction request


def test_a_report_codedeploy_refuses_raises_so_that_lambda_retries(
    deploy: Callable[..., tuple[ModuleType, Version]], codedeploy: Stubber
) -> None:
    hook, _ = deploy()
    codedeploy.add_client_error(
        "put_lifecycle_event_hook_execution_status",
        service_error_code="ThrottlingException",
        http_status_code=400,
    )
    with pytest.raises(ClientError, match="ThrottlingException"):
        run(hook)


def test_a_report_already_taken_is_not_retried(
    deploy: Callable[..., tuple[ModuleType, Version]], codedeploy: Stubber
) -> None:
    # Given a retried invocation whose first report CodeDeploy took (the answer was lost)
    hook, _ = deploy()
    codedeploy.add_client_error(
        "put_lifecycle_event_hook_execution_status",
        service_error_code="LifecycleEventAlreadyCompletedException",
        http_status_code=400,
    )
    assert run(hook)["status"] == "Succeeded"


@pytest.mark.parametrize(
    "event",
    [{}, {"DeploymentId": "d-EXAMPLE111"}, {"LifecycleEventHookExecutionId": ""}, [], None],
)
def test_an_event_without_the_ids_is_checked_and_not_reported(
    deploy: Callable[..., tuple[ModuleType, Version]], codedeploy: Stubber, event: Any
) -> None:
    hook, version = deploy()
    verdict = run(hook, event)  # the stubber has no report queued: one would fail the test
    assert verdict["status"] == "Succeeded" and verdict["rows"] == ROWS
    assert len(version.asked) == 2


def test_a_check_that_itself_raises_is_reported_failed(
    deploy: Callable[..., tuple[ModuleType, Version]],
    codedeploy: Stubber,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hook, _ = deploy()

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(hook, "check", broken)
    expect_report(codedeploy, "Failed")
    verdict = run(hook)
    assert verdict["reason"] == "the check itself failed: RuntimeError"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (None, "SKLAMBDA_TARGET_FUNCTION is required"),
        (TARGET.rsplit(":", 1)[0], "SKLAMBDA_TARGET_FUNCTION must be the ARN of a published"),
        (TARGET.rsplit(":", 1)[0] + ":live", "SKLAMBDA_TARGET_FUNCTION must be the ARN of a"),
        (TARGET.rsplit(":", 1)[0] + ":$LATEST", "SKLAMBDA_TARGET_FUNCTION must be the ARN of"),
    ],
)
def test_wrong_settings_are_reported_failed_not_left_waiting(
    deploy: Callable[..., tuple[ModuleType, Version]],
    codedeploy: Stubber,
    monkeypatch: pytest.MonkeyPatch,
    target: str | None,
    message: str,
) -> None:
    # Given a hook whose target is missing or not a version: its init does not fail
    hook, version = deploy(**({} if target is None else {"SKLAMBDA_TARGET_FUNCTION": target}))
    if target is None:
        monkeypatch.delenv("SKLAMBDA_TARGET_FUNCTION")
        hook = load_handler(HOOK)
    expect_report(codedeploy, "Failed")
    verdict = run(hook)
    assert verdict["reason"].startswith(f"the hook's settings are wrong: {message}")
    assert not version.asked


def test_the_settings_bounds() -> None:
    settings = read_settings(PreTrafficSettings, {"SKLAMBDA_TARGET_FUNCTION": TARGET})
    assert settings.max_instances == 1000 and settings.model_dir == "/opt/model"
    env = {"SKLAMBDA_TARGET_FUNCTION": TARGET, "SKLAMBDA_MAX_INSTANCES": "100001"}
    with pytest.raises(ConfigurationError, match=r"^SKLAMBDA_MAX_INSTANCES is invalid"):
        read_settings(PreTrafficSettings, env)
    cn = "arn:aws-cn:lambda:cn-north-1:123456789012:function:f:12"
    assert read_settings(PreTrafficSettings, {"SKLAMBDA_TARGET_FUNCTION": cn}).target_function


# --- the check, with fakes -------------------------------------------------------------------


def health_ok(model: str = "penguins", version: str = MANIFEST.version) -> dict[str, Any]:
    body_ = {"status": "ok", "model": {"name": model, "version": version}, "runtime": "onnx"}
    return {"statusCode": 200, "body": json.dumps(body_)}


def scripted(*answers: Any) -> Callable[[dict[str, Any], float], Any]:
    """A version that answers GET /health as the committed model and then ``answers`` in turn
    (an exception is raised)."""
    queue = list(answers)

    def invoke(event: dict[str, Any], timeout: float) -> Any:
        if event["httpMethod"] == "GET":
            return health_ok()
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return invoke


def refused(status: int, payload: dict[str, Any]) -> dict[str, Any]:
    return {"statusCode": status, "body": json.dumps(payload)}


def verdict_of(
    invoke: Callable[[dict[str, Any], float], Any], **options: Any
) -> pretraffic.Verdict:
    options = {"max_instances": 1000, "deadline_seconds": 30.0, **options}
    return check(invoke, PENGUINS_DIR, **options)


def test_a_refused_request_names_the_first_probe_row_it_found_wrong() -> None:
    answer = refused(
        422,
        {
            "message": "some instances do not match the model's input schema",
            "errors": [{"path": "instances[3].island", "reason": "unknown category"}],
        },
    )
    verdict = verdict_of(scripted(answer), max_instances=100)
    assert verdict.reason == (
        'POST /predict (probe rows 0-99) answered 422: "some instances do not match the '
        'model\'s input schema"; first error: row 3 of probes.json, "island": "unknown category"'
    )
    answer = refused(413, {"message": "a request may carry at most 10 instances"})
    verdict = verdict_of(scripted(answer), max_instances=100)
    assert verdict.reason == (
        'POST /predict (probe rows 0-99) answered 413: "a request may carry at most 10 instances"'
    )


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            None,
            "the new version answered POST /predict (probe rows 0-255) with no API Gateway "
            "proxy result",
        ),
        (
            [],
            "the new version answered POST /predict (probe rows 0-255) with no API Gateway "
            "proxy result",
        ),
        (
            {"statusCode": "200", "body": "{}"},
            "the new version answered POST /predict (probe "
            "rows 0-255) with no API Gateway proxy result",
        ),
        (
            {"statusCode": 200, "body": "not json"},
            "POST /predict (probe rows 0-255) answered 200 with a body that is not a JSON object",
        ),
        (
            {"statusCode": 502, "body": "<html>"},
            "POST /predict (probe rows 0-255) answered 502: (no message)",
        ),
        (
            refused(
                200, {"model": {"name": "penguins", "version": MANIFEST.version}, "predictions": []}
            ),
            "POST /predict (probe rows 0-255) answered 0 predictions for 256 instances",
        ),
        (
            refused(200, {"predictions": []}),
            "POST /predict (probe rows 0-255) answered 200 without the model's name and version",
        ),
        (
            InvokeFailed("the invoke API refused it: AccessDeniedException"),
            "POST /predict "
            "(probe rows 0-255) failed: the invoke API refused it: AccessDeniedException",
        ),
    ],
)
def test_every_odd_answer_is_a_failed_verdict(answer: Any, reason: str) -> None:
    verdict = verdict_of(scripted(answer))
    assert (verdict.status, verdict.reason) == ("Failed", reason)


def test_a_reason_is_one_bounded_line() -> None:
    message = "line one\nline two " + "x" * 5000
    verdict = verdict_of(scripted(refused(500, {"message": message})))
    assert "\n" not in verdict.reason
    assert verdict.reason.startswith('POST /predict (probe rows 0-255) answered 500: "line one ')
    assert len(verdict.reason) < 200 and verdict.reason.endswith('…"')


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Echo:
    """A version that serves the committed model and answers each probe row as packaged (the
    requests come in order); each request it got is kept, with its timeout."""

    def __init__(self, clock: Clock | None = None, step: float = 0.0) -> None:
        self.clock, self.step = clock, step
        self.asked: list[tuple[dict[str, Any], float]] = []
        self.next_row = 0

    def __call__(self, event: dict[str, Any], timeout: float) -> Any:
        self.asked.append((event, timeout))
        if self.clock is not None:
            self.clock.now += self.step
        if event["httpMethod"] == "GET":
            return health_ok()
        n = len(json.loads(event["body"])["instances"])
        rows = PROBES.rows[self.next_row : self.next_row + n]
        self.next_row += n
        model = {"name": "penguins", "version": MANIFEST.version}
        return refused(200, {"model": model, "predictions": [r.expected for r in rows]})


def test_each_request_gets_the_time_left_and_the_check_stops_when_none_is() -> None:
    # Given a version whose every answer takes 4 s of a 10 s deadline, 100 rows a request
    clock = Clock()
    version = Echo(clock, step=4.0)
    verdict = verdict_of(version, max_instances=100, deadline_seconds=10.0, clock=clock)
    # Then health gets 10 s, the first prediction 6, the second 2, and no time is left after
    assert [t for _, t in version.asked] == [10.0, 6.0, 2.0]
    assert verdict.status == "Failed"
    assert verdict.reason == (
        "the check ran out of time (10 seconds) before POST /predict (probe rows 200-255), "
        "after 200 of 256 probe rows"
    )
    assert (verdict.rows, verdict.seconds) == (200, 12.0)


def test_the_probes_answered_back_succeed_and_the_requests_are_proxy_events() -> None:
    version = Echo()
    verdict = verdict_of(version, max_instances=ROWS)
    assert verdict.status == "Succeeded" and verdict.rows == ROWS
    (health, _), (predict, _) = version.asked
    assert health == proxy_event("GET", "/health", None, "pretraffic-1")
    assert health["body"] is None and "Content-Type" not in health["headers"]
    assert predict["headers"]["Content-Type"] == "application/json"
    assert predict["requestContext"]["requestId"] == "pretraffic-2"
    assert json.loads(predict["body"]) == {"instances": [r.instance for r in PROBES.rows]}


def test_requests_stay_under_the_body_limit() -> None:
    version = Echo()
    verdict = verdict_of(version, max_body_bytes=4096)
    assert verdict.status == "Succeeded" and verdict.rows == ROWS
    bodies = [e["body"] for e, _ in version.asked[1:]]
    assert len(bodies) > 5 and all(len(b) <= 4096 for b in bodies)
    # as full as the limit allows: one more row would not have fitted
    assert all(len(b) > 4096 - 200 for b in bodies[:-1])


@pytest.mark.parametrize("how", ["unlisted", "missing", "tampered"])
def test_a_probe_file_missing_or_tampered_fails_saying_so(penguins_copy: Path, how: str) -> None:
    if how == "unlisted":
        manifest = read_manifest(penguins_copy)
        artifacts = {k: v for k, v in manifest.artifacts.items() if k != "probes.json"}
        (penguins_copy / "model.json").write_text(
            dump_manifest(dataclasses.replace(manifest, artifacts=artifacts))
        )
        expected = (
            f"the probes of the packaged model cannot be used: model 'penguins' "
            f"{MANIFEST.version} has no probes.json (packaged before probe files were "
            "recorded): package it again"
        )
    elif how == "missing":
        (penguins_copy / "probes.json").unlink()
        expected = (
            "the probes of the packaged model cannot be used: probes.json is listed in "
            "model.json but missing"
        )
    else:
        text = (penguins_copy / "probes.json").read_text()
        (penguins_copy / "probes.json").write_text(text.replace('"Gentoo"', '"Adelie"', 1))
        expected = "the probes of the packaged model cannot be used: probes.json does not match"
    asked: list[Any] = []
    verdict = check(
        lambda e, t: asked.append(e), penguins_copy, max_instances=1000, deadline_seconds=30
    )
    assert verdict.status == "Failed" and verdict.reason.startswith(expected)
    assert not asked  # nothing sent to the version


# --- lambda_invoker against a stubbed Lambda client ----------------------------------------------


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


@pytest.fixture
def lambda_client(fake_aws: None) -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("lambda", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


EVENT = proxy_event("GET", "/health", None, "pretraffic-1")
PAYLOAD = json.dumps(EVENT, separators=(",", ":")).encode()
INVOKE = {"FunctionName": TARGET, "InvocationType": "RequestResponse", "Payload": PAYLOAD}
ANSWER = {"statusCode": 200, "body": '{"status":"ok"}'}


def throttled(stubber: Stubber) -> None:
    stubber.add_client_error(
        "invoke", "TooManyRequestsException", "Rate exceeded", 429, expected_params=INVOKE
    )


def test_the_invoker_sends_the_event_as_json_to_the_version(
    lambda_client: tuple[Any, Stubber],
) -> None:
    client, stubber = lambda_client
    data = json.dumps(ANSWER).encode()
    stubber.add_response("invoke", {"StatusCode": 200, "Payload": body(data)}, INVOKE)
    assert lambda_invoker(TARGET, client_for=lambda s: client)(EVENT, 5.0) == ANSWER


def test_a_function_error_is_a_failure_with_its_type_and_message(
    lambda_client: tuple[Any, Stubber],
) -> None:
    client, stubber = lambda_client
    crash = {"errorType": "Runtime.ExitError", "errorMessage": "exit status 1\n" + "x" * 500}
    data = json.dumps(crash).encode()
    stubber.add_response(
        "invoke", {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": body(data)}, INVOKE
    )
    with pytest.raises(InvokeFailed) as caught:
        lambda_invoker(TARGET, client_for=lambda s: client)(EVENT, 5.0)
    reason = caught.value.reason
    assert reason.startswith("the function failed (Unhandled): Runtime.ExitError: exit status 1 x")
    assert len(reason) < 200 and "\n" not in reason


def test_throttling_is_tried_again_with_growing_pauses(lambda_client: tuple[Any, Stubber]) -> None:
    client, stubber = lambda_client
    for _ in range(3):
        throttled(stubber)
    data = json.dumps(ANSWER).encode()
    stubber.add_response("invoke", {"StatusCode": 200, "Payload": body(data)}, INVOKE)
    pauses: list[float] = []
    invoke = lambda_invoker(TARGET, client_for=lambda s: client, sleep=pauses.append)
    assert invoke(EVENT, 30.0) == ANSWER
    assert pauses == [0.25, 0.5, 1.0]


def test_throttling_gives_up_after_the_attempts(lambda_client: tuple[Any, Stubber]) -> None:
    client, stubber = lambda_client
    for _ in range(4):
        throttled(stubber)
    invoke = lambda_invoker(TARGET, client_for=lambda s: client, sleep=lambda s: None)
    with pytest.raises(InvokeFailed, match=r"TooManyRequestsException \(4 times\)$"):
        invoke(EVENT, 30.0)


@pytest.mark.parametrize("code", ["ResourceConflictException", "SnapStartNotReadyException"])
def test_a_version_not_ready_yet_is_tried_again(
    code: str, lambda_client: tuple[Any, Stubber]
) -> None:
    client, stubber = lambda_client
    stubber.add_client_error("invoke", code, "not ready", 409, expected_params=INVOKE)
    data = json.dumps(ANSWER).encode()
    stubber.add_response("invoke", {"StatusCode": 200, "Payload": body(data)}, INVOKE)
    invoke = lambda_invoker(TARGET, client_for=lambda s: client, sleep=lambda s: None)
    assert invoke(EVENT, 30.0) == ANSWER


def test_another_refusal_is_not_tried_again(lambda_client: tuple[Any, Stubber]) -> None:
    client, stubber = lambda_client
    stubber.add_client_error("invoke", "AccessDeniedException", "no", 403, expected_params=INVOKE)
    invoke = lambda_invoker(TARGET, client_for=lambda s: client, sleep=lambda s: None)
    with pytest.raises(InvokeFailed, match=r"refused it: AccessDeniedException$"):
        invoke(EVENT, 30.0)


def test_throttling_gives_up_when_the_time_runs_out(lambda_client: tuple[Any, Stubber]) -> None:
    # Given 1 s: the first pause (0.25 s) fits, the second (0.5 s) would not
    client, stubber = lambda_client
    throttled(stubber)
    throttled(stubber)
    clock = Clock()
    left: list[float] = []

    def client_for(seconds: float) -> Any:
        left.append(seconds)
        clock.now += 0.3  # each throttled call takes 0.3 s
        return client

    def sleep(seconds: float) -> None:
        clock.now += seconds

    invoke = lambda_invoker(TARGET, client_for=client_for, clock=clock, sleep=sleep)
    with pytest.raises(InvokeFailed, match=r"TooManyRequestsException \(2 times\)$"):
        invoke(EVENT, 1.0)
    assert left == [1.0, pytest.approx(0.45)]  # each call's client bounded by the time left


def test_a_refusal_is_not_tried_again(lambda_client: tuple[Any, Stubber]) -> None:
    client, stubber = lambda_client
    stubber.add_client_error("invoke", "ResourceNotFoundException", "no such version", 404)
    with pytest.raises(InvokeFailed) as caught:
        lambda_invoker(TARGET, client_for=lambda s: client)(EVENT, 5.0)
    assert caught.value.reason == "the invoke API refused it: ResourceNotFoundException"


def test_a_read_timeout_is_a_timeout() -> None:
    class Silent:
        def invoke(self, **_: Any) -> Any:
            raise ReadTimeoutError(endpoint_url="https://lambda.us-east-1.amazonaws.com")

    with pytest.raises(InvokeTimeout):
        lambda_invoker(TARGET, client_for=lambda s: Silent())(EVENT, 5.0)


def test_the_default_client_reads_no_longer_than_the_time_left(
    fake_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, dict[str, Any]]] = []

    class Answering:
        def invoke(self, **_: Any) -> Any:
            return {"StatusCode": 200, "Payload": body(json.dumps(ANSWER).encode())}

    def client(service: str, **options: Any) -> Any:
        asked.append((service, options))
        return Answering()

    monkeypatch.setattr(aws, "client", client)
    invoke = lambda_invoker(TARGET)
    invoke(EVENT, 7.6)
    invoke(EVENT, 0.2)
    assert asked == [
        ("lambda", {"timeout": 7.0, "attempts": 1}),  # whole seconds, never more than left
        ("lambda", {"timeout": 1.0, "attempts": 1}),  # at least one
    ]


def test_a_disagreement_in_a_later_request_names_its_row_in_the_probe_file() -> None:
    class WrongAt(Echo):
        def __call__(self, event: dict[str, Any], timeout: float) -> Any:
            answer = super().__call__(event, timeout)
            document = json.loads(answer["body"])
            if event["httpMethod"] == "POST" and self.next_row == 200:  # rows 100-199
                document["predictions"][50] = {**document["predictions"][50], "label": "Emperor"}
            return {**answer, "body": json.dumps(document)}

    verdict = verdict_of(WrongAt(), max_instances=100)
    expected = PROBES.rows[150].expected["label"]
    assert verdict.reason.startswith(
        f'row 150 of probes.json disagrees: label "Emperor" where the packaged pipeline gave '
        f'"{expected}"; instance {{"island":'
    )
    assert verdict.rows == 151


def test_a_message_that_is_not_plain_text_is_quoted_safely() -> None:
    verdict = verdict_of(scripted(refused(500, {"message": "bad\ud800 \u0000 news"})))
    assert verdict.reason == 'POST /predict (probe rows 0-255) answered 500: "bad? \\u0000 news"'
    verdict.reason.encode("utf-8")


# --- answers and probe files at the edges of what JSON can carry -------------------------------


def test_an_integer_too_large_for_a_float_in_an_answer_is_a_failed_verdict() -> None:
    # Given a version whose first probability is an integer of 400 digits (JSON allows it)
    class Huge(Echo):
        def __call__(self, event: dict[str, Any], timeout: float) -> Any:
            answer = super().__call__(event, timeout)
            if event["httpMethod"] == "GET":
                return answer
            document = json.loads(answer["body"])
            first = document["predictions"][0]
            first["probabilities"] = {k: 10**400 for k in first["probabilities"]}
            return {**answer, "body": json.dumps(document)}

    verdict = verdict_of(Huge())
    assert verdict.status == "Failed"
    assert verdict.reason.startswith("row 0 of probes.json disagrees: probability of ")
    regression = probes.parse(
        {
            "format": 1,
            "task": "regression",
            "tolerance": 1e-5,
            "rows": [{"instance": {}, "expected": {"value": 1.0}}],
        }
    )
    assert probes.disagreement(regression, regression.rows[0].expected, {"value": 10**400}) == (
        "the answer has no numeric value"
    )


def test_a_function_answer_nested_too_deep_is_a_failure(
    lambda_client: tuple[Any, Stubber],
) -> None:
    client, stubber = lambda_client
    deep = b"[" * 100_000 + b"]" * 100_000
    stubber.add_response("invoke", {"StatusCode": 200, "Payload": body(deep)}, INVOKE)
    stubber.add_response(
        "invoke", {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": body(deep)}, INVOKE
    )
    invoke = lambda_invoker(TARGET, client_for=lambda s: client)
    with pytest.raises(InvokeFailed, match=r"^the function's answer is not JSON$"):
        invoke(EVENT, 5.0)
    with pytest.raises(InvokeFailed, match=r"^the function failed \(Unhandled\)$"):
        invoke(EVENT, 5.0)


def test_a_refusal_naming_an_absurd_instance_index_is_still_a_verdict() -> None:
    path = "instances[" + "9" * 5000 + "].island"
    answer = refused(422, {"message": "no", "errors": [{"path": path, "reason": "bad"}]})
    verdict = verdict_of(scripted(answer))
    assert (verdict.status, verdict.reason) == (
        "Failed",
        'POST /predict (probe rows 0-255) answered 422: "no"',
    )
