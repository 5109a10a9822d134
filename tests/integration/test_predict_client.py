"""examples/predict_client.py against the local API, in each AuthMode, over real HTTP.

A recording WSGI layer in front of ``LocalApi`` counts the requests the client sends, can answer
chosen statuses first (to exercise the retries), and in IAM mode checks each request's SigV4
signature with botocore from the same fake credentials (the local API only asks for one).
Fake credentials only, and no network beyond the loopback.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, ClassVar
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sklambda_tools.local import new_execution_environment
from sklambda_tools.localapi import LocalApi, Server

from support import PENGUINS_DIR, REPO

CLIENT = REPO / "examples" / "predict_client.py"
INSTANCES: list[dict[str, Any]] = json.loads((REPO / "samples" / "request.json").read_text())[
    "instances"
]
FAKE = Credentials("testing", "testing", "testing")  # what the fake environment below holds
REGION = "us-east-1"
API_KEY = "local-test-key"


def load_client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("predict_client", CLIENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


client = load_client()


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fake credentials in the environment, no AWS config files, loopback never proxied."""
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("SKLAMBDA_API_KEY", raising=False)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    saved = dict(os.environ)
    yield
    os.environ.clear()  # the local API loads the function's environment into os.environ
    os.environ.update(saved)
    new_execution_environment()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's waits between attempts, recorded instead of slept (each its upper bound)."""
    waited: list[float] = []
    monkeypatch.setattr(client, "time", SimpleNamespace(sleep=waited.append))
    monkeypatch.setattr(client, "random", SimpleNamespace(uniform=lambda low, high: high))
    return waited


# --- the recording layer in front of the local API -----------------------------------------------


