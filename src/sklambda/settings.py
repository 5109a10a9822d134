"""Each function's settings, read from its environment once and validated at init.

This is the one module of the runtime that reads the environment. A function that lacks a
required setting, or has one out of range, fails its init with a message naming the variable.

| Variable | Functions | Default | Meaning |
|---|---|---|---|
| ``SKLAMBDA_MODEL_DIR`` | all | ``/opt/model`` | the model artifact (the model layer) |
| ``SKLAMBDA_RUNTIME`` | all | the manifest's | ``onnx`` or ``sklearn`` |
| ``POWERTOOLS_SERVICE_NAME`` | all | ``sklambda`` | the ``service`` of logs and metrics |
| ``POWERTOOLS_METRICS_NAMESPACE`` | all | ``sklambda`` | the CloudWatch namespace |
| ``AWS_LAMBDA_FUNCTION_VERSION`` | all | ``$LATEST`` | set by Lambda: the version running |
| ``SKLAMBDA_RELEASE`` | all | ``unstamped`` | the model, code and runtime the build stamped |
| ``SKLAMBDA_MAX_INSTANCES`` | predict, pretraffic | 1000 | instances one request may carry |
| ``SKLAMBDA_MAX_BODY_BYTES`` | predict | 1048576 | request body size limit |
| ``SKLAMBDA_CAPTURE_RATE`` | predict | 0 | the share of requests captured (0: off) |
| ``SKLAMBDA_CAPTURE_STREAM`` | predict | required when the rate is above 0 | the Firehose stream |
| ``SKLAMBDA_DEAD_LETTER_QUEUE_URL`` | batch | required | where failed files are reported |
| ``SKLAMBDA_CHUNK_ROWS`` | batch | 10000 | rows read, scored and written at a time |
| ``SKLAMBDA_PASSTHROUGH_COLUMNS`` | batch | none | input columns copied next to the predictions |
| ``SKLAMBDA_UNKNOWN_COLUMNS`` | batch | ignore | ``ignore`` or ``reject`` columns the model lacks |
| ``SKLAMBDA_MAX_LINE_BYTES`` | batch | 1048576 | the longest CSV record or JSON line |
| ``SKLAMBDA_MAX_COLUMNS`` | batch | 1000 | the most columns a CSV header may have |
| ``SKLAMBDA_MAX_EXPANSION`` | batch | 100 | the most a gzipped file may expand (past 16 MiB) |
| ``SKLAMBDA_TIME_GUARD_SECONDS`` | batch | 30 | stop a file cleanly when less time is left |
| ``SKLAMBDA_SPLIT_BYTES`` | batch, split | 268435456 | larger files are split; a share's size |
| ``SKLAMBDA_SPLIT_STATE_MACHINE_ARN`` | batch | none (never split) | the split path |
| ``SKLAMBDA_SPLIT_CONCURRENCY`` | split | 10 | shares scored at once |
| ``SKLAMBDA_DATA_BUCKET`` | drift | required | captures, job records and reports |
| ``SKLAMBDA_DRIFT_WINDOW_HOURS`` | drift | 24 | hours one drift report covers |
| ``SKLAMBDA_DRIFT_THRESHOLD`` | drift | 0.2 | PSI above which a feature has drifted |
| ``SKLAMBDA_DRIFT_MIN_ROWS`` | drift | 200 | fewer rows than this give "not enough data" |
| ``SKLAMBDA_TARGET_FUNCTION`` | pretraffic | required | the version to check: a qualified ARN |

Powertools' Logger also reads ``POWERTOOLS_LOG_LEVEL``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Literal, TypeVar

from sklambda.errors import ConfigurationError
from sklambda.typed import ContractError, build

PREFIX = "SKLAMBDA_"
# Settings that keep the names Powertools and SAM's templates already use.
_NAMED = {
    "service": "POWERTOOLS_SERVICE_NAME",
    "metrics_namespace": "POWERTOOLS_METRICS_NAMESPACE",
    "function_version": "AWS_LAMBDA_FUNCTION_VERSION",
}


def variable(name: str) -> str:
    """The environment variable behind a settings field."""
    return _NAMED.get(name, PREFIX + name.upper())


@dataclass(frozen=True, kw_only=True)
class Settings:
    """What every function reads: the model, and how it names its logs and metrics."""

    model_dir: str = "/opt/model"
    runtime: Literal["onnx", "sklearn"] | None = None
    service: str = "sklambda"
    metrics_namespace: str = "sklambda"
    function_version: str = "$LATEST"
    """The version of the function that runs (Lambda sets it): the rollout alarms' dimension."""
    release: str = "unstamped"
    """The release `make build` stamped on the template (``sklambda_tools.release``)."""

    def check(self) -> None:
        """Rules across fields (each kind adds its own)."""


