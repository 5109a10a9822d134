"""What Lambda gives a handler, for running one outside Lambda (tests, tools, benchmarks)."""

from __future__ import annotations

import importlib.util
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any


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


def load_template(path: str | Path) -> dict[str, Any]:
    """Read a SAM/CloudFormation template, short-form tags (``!Ref``, ``!Sub``...) included,
    as the long form (``{"Ref": ...}``, ``{"Fn::Sub": ...}``)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        name = suffix if suffix == "Ref" else f"Fn::{suffix}"
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if suffix == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {name: value}

    Loader.add_multi_constructor("!", construct)
    loaded: dict[str, Any] = yaml.load(Path(path).read_text(), Loader=Loader)
    return loaded


def resolve_sub(template: dict[str, Any], text: str, pseudo: dict[str, str]) -> str:
    """Resolve ``${Name}`` in a ``!Sub`` string with parameter defaults and pseudo parameters."""
    params = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
    values = {**params, **pseudo}
    return re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1)], text)
