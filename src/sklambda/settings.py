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


@cache
def get_settings() -> Settings:
    """The settings of this execution environment (``get_settings.cache_clear()`` resets)."""
    values = {
        name: os.environ[PREFIX + name.upper()]
        for name in Settings.model_fields
        if os.environ.get(PREFIX + name.upper())
    }
    return Settings.model_validate(values)
