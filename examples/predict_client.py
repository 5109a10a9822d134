"""Call the sklambda prediction API from Python: the standard library and botocore, nothing else.

From the command line (``URL`` is the stack's ``ApiUrl`` output, stage included)::

    python examples/predict_client.py "$URL" --instances samples/request.json   # AuthMode=IAM
    export SKLAMBDA_API_KEY=...                                                   # AuthMode=API_KEY
    python examples/predict_client.py "$URL" --instances samples/request.json --auth api-key
    python examples/predict_client.py http://127.0.0.1:3000 --model --auth none  # make serve

As a module::

    from predict_client import ApiError, predict

    try:
        answer = predict(url, [{"island": "Biscoe", "bill_length_mm": 48.6, ...}], auth="iam")
    except ApiError as error:  # error.status, error.message, error.errors
        ...

``auth`` follows the stack's ``AuthMode``: ``"iam"`` signs each request with SigV4 (service
``execute-api``) using the credentials botocore finds (environment, profile, SSO, instance role),
``"api-key"`` sends an ``x-api-key`` header, ``"none"`` sends neither. Answers 429, 502, 503 and
504 are retried with capped exponential backoff and full jitter; any other error, a 4xx above
all, is raised at once as an :class:`ApiError`: the API's 4xx bodies are JSON with a fixed
``message`` and, for a request it refuses, ``errors`` (one ``{"path", "reason"}`` per field).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.session import Session

RETRYABLE = frozenset({429, 502, 503, 504})  # throttled or the service briefly unavailable
MAX_DELAY = 10.0  # seconds: the longest wait between two attempts


class ApiError(Exception):
    """An error answer from the API (``status``), or no answer at all (``status`` is None)."""

    def __init__(
        self, status: int | None, message: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        self.status, self.message, self.errors = status, message, errors or []
        lines = [f"{status} {message}" if status else message]
        lines += [f"  {e.get('path', '')}: {e.get('reason', '')}" for e in self.errors]
        super().__init__("\n".join(lines))


def api_error(error: urllib.error.HTTPError) -> ApiError:
    """The ApiError for an HTTP error answer (its body read and closed)."""
    with error:
        raw = error.read()
    try:
        answer = json.loads(raw)
    except ValueError:  # not JSON: a proxy's or load balancer's page, say
        answer = None
    if not isinstance(answer, dict):
        answer = {}
    return ApiError(error.code, str(answer.get("message") or error.reason), answer.get("errors"))


def region_of(url: str) -> str | None:
    """The region in an ``execute-api`` URL, else the one botocore is configured with."""
    found = re.search(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com", url)
    return found.group(1) if found else Session().get_config_variable("region")


def build_request(
    method: str,
    url: str,
    body: bytes | None = None,
    *,
    auth: str = "iam",
    api_key: str | None = None,
    credentials: Any = None,
    region: str | None = None,
) -> urllib.request.Request:
    """The HTTP request to send, with the headers ``auth`` asks for (signed last, if IAM)."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    if auth == "api-key":
        if not api_key:
            raise ValueError("auth='api-key' needs an api_key")
        headers["x-api-key"] = api_key
    elif auth == "iam":
        credentials = credentials or Session().get_credentials()
        region = region or region_of(url)
        if credentials is None or region is None:
            raise ApiError(None, "IAM auth needs AWS credentials and a region (--region)")
        signed = AWSRequest(method=method, url=url, data=body, headers=headers)
        # Frozen: one consistent key, secret and token even while a role's credentials refresh.
        frozen = credentials.get_frozen_credentials()
        SigV4Auth(frozen, "execute-api", region).add_auth(signed)
        headers = dict(signed.headers.items())  # + Authorization, X-Amz-Date, X-Amz-Security-Token
    elif auth != "none":
        raise ValueError(f"auth must be 'iam', 'api-key' or 'none', not {auth!r}")
    return urllib.request.Request(url, data=body, headers=headers, method=method)


def call(
    method: str,
    url: str,
    payload: Any = None,
    *,
    auth: str = "iam",
    api_key: str | None = None,
    credentials: Any = None,
    region: str | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 0.5,
) -> dict[str, Any]:
    """Send one API request, retrying 429 and 502-504; the decoded JSON answer, or ApiError."""
    body = None if payload is None else json.dumps(payload).encode()
    attempt = 0
    while True:
        # Built and signed again for every attempt: a signature is valid for 5 minutes only.
        request = build_request(
            method, url, body, auth=auth, api_key=api_key, credentials=credentials, region=region
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer: dict[str, Any] = json.load(response)
                return answer
        except urllib.error.HTTPError as error:
            failure = api_error(error)
            if error.code not in RETRYABLE or attempt >= retries:
                raise failure from None
        except (OSError, ValueError) as error:  # refused, DNS, timeout, a body that is not JSON
            raise ApiError(None, f"{method} {url}: {error}") from None
        # Full jitter: a random wait up to 2**attempt * backoff, so that clients spread out.
        time.sleep(random.uniform(0, min(MAX_DELAY, backoff * 2**attempt)))
        attempt += 1


def predict(
    url: str,
    instances: list[dict[str, Any]],
    *,
    auth: str = "iam",
    api_key: str | None = None,
    credentials: Any = None,
    region: str | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 0.5,
) -> dict[str, Any]:
    """POST ``{"instances": [...]}`` to ``<url>/predict``: ``{"model", "predictions", "notes"}``.

    ``auth``: "iam", "api-key" (with ``api_key``) or "none". ``credentials``: botocore
    credentials (default: botocore's chain). ``region``: default from the URL, else botocore's.
    ``timeout``: seconds per attempt. ``retries``: how many times 429 and 502-504 are retried,
    after a random wait of at most ``backoff`` seconds, doubled at each retry.
    """
    return call(
        "POST",
        url.rstrip("/") + "/predict",
        {"instances": instances},
        auth=auth,
        api_key=api_key,
        credentials=credentials,
        region=region,
        timeout=timeout,
        retries=retries,
        backoff=backoff,
    )


def model(url: str, **options: Any) -> dict[str, Any]:
    """GET ``<url>/model`` (name, version, features, output, metrics); options as predict's."""
    return call("GET", url.rstrip("/") + "/model", **options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Call the sklambda prediction API.")
    parser.add_argument("url", help="the API's base URL, stage included (the ApiUrl output)")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--instances", help='a JSON file: {"instances": [...]} or a list')
    action.add_argument("--model", action="store_true", help="GET /model instead")
    parser.add_argument("--auth", choices=["iam", "api-key", "none"], default="iam")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SKLAMBDA_API_KEY"),
        help="for --auth api-key (default: $SKLAMBDA_API_KEY, which keeps it out of `ps`)",
    )
    parser.add_argument("--region", help="for --auth iam (default: from the URL, else botocore's)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per attempt")
    parser.add_argument("--retries", type=int, default=3, help="retries of 429 and 502-504")
    args = parser.parse_args(argv)
    options = {"auth": args.auth, "api_key": args.api_key, "region": args.region}
    options |= {"timeout": args.timeout, "retries": args.retries}
    try:
        if args.model:
            answer = model(args.url, **options)
        else:
            with open(args.instances, encoding="utf-8") as file:
                instances = json.load(file)
            if isinstance(instances, dict):  # a request body, like samples/request.json
                instances = instances.get("instances")
            answer = predict(args.url, instances, **options)
    except (ApiError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
