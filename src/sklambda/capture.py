"""Data capture for the online path: a sampled share of requests, their instances and
predictions, sent to Amazon Data Firehose, which buffers, compresses and writes them to the data
bucket under ``capture/YYYY/MM/DD/HH/`` for the drift job.

A capture never fails a prediction and never holds one up for long: one ``PutRecord`` with
short timeouts and no retries, every error caught and counted.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sklambda import aws
from sklambda.scoring import Scored

TIMEOUT_SECONDS = 0.25  # connect and read: the most a capture can add to a request


def firehose() -> Any:
    """The capture client: one attempt, short timeouts."""
    return aws.client("firehose", timeout=TIMEOUT_SECONDS, attempts=1)


class Capture:
    """Decides, per request, whether to capture it, and sends the record."""

    def __init__(
        self,
        stream: str | None,
        rate: float,
        client: Callable[[], Any] = firehose,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.stream = stream
        self.rate = rate if stream else 0.0
        self._client = client
        self._draw = draw

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def sampled(self) -> bool:
        return self.enabled and self._draw() < self.rate

    def record(
        self,
        request_id: str | None,
        instances: Sequence[Any],
        scored: Scored,
        predictions: list[dict[str, Any]] | None = None,
    ) -> bytes:
        """The captured line: the request's instances and what the core answered
        (``predictions``, when the caller has already formatted them)."""
        model = scored.model
        payload = {
            "request_id": request_id,
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "model": {"name": model.name, "version": model.version},
            "instances": list(instances),
            "predictions": scored.predictions() if predictions is None else predictions,
        }
        return (json.dumps(payload, separators=(",", ":"), allow_nan=False) + "\n").encode()

    def send(
        self,
        request_id: str | None,
        instances: Sequence[Any],
        scored: Scored,
        predictions: list[dict[str, Any]] | None = None,
    ) -> bool:
        """Send one record; ``False`` when it could not be sent (never raises)."""
        try:
            data = self.record(request_id, instances, scored, predictions)
            self._client().put_record(DeliveryStreamName=self.stream, Record={"Data": data})
        except Exception:  # a capture must never fail a prediction: the caller counts it
            return False
        return True