MAX_INSTANCES_BOUNDS = {"ge": 1, "le": 100_000}
SPLIT_BYTES = 268_435_456  # 256 MiB: docs/scale.md says why


@dataclass(frozen=True, kw_only=True)
class PredictSettings(Settings):
    max_instances: int = field(default=1000, metadata=MAX_INSTANCES_BOUNDS)
    max_body_bytes: int = field(default=1_048_576, metadata={"ge": 1024, "le": 6_291_456})
    capture_rate: float = field(default=0.0, metadata={"ge": 0.0, "le": 1.0})
    capture_stream: str | None = None

    def check(self) -> None:
        if self.capture_rate > 0 and not self.capture_stream:
            raise ConfigurationError(
                f"{variable('capture_stream')} is required when "
                f"{variable('capture_rate')} is above 0"
            )


@dataclass(frozen=True, kw_only=True)
class BatchSettings(Settings):
    dead_letter_queue_url: str
    chunk_rows: int = field(default=10_000, metadata={"ge": 1, "le": 1_000_000})
    passthrough_columns: str = ""  # comma-separated input columns copied to the predictions
    unknown_columns: Literal["reject", "ignore"] = "ignore"
    time_guard_seconds: float = field(default=30.0, metadata={"ge": 0})
    max_line_bytes: int = field(default=1_048_576, metadata={"ge": 1024, "le": 67_108_864})
    max_columns: int = field(default=1000, metadata={"ge": 1, "le": 100_000})
    max_expansion: int = field(default=100, metadata={"ge": 1, "le": 100_000})
    split_bytes: int = field(default=SPLIT_BYTES, metadata={"ge": 1})
    """A file larger than this takes the split path, in shares of about this much content."""
    split_state_machine_arn: str | None = None
    """The split path's state machine (unset: every file is scored in one invocation)."""
    split_concurrency: int = field(default=10, metadata={"ge": 1, "le": 10_000})
    """How many shares of a split file are scored at once (the map's ``MaxConcurrency``)."""

    @property
    def passthrough(self) -> list[str]:
        """The passthrough columns, in order, each once."""
        names = (name.strip() for name in self.passthrough_columns.split(","))
        return list(dict.fromkeys(name for name in names if name))

    def check(self) -> None:
        if "row" in self.passthrough:
            raise ConfigurationError(
                f"{variable('passthrough_columns')} names 'row', the predictions' own column"
            )


@dataclass(frozen=True, kw_only=True)
class DriftSettings(Settings):
    data_bucket: str
    drift_window_hours: int = field(default=24, metadata={"ge": 1, "le": 744})
    drift_threshold: float = field(default=0.2, metadata={"gt": 0.0})
    drift_min_rows: int = field(default=200, metadata={"ge": 1})


# arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME:VERSION, the ARN of one published version
VERSION_ARN = re.compile(r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]+:\d+")


@dataclass(frozen=True, kw_only=True)
class PreTrafficSettings(Settings):
    """The pre-traffic hook: the new version it checks, and the predict function's limit of
    instances per request (the probe rows go in requests of at most that many)."""

    target_function: str
    max_instances: int = field(default=1000, metadata=MAX_INSTANCES_BOUNDS)

    def check(self) -> None:
        if not VERSION_ARN.fullmatch(self.target_function):
            raise ConfigurationError(
                f"{variable('target_function')} must be the ARN of a published version "
                "(arn:aws:lambda:REGION:ACCOUNT:function:NAME:VERSION), not an alias, $LATEST "
                "or an unqualified name"
            )


S = TypeVar("S", bound=Settings)
_loaded: dict[type[Settings], Settings] = {}


def field_names(kind: type[Settings]) -> list[str]:
    return [f.name for f in fields(kind)]


def required(kind: type[Settings]) -> list[str]:
    """The settings ``kind`` cannot do without (no default)."""
    return [f.name for f in fields(kind) if f.default is MISSING and f.default_factory is MISSING]


def read_settings(kind: type[S], environ: Mapping[str, str] | None = None) -> S:
    """Read and validate ``kind`` from ``environ`` (default: the process environment).

    Raises
    ------
    ConfigurationError
        Naming the variable that is missing or invalid.
    """
    env = os.environ if environ is None else environ
    values = {name: env[variable(name)] for name in field_names(kind) if env.get(variable(name))}
    try:
        settings = build(kind, values, text=True)
    except ContractError as exc:
        what = "is required" if exc.reason == "required" else f"is invalid: {exc.reason}"
        raise ConfigurationError(f"{variable(exc.path)} {what}") from None
    settings.check()
    return settings


def get_settings(kind: type[S]) -> S:
    """The settings of this execution environment, read once (``reset_settings()`` forgets)."""
    if kind not in _loaded:
        _loaded[kind] = read_settings(kind)
    loaded = _loaded[kind]
    assert isinstance(loaded, kind)
    return loaded


def reset_settings() -> None:
    _loaded.clear()
