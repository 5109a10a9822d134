"""The batch function's surroundings for a benchmark: moto's S3 and SQS server in its own
process on loopback, the bucket, the dead-letter queue the function's settings require, and
the environment a worker process runs the handler with."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drain import BENCH_DIR

from sklambda_tools.localbatch import moto_server_process

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"


def _client(service: str, endpoint: str) -> Any:
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


@contextlib.contextmanager
def batch_stack(bucket: str, **settings: str) -> Iterator[tuple[dict[str, str], Any]]:
    """``(environment for a worker, an S3 client)`` while the server runs; ``settings`` are
    added to the environment (``SKLAMBDA_CHUNK_ROWS="10000"``, say)."""
    with moto_server_process() as endpoint:
        s3 = _client("s3", endpoint)
        s3.create_bucket(Bucket=bucket)
        queue = _client("sqs", endpoint).create_queue(QueueName="bench-dlq")["QueueUrl"]
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": endpoint,
            "SKLAMBDA_MODEL_DIR": str(ROOT / "models" / "penguins"),
            "SKLAMBDA_DEAD_LETTER_QUEUE_URL": queue,
            "POWERTOOLS_SERVICE_NAME": "batch",
            "POWERTOOLS_METRICS_NAMESPACE": "sklambda-bench",
            "BENCH_HANDLER": str(ROOT / "functions" / "batch" / "app.py"),
            "BENCH_BUCKET": bucket,
            "BENCH_DIR": str(BENCH_DIR),
            **settings,
        }
        yield env, s3
