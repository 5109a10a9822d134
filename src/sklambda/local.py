"""What Lambda gives a handler, for running one outside Lambda (tests, tools, benchmarks)."""

from __future__ import annotations

import importlib.util
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType


@dataclass
class LambdaContext:
    """A Lambda context whose remaining time runs down with a real clock."""

    function_name: str = "local"
    memory_limit_in_mb: int = 1024
    timeout_seconds: float = 30.0
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_seconds

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(path: str | Path, name: str | None = None) -> ModuleType:
    """Import a function's handler module from its file, as Lambda does from the task root.

    Each call executes the module afresh (a new execution environment), so module-level state
    such as the loaded model starts clean.
    """
    file = Path(path)
    spec = importlib.util.spec_from_file_location(name or f"{file.parent.name}_app", file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import a handler from {file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
