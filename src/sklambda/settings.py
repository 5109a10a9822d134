"""Environment variables as one validated model, read once per execution environment.

| Variable | Default | Meaning |
|---|---|---|
| ``SKLAMBDA_MODEL_DIR`` | ``/opt/model`` | the model artifact (the model layer) |
| ``SKLAMBDA_RUNTIME`` | the manifest's | ``onnx`` or ``sklearn`` |
| ``SKLAMBDA_MAX_INSTANCES`` | 1000 | instances one request may carry |
| ``SKLAMBDA_MAX_BODY_BYTES`` | 1048576 | request body size limit |
| ``SKLAMBDA_CHUNK_ROWS`` | 10000 | rows a batch file is read, scored and written in at a time |
| ``SKLAMBDA_ID_COLUMN`` | none | a batch input column copied to the predictions |
| ``SKLAMBDA_UNKNOWN_COLUMNS`` | reject | ``reject`` or ``ignore`` batch columns the model lacks |
| ``SKLAMBDA_TIME_GUARD_SECONDS`` | 30 | stop a batch file cleanly when less Lambda time is left |
| ``SKLAMBDA_DEAD_LETTER_QUEUE_URL`` | none | where a batch failure that retrying cannot mend goes |
| ``SKLAMBDA_CAPTURE_STREAM`` | none | the Firehose stream online requests are captured to |
| ``SKLAMBDA_CAPTURE_RATE`` | 0.1 | the share of requests captured (0 turns capture off) |
| ``SKLAMBDA_DATA_BUCKET`` | none | the drift job's bucket (captures, manifests, reports) |
| ``SKLAMBDA_DRIFT_WINDOW_HOURS`` | 24 | hours one drift report covers |
| ``SKLAMBDA_DRIFT_THRESHOLD`` | 0.2 | PSI above which a feature has drifted |
| ``SKLAMBDA_DRIFT_MIN_ROWS`` | 200 | fewer rows than this give "not enough data" |

Powertools reads its own variables (``POWERTOOLS_SERVICE_NAME``, ``POWERTOOLS_METRICS_NAMESPACE``,
``POWERTOOLS_LOG_LEVEL``).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PREFIX = "SKLAMBDA_"


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    model_dir: str = "/opt/model"
    runtime: Literal["onnx", "sklearn"] | None = None
    max_instances: int = Field(default=1000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=6_291_456)
    chunk_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    id_column: str | None = None
    unknown_columns: Literal["reject", "ignore"] = "reject"
    time_guard_seconds: float = Field(default=30.0, ge=0)
    dead_letter_queue_url: str | None = None
    capture_stream: str | None = None
    capture_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    data_bucket: str | None = None
    drift_window_hours: int = Field(default=24, ge=1, le=744)
    drift_threshold: float = Field(default=0.2, gt=0.0)
    drift_min_rows: int = Field(default=200, ge=1)


@cache
def get_settings() -> Settings:
    """The settings of this execution environment (``get_settings.cache_clear()`` resets)."""
    values = {
        name: os.environ[PREFIX + name.upper()]
        for name in Settings.model_fields
        if os.environ.get(PREFIX + name.upper())
    }
    return Settings.model_validate(values)
