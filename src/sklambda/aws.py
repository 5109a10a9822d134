"""The one way the runtime gets an AWS client: one per service and configuration, made once
per execution environment (``reset_clients()`` forgets them, for tests and a new environment).

boto3 is imported here on first use, not by every module that might need a client: the onnx
runtime's cold start does not pay for it unless a function talks to AWS.
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def client(service: str, *, timeout: float | None = None, attempts: int | None = None) -> Any:
    """A boto3 client for ``service``.

    ``timeout`` (connect and read, seconds) and ``attempts`` (total, 1 for no retry) are for
    calls that must never hold a request up, such as data capture.
    """
    import boto3
    from botocore.config import Config

    options: dict[str, Any] = {}
    if timeout is not None:
        options.update(connect_timeout=timeout, read_timeout=timeout)
    if attempts is not None:
        options["retries"] = {"total_max_attempts": attempts, "mode": "standard"}
    return boto3.client(service, config=Config(**options)) if options else boto3.client(service)


def reset_clients() -> None:
    client.cache_clear()
