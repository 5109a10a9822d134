"""Each function's settings, read from its environment once and validated at init.

This is the one module of the runtime that reads the environment. A function that lacks a
required setting, or has one out of range, fails its init with a message naming the variable.

| Variable | Functions | Default | Meaning |
|---|---|---|---|
| ``SKLAMBDA_MODEL_DIR`` | all | ``/opt/model`` | the model artifact (the model layer) |
| ``SKLAMBDA_RUNTIME`` | all | the manifest's | ``onnx`` or ``sklearn`` |
| ``POWERTOOLS_SERVICE_NAME`` | all | ``sklambda`` | the ``service`` of logs and metrics |
| ``POWERTOOLS_METRICS_NAMESPACE`` | all | ``sklambda`` | the CloudWatch namespace |
| ``SKLAMBDA_MAX_INSTANCES`` | predict | 1000 | instances one request may carry |
| ``SKLAMBDA_MAX_BODY_BYTES`` | predict | 1048576 | request body size limit |
| ``SKLAMBDA_CAPTURE_RATE`` | predict | 0 | the share of requests captured (0: off) |
| ``SKLAMBDA_CAPTURE_STREAM`` | predict | required when the rate is above 0 | the Firehose stream |
| ``SKLAMBDA_DEAD_LETTER_QUEUE_URL`` | batch | required | where failed files are reported |
| ``SKLAMBDA_CHUNK_ROWS`` | batch | 10000 | rows read, scored and written at a time |
| ``SKLAMBDA_ID_COLUMN`` | batch | none | an input column copied to the predictions |
| ``SKLAMBDA_UNKNOWN_COLUMNS`` | batch | reject | ``reject`` or ``ignore`` columns the model lacks |
| ``SKLAMBDA_TIME_GUARD_SECONDS`` | batch | 30 | stop a file cleanly when less time is left |
| ``SKLAMBDA_DATA_BUCKET`` | drift | required | captures, job records and reports |
| ``SKLAMBDA_DRIFT_WINDOW_HOURS`` | drift | 24 | hours one drift report covers |
| ``SKLAMBDA_DRIFT_THRESHOLD`` | drift | 0.2 | PSI above which a feature has drifted |
| ``SKLAMBDA_DRIFT_MIN_ROWS`` | drift | 200 | fewer rows than this give "not enough data" |

Powertools' Logger also reads ``POWERTOOLS_LOG_LEVEL``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Literal, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sklambda.errors import ConfigurationError

PREFIX = "SKLAMBDA_"
# Settings that keep the names Powertools and SAM's templates already use.
_NAMED = {"service": "POWERTOOLS_SERVICE_NAME", "metrics_namespace": "POWERTOOLS_METRICS_NAMESPACE"}


def variable(field: str) -> str:
    """The environment variable behind a settings field."""
    return _NAMED.get(field, PREFIX + field.upper())


class Settings(BaseModel):
    """What every function reads: the model, and how it names its logs and metrics."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    model_dir: str = "/opt/model"
    runtime: Literal["onnx", "sklearn"] | None = None
    service: str = "sklambda"
    metrics_namespace: str = "sklambda"


class PredictSettings(Settings):
    max_instances: int = Field(default=1000, ge=1, le=100_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=6_291_456)
    capture_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    capture_stream: str | None = None

    @model_validator(mode="after")
    def _stream_when_sampling(self) -> Self:
        if self.capture_rate > 0 and not self.capture_stream:
            raise ValueError(
                f"{variable('capture_stream')} is required when "
                f"{variable('capture_rate')} is above 0"
            )
        return self


class BatchSettings(Settings):
    dead_letter_queue_url: str
    chunk_rows: int = Field(default=10_000, ge=1, le=1_000_000)
    id_column: str | None = None
    unknown_columns: Literal["reject", "ignore"] = "reject"
    time_guard_seconds: float = Field(default=30.0, ge=0)


class DriftSettings(Settings):
    data_bucket: str
    drift_window_hours: int = Field(default=24, ge=1, le=744)
    drift_threshold: float = Field(default=0.2, gt=0.0)
    drift_min_rows: int = Field(default=200, ge=1)


S = TypeVar("S", bound=Settings)
_loaded: dict[type[Settings], Settings] = {}


def read_settings(kind: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Read and validate ``kind`` from ``environ`` (default: the process environment).

    Raises
    ------
    ConfigurationError
        Naming the variable that is missing or invalid.
    """
    env = os.environ if environ is None else environ
    values = {name: env[variable(name)] for name in kind.model_fields if env.get(variable(name))}
    try:
        return kind.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["loc"]:
            field = str(first["loc"][0])
            what = "is required" if first["type"] == "missing" else f"is invalid: {first['msg']}"
            raise ConfigurationError(f"{variable(field)} {what}") from None
        raise ConfigurationError(str(first["msg"]).removeprefix("Value error, ")) from None


def get_settings(kind: type[S]) -> S:
    """The settings of this execution environment, read once (``reset_settings()`` forgets)."""
    if kind not in _loaded:
        _loaded[kind] = read_settings(kind)
    loaded = _loaded[kind]
    assert isinstance(loaded, kind)
    return loaded


def reset_settings() -> None:
    _loaded.clear()
