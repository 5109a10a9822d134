"""The built pre-traffic hook, as `sam local invoke` would run it (its layers only, no project
venv), checks the built predict function over the wire: boto3's real Lambda and CodeDeploy
clients talk to two local stand-ins (``AWS_ENDPOINT_URL_LAMBDA``, ``AWS_ENDPOINT_URL_CODEDEPLOY``):
the Lambda one runs the built predict function for each Invoke, the CodeDeploy one records the
report. moto has neither Lambda's invoke without Docker nor
``PutLifecycleEventHookExecutionStatus``.

They need a `sam build` for this machine in ``$SKLAMBDA_BUILD_DIR`` (``make build-host``).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sklambda_tools.local import TemplateResolver, invoke_built, load_template

pytestmark = pytest.mark.skipif(
    not os.environ.get("SKLAMBDA_BUILD_DIR"), reason="needs a host build: make test-built"
)

VERSION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:sklambda-predict:7"
HOOK_EVENT = {"DeploymentId": "d-TESTTEST1", "LifecycleEventHookExecutionId": "hook-execution-1"}


class Stand:
    """What the two stand-ins saw and how the Lambda one answers."""

    def __init__(self, answer: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.answer = answer
        self.invoked: list[str] = []
        self.reports: list[dict[str, Any]] = []


@contextlib.contextmanager
def serve(stand: Stand) -> Iterator[str]:
    """Both stand-ins on one loopback port (the CodeDeploy call is told by its X-Amz-Target)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            target = self.headers.get("X-Amz-Target", "")
            if target.endswith("PutLifecycleEventHookExecutionStatus"):
                request = json.loads(body)
                stand.reports.append(request)
                out = {"lifecycleEventHookExecutionId": request["lifecycleEventHookExecutionId"]}
                content_type = "application/x-amz-json-1.1"
            else:  # Lambda's Invoke: POST /2015-03-31/functions/<name>/invocations
                stand.invoked.append(self.path)
                out, content_type = stand.answer(json.loads(body)), "application/json"
            data = json.dumps(out).encode()
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def build_dir() -> Path:
    return Path(os.environ["SKLAMBDA_BUILD_DIR"]).resolve()


@pytest.fixture(scope="module")
def resolver(build_dir: Path) -> TemplateResolver:
    template = load_template(build_dir / "template.yaml")
    return TemplateResolver(template, resources={"PredictFunction.Version": VERSION_ARN})


def run_hook(
    build_dir: Path,
    resolver: TemplateResolver,
    python: str,
    runtime_paths: list[str],
    tamper: Callable[[dict[str, Any]], dict[str, Any]] = lambda answer: answer,
) -> tuple[dict[str, Any], Stand]:
    def predict(event: dict[str, Any]) -> dict[str, Any]:
        answer = invoke_built(
            build_dir,
            "PredictFunction",
            event,
            resolver,
            python=python,
            runtime_paths=runtime_paths,
        ).result
        return tamper(answer)

    stand = Stand(predict)
    with serve(stand) as url:
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_LAMBDA": url,
            "AWS_ENDPOINT_URL_CODEDEPLOY": url,
        }
        run = invoke_built(
            build_dir,
            "PreTrafficCheckFunction",
            HOOK_EVENT,
            resolver,
            python=python,
            runtime_paths=runtime_paths,
            env=env,
        )
    return run.result, stand


def test_the_built_hook_passes_the_built_predict_function(
    build_dir: Path, resolver: TemplateResolver, python: str, runtime_paths: list[str]
) -> None:
    verdict, stand = run_hook(build_dir, resolver, python, runtime_paths)
    # It invoked the version named in its environment (health, then the probe rows)
    assert stand.invoked and all(VERSION_ARN.replace(":", "%3A") in p for p in stand.invoked)
    assert len(stand.invoked) >= 2
    # and reported success to the deployment's hook execution, once
    assert verdict["status"] == "Succeeded", verdict
    assert stand.reports == [
        {
            "deploymentId": HOOK_EVENT["DeploymentId"],
            "lifecycleEventHookExecutionId": HOOK_EVENT["LifecycleEventHookExecutionId"],
            "status": "Succeeded",
        }
    ]


def test_the_built_hook_fails_a_version_that_answers_otherwise(
    build_dir: Path, resolver: TemplateResolver, python: str, runtime_paths: list[str]
) -> None:
    def shifted(answer: dict[str, Any]) -> dict[str, Any]:
        body = json.loads(answer["body"])
        for prediction in body.get("predictions", [])[1:2]:  # the second row answers otherwise
            for name in prediction["probabilities"]:
                prediction["probabilities"][name] = round(prediction["probabilities"][name], 3)
        return {**answer, "body": json.dumps(body)}

    verdict, stand = run_hook(build_dir, resolver, python, runtime_paths, shifted)
    assert verdict["status"] == "Failed"
    assert "row 1 of probes.json disagrees" in verdict["reason"], verdict
    assert [r["status"] for r in stand.reports] == ["Failed"]
