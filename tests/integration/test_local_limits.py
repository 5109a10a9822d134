"""The local API fails where the deployed one would, the way it would: a function that raises,
answers without a status, or answers over Lambda's 6 MB response limit is API Gateway's 502."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from sklambda_tools.local import new_execution_environment
from sklambda_tools.localapi import LAMBDA_RESPONSE_LIMIT, LocalApi, Server

from support import PENGUINS_DIR, REPO


@pytest.fixture
def local_api() -> Iterator[LocalApi]:
    saved = dict(os.environ)
    yield LocalApi(REPO, model_dir=PENGUINS_DIR, parameters={"AuthMode": "NONE"})
    os.environ.clear()
    os.environ.update(saved)
    new_execution_environment()


def serve(api: LocalApi, handler: Callable[[dict[str, Any], Any], Any]) -> requests.Response:
    function = api.functions["PredictFunction"]
    function.handler = lambda: handler  # type: ignore[method-assign]
    with Server(api, port=0) as server:
        return requests.get(server.url + "/health", timeout=30)


def explode(event: dict[str, Any], context: Any) -> Any:
    raise RuntimeError("boom")


def too_large(event: dict[str, Any], context: Any) -> Any:
    return {"statusCode": 200, "body": "x" * (LAMBDA_RESPONSE_LIMIT + 1)}


def no_status(event: dict[str, Any], context: Any) -> Any:
    return {"body": "{}"}


@pytest.mark.parametrize("handler", [explode, too_large, no_status])
def test_a_failed_invocation_is_api_gateways_502(local_api: LocalApi, handler: Any) -> None:
    response = serve(local_api, handler)
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}


def test_a_response_under_the_limit_goes_through(local_api: LocalApi) -> None:
    def large(event: dict[str, Any], context: Any) -> Any:
        return {"statusCode": 200, "body": '"' + "x" * (LAMBDA_RESPONSE_LIMIT - 100) + '"'}

    response = serve(local_api, large)
    assert response.status_code == 200 and len(response.content) > LAMBDA_RESPONSE_LIMIT - 100