@dataclass
class Seen:
    """A request as it arrived: header names in lower case."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


def signature_of(seen: Seen, credentials: Credentials, body: bytes | None = None) -> str:
    """The Authorization header botocore computes for ``seen`` (its signed headers, its
    X-Amz-Date, ``body`` instead of its own if given) with ``credentials``."""
    signed = re.search(r"SignedHeaders=([^,]+)", seen.headers["authorization"])
    assert signed is not None
    headers = {
        name: seen.headers[name]
        for name in signed.group(1).split(";")
        if name not in ("x-amz-date", "x-amz-security-token")  # add_auth sets these again
    }
    request = AWSRequest(
        method=seen.method, url=seen.url, data=seen.body if body is None else body, headers=headers
    )
    when = datetime.strptime(seen.headers["x-amz-date"], "%Y%m%dT%H%M%SZ")
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(credentials, "execute-api", REGION).add_auth(request)
    authorization: str = request.headers["Authorization"]
    return authorization


class Recorder:
    """WSGI middleware: records every request, answers ``first`` statuses before passing any on,
    waits ``delay`` seconds, and with ``verify`` refuses a request whose signature is wrong."""

    MESSAGES: ClassVar[dict[int, str]] = {
        429: "Too Many Requests",
        502: "Internal server error",
        503: "Service Unavailable",
    }

    def __init__(
        self,
        app: LocalApi,
        *,
        first: Iterable[int] = (),
        delay: float = 0.0,
        verify: Credentials | None = None,
    ) -> None:
        self.app, self.first, self.delay, self.verify = app, list(first), delay, verify
        self.seen: list[Seen] = []

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").lower()] = environ[key]
        url = f"http://{headers['host']}{environ['PATH_INFO']}"
        seen = Seen(environ["REQUEST_METHOD"], url, headers, body)
        self.seen.append(seen)
        time.sleep(self.delay)
        if self.first:
            status = self.first.pop(0)
            return self.answer(start_response, status, self.MESSAGES.get(status, "error"))
        signature = headers.get("authorization")
        if self.verify is not None and signature and signature_of(seen, self.verify) != signature:
            return self.answer(start_response, 403, "The request signature does not match")
        return self.app(environ, start_response)

    @staticmethod
    def answer(start_response: Callable[..., Any], status: int, message: str) -> list[bytes]:
        payload = json.dumps({"message": message}).encode()
        reason = HTTPStatus(status).phrase
        start_response(f"{status} {reason}", [("Content-Type", "application/json")])
        return [payload]


@contextmanager
def local_api(mode: str, **recording: Any) -> Iterator[tuple[str, Recorder]]:
    """The local API in ``mode`` on a free loopback port: its URL and the recorder in front."""
    app = LocalApi(REPO, model_dir=PENGUINS_DIR, parameters={"AuthMode": mode}, api_key=API_KEY)
    recorder = Recorder(app, **recording)
    with Server(recorder, port=0) as server:  # type: ignore[arg-type]  # any WSGI app serves
        yield server.url + "/v1", recorder


def assert_predicted(answer: dict[str, Any]) -> None:
    assert answer["model"]["name"] == "penguins"
    assert [p["label"] for p in answer["predictions"]][:1] == ["Gentoo"]
    assert len(answer["predictions"]) == len(INSTANCES)


# --- the three auth modes ----------------------------------------------------------------------


def test_none_mode_predicts_and_describes_the_model() -> None:
    with local_api("NONE") as (url, recorder):
        assert_predicted(client.predict(url, INSTANCES, auth="none"))
        assert client.model(url, auth="none")["name"] == "penguins"
    assert [s.method for s in recorder.seen] == ["POST", "GET"]
    assert "authorization" not in recorder.seen[0].headers
    assert recorder.seen[0].headers["content-type"] == "application/json"


def test_api_key_mode_sends_the_key() -> None:
    with local_api("API_KEY") as (url, recorder):
        assert_predicted(client.predict(url, INSTANCES, auth="api-key", api_key=API_KEY))
    assert recorder.seen[0].headers["x-api-key"] == API_KEY


@pytest.mark.parametrize(("auth", "key"), [("api-key", "wrong"), ("none", None)])
def test_a_wrong_or_missing_api_key_is_refused_once(
    sleeps: list[float], auth: str, key: str | None
) -> None:
    with local_api("API_KEY") as (url, recorder), pytest.raises(client.ApiError) as raised:
        client.predict(url, INSTANCES, auth=auth, api_key=key, retries=3)
    assert (raised.value.status, raised.value.message) == (403, "Forbidden")
    assert len(recorder.seen) == 1 and sleeps == []


def test_api_key_mode_without_a_key_sends_nothing() -> None:
    with local_api("API_KEY") as (url, recorder), pytest.raises(ValueError, match="api_key"):
        client.predict(url, INSTANCES, auth="api-key")
    assert recorder.seen == []


def test_iam_mode_signs_with_sigv4_that_botocore_verifies() -> None:
    # Given the local API in IAM mode, checking each signature with the fake credentials
    with local_api("IAM", verify=FAKE) as (url, recorder):
        # When the client predicts with the credentials botocore finds (the fake environment)
        answer = client.predict(url, INSTANCES, auth="iam")
    # Then the predictions come back, signed for execute-api in the region, with the token
    assert_predicted(answer)
    [seen] = recorder.seen
    authorization = seen.headers["authorization"]
    day = seen.headers["x-amz-date"][:8]
    assert authorization.startswith(
        f"AWS4-HMAC-SHA256 Credential=testing/{day}/{REGION}/execute-api/aws4_request, "
    )
    assert seen.headers["x-amz-security-token"] == "testing"
    signed = authorization.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "content-type", "x-amz-date", "x-amz-security-token"} <= set(signed)
    # And botocore recomputes the same signature from the bytes that arrived
    assert signature_of(seen, FAKE) == authorization
    # And another body, or another secret, would have had another signature
    assert signature_of(seen, FAKE, body=seen.body.replace(b"Biscoe", b"Dream")) != authorization
    assert signature_of(seen, Credentials("testing", "other", "testing")) != authorization
    assert json.loads(seen.body) == {"instances": INSTANCES}


def test_iam_signs_a_get_without_a_body_too() -> None:
    with local_api("IAM", verify=FAKE) as (url, recorder):
        assert client.model(url, auth="iam", credentials=FAKE)["name"] == "penguins"
    assert recorder.seen[0].body == b""
    assert signature_of(recorder.seen[0], FAKE) == recorder.seen[0].headers["authorization"]


def test_a_bad_signature_is_refused_and_not_retried(sleeps: list[float]) -> None:
    wrong = Credentials("testing", "not-the-secret", "testing")
    with local_api("IAM", verify=FAKE) as (url, recorder), pytest.raises(client.ApiError) as raised:
        client.predict(url, INSTANCES, auth="iam", credentials=wrong)
    assert raised.value.status == 403
    assert len(recorder.seen) == 1 and sleeps == []


def test_an_unsigned_request_gets_api_gateways_answer() -> None:
    with local_api("IAM") as (url, _), pytest.raises(client.ApiError) as raised:
        client.predict(url, INSTANCES, auth="none")
    assert (raised.value.status, raised.value.message) == (403, "Missing Authentication Token")


def test_the_region_comes_from_an_execute_api_url() -> None:
    assert client.region_of("https://a1b2c3.execute-api.eu-west-1.amazonaws.com/v1") == "eu-west-1"
    assert client.region_of("https://api.example.com/v1") == REGION  # botocore's, from the env


# --- errors and retries ------------------------------------------------------------------------


def test_a_422_is_raised_with_its_field_errors_and_not_retried(sleeps: list[float]) -> None:
    bad = [{**INSTANCES[0], "bill_length_mm": "long"}, {**INSTANCES[1], "colour": "blue"}]
    with local_api("NONE") as (url, recorder), pytest.raises(client.ApiError) as raised:
        client.predict(url, bad, auth="none", retries=3)
    error = raised.value
    assert error.status == 422
    assert {e["path"] for e in error.errors} == {
        "instances[0].bill_length_mm",
        "instances[1].colour",
    }
    assert "instances[0].bill_length_mm: expected a number, got a string" in str(error)
    assert len(recorder.seen) == 1 and sleeps == []


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_throttling_and_unavailability_are_retried(sleeps: list[float], status: int) -> None:
    with local_api("NONE", first=[status]) as (url, recorder):
        assert_predicted(client.predict(url, INSTANCES, auth="none", backoff=0.5))
    assert len(recorder.seen) == 2
    assert sleeps == [0.5]


def test_iam_retries_are_signed_afresh(sleeps: list[float]) -> None:
    with local_api("IAM", first=[503], verify=FAKE) as (url, recorder):
        assert_predicted(client.predict(url, INSTANCES, auth="iam"))
    assert len(recorder.seen) == 2
    assert all(signature_of(s, FAKE) == s.headers["authorization"] for s in recorder.seen)


def test_retries_are_bounded_in_number_and_wait(sleeps: list[float]) -> None:
    unavailable = local_api("NONE", first=[503] * 10)
    with unavailable as (url, recorder), pytest.raises(client.ApiError) as raised:
        client.predict(url, INSTANCES, auth="none", retries=3, backoff=4.0)
    assert (raised.value.status, raised.value.message) == (503, "Service Unavailable")
    assert len(recorder.seen) == 4  # the first attempt and 3 retries
    assert sleeps == [4.0, 8.0, client.MAX_DELAY]  # doubled each time, capped


def test_the_jitter_is_random_below_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    waited: list[float] = []
    monkeypatch.setattr(client, "time", SimpleNamespace(sleep=waited.append))
    with local_api("NONE", first=[503, 503]) as (url, _):
        client.predict(url, INSTANCES, auth="none", backoff=0.01)
    assert len(waited) == 2
    assert 0 <= waited[0] <= 0.01 and 0 <= waited[1] <= 0.02


def test_a_timeout_is_an_api_error_without_an_answer() -> None:
    with local_api("NONE", delay=2.0) as (url, recorder):
        started = time.monotonic()
        with pytest.raises(client.ApiError) as raised:
            client.predict(url, INSTANCES, auth="none", timeout=0.2)
        elapsed = time.monotonic() - started
    assert raised.value.status is None and "timed out" in str(raised.value)
    assert elapsed < 1.5 and len(recorder.seen) == 1


# --- the command line -----------------------------------------------------------------------------


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CLIENT), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_the_command_line_prints_the_predictions() -> None:
    with local_api("IAM", verify=FAKE) as (url, _):
        done = run(url, "--instances", "samples/request.json", "--region", REGION)
        described = run(url, "--model", "--auth", "iam")
    assert done.returncode == 0, done.stderr
    assert_predicted(json.loads(done.stdout))
    assert described.returncode == 0, described.stderr
    assert json.loads(described.stdout)["name"] == "penguins"


def test_the_command_line_takes_the_api_key_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SKLAMBDA_API_KEY", API_KEY)
    with local_api("API_KEY") as (url, _):
        done = run(url, "--instances", "samples/request.json", "--auth", "api-key")
    assert done.returncode == 0, done.stderr
    assert_predicted(json.loads(done.stdout))


@pytest.mark.parametrize(
    ("mode", "args", "expected"),
    [
        ("API_KEY", ["--auth", "api-key", "--api-key", "wrong"], "error: 403 Forbidden"),
        ("NONE", ["--auth", "none", "--retries", "0"], "error: 422 "),
    ],
)
def test_the_command_line_reports_an_error_answer_without_a_traceback(
    tmp_path: Path, mode: str, args: list[str], expected: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"instances": [{**INSTANCES[0], "bill_length_mm": "long"}]}))
    with local_api(mode) as (url, recorder):
        done = run(url, "--instances", str(bad), *args)
    assert done.returncode == 1
    assert done.stderr.startswith(expected)
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert len(recorder.seen) == 1
    if mode == "NONE":
        assert "instances[0].bill_length_mm: expected a number, got a string" in done.stderr


def test_the_command_line_reports_an_unreachable_api(tmp_path: Path) -> None:
    done = run("http://127.0.0.1:9", "--model", "--auth", "none", "--timeout", "2")
    assert done.returncode == 1
    assert done.stderr.startswith("error: GET http://127.0.0.1:9/model: ")
    assert "Traceback" not in done.stderr
