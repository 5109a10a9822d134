"""Data capture for the online path: a sampled share of requests, their instances and
predictions, sent to Amazon Data Firehose, which buffers, compresses and writes them to the data
bucket under ``capture/YYYY/MM/DD/HH/`` for the drift job.

A capture never fails a prediction and never holds one up for long: one ``PutRecord`` with
short timeouts and no retries, every error caught and counted.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

TIMEOUT_SECONDS = 0.25  # connect and read: the most a capture can add to a request


class Capture:
    """Decides, per request, whether to capture it, and sends the record."""

    def __init__(
        self,
        stream: str | None,
        rate: float,
        client_factory: Callable[[], Any] | None = None,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.stream = stream
        self.rate = rate if stream else 0.0
        self._client_factory = client_factory or _firehose_client
        self._client: Any = None
        self._draw = draw

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def sampled(self) -> bool:
        return self.enabled and self._draw() < self.rate

    def send(
        self,
        request_id: str | None,
        model: dict[str, str],
        instances: list[Any],
        predictions: list[dict[str, Any]],
    ) -> bool:
        """Send one record; ``False`` when it could not be sent (never raises)."""
        record = {
            "request_id": request_id,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "model": model,
            "instances": instances,
            "predictions": predictions,
        }
        try:
            if self._client is None:
                self._client = self._client_factory()
            data = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode()
            self._client.put_record(DeliveryStreamName=self.stream, Record={"Data": data})
        except Exception:  # a capture must never fail a prediction: the caller counts it
            return False
        return True


def _firehose_client() -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=TIMEOUT_SECONDS,
        read_timeout=TIMEOUT_SECONDS,
        retries={"total_max_attempts": 1, "mode": "standard"},  # one try, no retry
    )
    return boto3.client("firehose", config=config)
