"""Facts several test modules share: the sample bird, the status each API event must get, and a
mocked S3 bucket."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]  # the one repository-root constant of the tests
EVENTS = REPO / "events"
PENGUINS_DIR = REPO / "models" / "penguins"

# The first instance of samples/request.json (the body of events/predict-multi.json).
BIRD: dict[str, Any] = json.loads((REPO / "samples" / "request.json").read_text())["instances"][0]

# Every API Gateway event in events/ and the status it must get; a new event without an entry
# fails test_every_event_is_exercised.
EXPECTED_STATUS = {
    "predict-single.json": 200,
    "predict-multi.json": 200,
    "predict-invalid-instances.json": 422,
    "predict-empty.json": 422,
    "predict-not-json.json": 400,
    "predict-wrong-content-type.json": 415,
    "get-model.json": 200,
    "get-health.json": 200,
}


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


@contextlib.contextmanager
def mocked_bucket(bucket: str, region: str = "us-east-1", versioned: bool = False) -> Iterator[Any]:
    """A moto S3 client with ``bucket`` created, under fake credentials, for the ``with`` block."""
    import boto3
    import pytest
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            mp.setenv(name, "testing")
        mp.setenv("AWS_DEFAULT_REGION", region)
        with mock_aws():
            client = boto3.client("s3", region_name=region)
            client.create_bucket(Bucket=bucket)
            if versioned:
                client.put_bucket_versioning(
                    Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
                )
            yield client
