"""What Lambda gives a handler, for running one outside Lambda (tests, tools, benchmarks)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import subprocess
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

    Each call executes the module afresh as a new execution environment: the cached settings
    and model are forgotten first, so they are read and loaded again.
    """
    # A new execution environment: settings read again, the model loaded again, new clients,
    # loggers anew.
    new_execution_environment()
    file = Path(path)
    spec = importlib.util.spec_from_file_location(name or f"{file.parent.name}_app", file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import a handler from {file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def new_execution_environment() -> None:
    """Forget what an execution environment keeps: settings, the model, AWS clients, loggers."""
    from sklambda.aws import reset_clients
    from sklambda.model import reset_model
    from sklambda.settings import reset_settings

    reset_model()
    reset_settings()
    reset_clients()
    forget_powertools_loggers()


def forget_powertools_loggers() -> None:
    """Powertools keeps one ``logging.Logger`` per service, marked as configured and holding the
    handler of the first execution environment; a new one in the same process starts clean."""
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and hasattr(logger, "powertools_handler"):
            logger.handlers.clear()
            for attr in (
                "init",
                "powertools_handler",
                "powertools_buffer_config",
                "powertools_buffer_cache",
            ):
                if hasattr(logger, attr):
                    delattr(logger, attr)


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


PSEUDO = {
    "AWS::AccountId": "000000000000",
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::StackName": "sklambda",
    "AWS::URLSuffix": "amazonaws.com",
}


class TemplateResolver:
    """Resolve the intrinsics a local run needs: parameters (defaults, or overrides),
    conditions, ``Fn::If``, ``Fn::Sub``; a reference to a resource becomes its logical id
    unless ``resources`` maps it to a local stand-in (a moto queue URL, say)."""

    def __init__(
        self,
        template: dict[str, Any],
        parameters: dict[str, str] | None = None,
        resources: dict[str, str] | None = None,
    ) -> None:
        self.template = template
        self.values = {
            k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()
        }
        self.values.update(parameters or {})
        self.resources = resources or {}

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(n) for n in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                if arg in self.values:
                    return self.values[arg]
                return PSEUDO.get(arg) or self.resources.get(arg, arg)
            if key == "Fn::Sub":
                return re.sub(
                    r"\$\{([^}]+)\}",
                    lambda m: str(self.resolve({"Ref": m.group(1).split(".")[0]})),
                    arg if isinstance(arg, str) else arg[0],
                )
            if key == "Fn::If":
                name, then, otherwise = arg
                return self.resolve(then if self.condition(name) else otherwise)
            if key == "Fn::Equals":
                left, right = (self.resolve(a) for a in arg)
                return str(left) == str(right)
            if key == "Fn::GetAtt":
                return self.resources.get(".".join(arg), ".".join(arg))
            if key == "Condition":
                return self.condition(arg)
        return {k: self.resolve(v) for k, v in node.items()}

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The environment variables Lambda would give the function (Globals merged)."""
        globals_ = self.template.get("Globals", {}).get("Function", {})
        props = self.template["Resources"][logical_id]["Properties"]
        merged = {
            **globals_.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        return {k: str(self.resolve(v)) for k, v in merged.items()}

    def function_property(self, logical_id: str, name: str, default: Any = None) -> Any:
        """A function's property as SAM gives it: its own, else the one in ``Globals``; lists
        are the Globals' items then the function's, maps are merged (the function's win)."""
        globals_ = self.template.get("Globals", {}).get("Function", {})
        props = self.template["Resources"][logical_id]["Properties"]
        shared, own = globals_.get(name), props.get(name)
        if isinstance(shared, list) and isinstance(own, list):
            return self.resolve([*shared, *own])
        if isinstance(shared, dict) and isinstance(own, dict):
            return self.resolve({**shared, **own})
        value = own if own is not None else shared
        return default if value is None else self.resolve(value)

    def function_layers(self, logical_id: str) -> list[str]:
        """The logical ids of the function's layers, in order."""
        return [str(layer) for layer in self.function_property(logical_id, "Layers", [])]

    def function_handler(self, logical_id: str) -> tuple[str, str]:
        """``(CodeUri, Handler)`` of a function."""
        return (
            str(self.function_property(logical_id, "CodeUri")),
            str(self.function_property(logical_id, "Handler")),
        )

    def function_timeout(self, logical_id: str) -> float:
        """Seconds the function may run (Lambda's default is 3)."""
        return float(self.function_property(logical_id, "Timeout", 3))


_RESULT_MARK = "@@sklambda-result@@ "
_BOOTSTRAP = r"""
import importlib, json, os, sys, time
sys.path[:0] = json.loads(os.environ.pop("SKLAMBDA_LOCAL_PATHS"))
module_name, function_name = os.environ.pop("SKLAMBDA_LOCAL_HANDLER").rsplit(".", 1)
timeout = float(os.environ.pop("SKLAMBDA_LOCAL_TIMEOUT", "900"))
event = json.loads(sys.stdin.read())


class Context:
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "local")
    function_version = "$LATEST"
    memory_limit_in_mb = 1024
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:" + function_name
    log_group_name = "/aws/lambda/" + function_name
    log_stream_name = "local"
    _deadline = time.monotonic() + timeout

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


handler = getattr(importlib.import_module(module_name), function_name)
result = handler(event, Context())
sys.stdout.write("\n" + MARK + json.dumps(result) + "\n")
""".replace("MARK", repr(_RESULT_MARK))


@dataclass
class BuiltRun:
    result: Any
    stdout: str
    stderr: str
    seconds: float


def built_function_command(
    build_dir: str | Path,
    logical_id: str,
    resolver: TemplateResolver,
    *,
    python: str,
    runtime_paths: list[str] | None = None,
    env: dict[str, str] | None = None,
    bytecode: bool = True,
) -> tuple[list[str], dict[str, str]]:
    """The command and environment that run a function of a ``sam build`` output the way
    Lambda would: a fresh interpreter (``-I -S``: no site-packages, no PYTHONPATH) whose path
    holds only the function's directory, its layers' ``python`` directories and the packages
    the Lambda runtime itself provides (``runtime_paths``, e.g. boto3); ``/opt/...`` in the
    function's environment points into the layer that holds it."""
    build = Path(build_dir)
    _, handler = resolver.function_handler(logical_id)
    layers = [build / layer for layer in resolver.function_layers(logical_id)]
    paths = [str(build / logical_id)]
    paths += [str(layer / "python") for layer in layers if (layer / "python").is_dir()]
    paths += list(runtime_paths or [])
    variables = resolver.function_environment(logical_id)
    for name, value in variables.items():
        if value.startswith("/opt/"):
            rest = value[len("/opt/") :]
            for layer in layers:
                if (layer / rest).exists():
                    variables[name] = str(layer / rest)
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    environment = {
        **base,
        **{k: v for k, v in variables.items() if v != ""},
        "LAMBDA_TASK_ROOT": str(build / logical_id),
        "AWS_LAMBDA_FUNCTION_NAME": logical_id,
        "SKLAMBDA_LOCAL_PATHS": json.dumps(paths),
        "SKLAMBDA_LOCAL_HANDLER": handler,
        **(env or {}),
    }
    flags = ["-I", "-S"] + ([] if bytecode else ["-B"])
    return [python, *flags, "-c", _BOOTSTRAP], environment


def invoke_built(
    build_dir: str | Path,
    logical_id: str,
    event: dict[str, Any],
    resolver: TemplateResolver,
    *,
    python: str,
    runtime_paths: list[str] | None = None,
    env: dict[str, str] | None = None,
    bytecode: bool = True,
    timeout: float = 300,
) -> BuiltRun:
    """Invoke a built function once in a fresh interpreter (see ``built_function_command``)."""
    command, environment = built_function_command(
        build_dir,
        logical_id,
        resolver,
        python=python,
        runtime_paths=runtime_paths,
        env=env,
        bytecode=bytecode,
    )
    started = time.perf_counter()
    done = subprocess.run(
        command,
        input=json.dumps(event),
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0 or _RESULT_MARK not in done.stdout:
        raise RuntimeError(f"{logical_id} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    head, _, tail = done.stdout.rpartition(_RESULT_MARK)
    return BuiltRun(json.loads(tail.strip()), head, done.stderr, seconds)


def model_parameters(model_dir: Path, parameters: dict[str, str] | None = None) -> dict[str, str]:
    """The template parameters a local run uses: the runtime layer the model's manifest names
    (``ServingRuntime``), then ``parameters``, which win (an explicit override)."""
    from sklambda.manifest import read_manifest

    chosen: dict[str, str] = {"ServingRuntime": read_manifest(model_dir).runtime.serving}
    chosen.update(parameters or {})
    return chosen


@dataclass(frozen=True)
class FunctionSetup:
    """What Lambda gives one function of the template: its handler's source file and name,
    its environment (Globals merged, the model directory as ``/opt/model``) and its timeout."""

    source: Path
    handler: str
    environment: dict[str, str]
    timeout: float

    def apply(self) -> None:
        """Set the function's environment in this process, as Lambda would (an empty value
        unsets the variable)."""
        for name, value in self.environment.items():
            if value:
                os.environ[name] = value
            else:
                os.environ.pop(name, None)


def function_setup(
    root: Path,
    function: str,
    *,
    model_dir: Path,
    parameters: dict[str, str] | None = None,
    resources: dict[str, str] | None = None,
) -> FunctionSetup:
    """The function's setup from ``root/template.yaml``: parameters at their defaults or
    overrides (the runtime the model's manifest names unless they say otherwise), ``resources``
    standing in for the stack's."""
    template = load_template(root / "template.yaml")
    resolver = TemplateResolver(template, model_parameters(model_dir, parameters), resources)
    code_uri, handler = resolver.function_handler(function)
    env = resolver.function_environment(function)
    env["SKLAMBDA_MODEL_DIR"] = str(model_dir)
    module_name, function_name = handler.rsplit(".", 1)
    return FunctionSetup(
        root / code_uri / f"{module_name}.py",
        function_name,
        env,
        resolver.function_timeout(function),
    )


def invoke_function(
    root: Path,
    function: str,
    event: dict[str, Any],
    *,
    model_dir: Path,
    parameters: dict[str, str] | None = None,
    resources: dict[str, str] | None = None,
) -> Any:
    """What ``sam local invoke`` does, in this process: the function's environment from the
    template (``function_setup``), a context whose remaining time runs down from the
    function's timeout, and the handler called once."""
    setup = function_setup(
        root, function, model_dir=model_dir, parameters=parameters, resources=resources
    )
    setup.apply()
    module = load_handler(setup.source)
    context = LambdaContext(function_name=function, timeout_seconds=setup.timeout)
    return getattr(module, setup.handler)(event, context)
