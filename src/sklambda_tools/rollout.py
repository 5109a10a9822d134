"""The pre-traffic check, run locally: the predict function's handler in this process stands in
for the new version (``make demo``, ``make bench``, the tests).

``check_in_process(probes_model_dir, served_model_dir)`` is ``sklambda.pretraffic.check`` with
the probe rows of one model directory sent to the predict function serving another, as ``sam
local invoke`` would run it: the function's environment from ``template.yaml`` (Globals merged,
the runtime the served model's manifest names unless ``runtime`` says otherwise), the served
directory as ``/opt/model``, a context whose time runs down from the function's timeout. The
handler module is loaded once, at the first request (that request carries the function's init,
as the first invoke of a new version does), and called for each request after.

The handler's logs and metrics go to standard output, as on Lambda; a caller that does not want
them there redirects it (``bench/rollout.py`` drains it into a pipe).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from sklambda.pretraffic import InvokeFailed, InvokeTimeout, Verdict, check
from sklambda_tools.local import (
    LambdaContext,
    function_setup,
    load_handler,
    new_execution_environment,
)

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = "PredictFunction"
DEFAULT_DEADLINE_SECONDS = 290.0
"""The hook's: its 300 s timeout less the margin it keeps for reporting."""
LOCAL_PARAMETERS = {"CaptureRate": "0"}
"""Probe requests are not traffic: locally they are never captured (nor is a Firehose needed)."""


class InProcessVersion:
    """An ``Invoker`` (``sklambda.pretraffic``) that runs the template's predict function in
    this process on ``model_dir``: the environment set and the handler loaded at the first
    request, the same module answering every request after."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        root: str | Path = ROOT,
        parameters: dict[str, str] | None = None,
        function: str = FUNCTION,
    ) -> None:
        self.root, self.function = Path(root), function
        self.model_dir = Path(model_dir)
        self.setup = function_setup(
            self.root,
            function,
            model_dir=self.model_dir,
            parameters={**LOCAL_PARAMETERS, **(parameters or {})},
        )
        self.module: ModuleType | None = None
        self.init_error: str | None = None

    @property
    def max_instances(self) -> int:
        """The function's limit of instances per request, as its environment sets it."""
        return int(self.setup.environment.get("SKLAMBDA_MAX_INSTANCES") or 1000)

    def _init(self) -> Callable[[dict[str, Any], Any], Any]:
        if self.module is None and self.init_error is None:
            self.setup.apply()
            source = self.setup.source
            try:
                self.module = load_handler(source, name=f"rollout_{source.parent.name}")
            except Exception as exc:  # Lambda: an init error, answered as a FunctionError
                self.init_error = f"the function failed its init: {type(exc).__name__}: {exc}"
        if self.init_error is not None:
            raise InvokeFailed(self.init_error)
        assert self.module is not None
        handler: Callable[[dict[str, Any], Any], Any] = getattr(self.module, self.setup.handler)
        return handler

    def __call__(self, event: dict[str, Any], timeout: float) -> Any:
        asked = time.monotonic()
        handler = self._init()
        timeout_seconds = self.setup.timeout
        context = LambdaContext(function_name=self.function, timeout_seconds=timeout_seconds)
        started = time.monotonic()
        try:
            # the event and the answer cross Lambda's boundary as JSON
            result = handler(json.loads(json.dumps(event)), context)
            answer = json.loads(json.dumps(result))
        except Exception as exc:
            raise InvokeFailed(f"the function failed (Unhandled): {type(exc).__name__}") from None
        done = time.monotonic()
        if done - started > timeout_seconds:  # Lambda would have stopped it
            raise InvokeFailed(
                f"the function failed (Unhandled): timed out after {timeout_seconds:g} seconds"
            )
        if done - asked > timeout:  # the caller would have stopped waiting
            raise InvokeTimeout()
        return answer


@contextlib.contextmanager
def _environment_kept() -> Iterator[None]:
    """The process environment and execution-environment caches as they were, afterwards."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        new_execution_environment()


def check_in_process(
    probes_model_dir: str | Path,
    served_model_dir: str | Path,
    runtime: str | None = None,
    *,
    root: str | Path = ROOT,
    parameters: dict[str, str] | None = None,
    max_instances: int | None = None,
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS,
) -> Verdict:
    """The pre-traffic check of the probe rows of ``probes_model_dir`` (what is being deployed)
    against the predict function serving ``served_model_dir`` in this process.

    ``runtime`` (``onnx`` or ``sklearn``) overrides the served manifest's; ``parameters``
    override the template's (capture is off unless they turn it on); ``max_instances`` is the
    function's own limit unless given. The process environment is restored afterwards.
    """
    chosen = dict(parameters or {})
    if runtime is not None:
        chosen["ServingRuntime"] = runtime
    with _environment_kept():
        version = InProcessVersion(served_model_dir, root=root, parameters=chosen)
        return check(
            version,
            probes_model_dir,
            max_instances=max_instances or version.max_instances,
            deadline_seconds=deadline_seconds,
        )


def tampered_copy(model_dir: str | Path, dest: str | Path, *, factor: float = 1.1) -> Path:
    """A copy of ``model_dir`` at ``dest`` whose ONNX graph has its largest weight tensor
    scaled by ``factor``, re-hashed in ``model.json``: an artifact that loads and serves (its
    hashes match) but answers other than the packaged pipeline, which only the probes tell.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from sklambda.manifest import (
        ONNX_FILE,
        ArtifactFile,
        dump_manifest,
        read_manifest,
        sha256_bytes,
    )

    target = Path(dest)
    shutil.copytree(model_dir, target)
    manifest = read_manifest(target)
    if ONNX_FILE not in manifest.artifacts:
        raise ValueError(f"{model_dir} has no {ONNX_FILE} to tamper with")
    graph = onnx.load_from_string((target / ONNX_FILE).read_bytes())
    weights = [t for t in graph.graph.initializer if numpy_helper.to_array(t).dtype.kind == "f"]
    if not weights:
        raise ValueError(f"the {ONNX_FILE} of {model_dir} has no floating-point weights")
    largest = max(weights, key=lambda t: numpy_helper.to_array(t).size)
    values = numpy_helper.to_array(largest)
    largest.CopyFrom(
        numpy_helper.from_array(np.asarray(values * factor, dtype=values.dtype), largest.name)
    )
    data = graph.SerializeToString()
    (target / ONNX_FILE).write_bytes(data)
    artifacts = {
        **manifest.artifacts,
        ONNX_FILE: ArtifactFile(sha256=sha256_bytes(data), bytes=len(data)),
    }
    (target / "model.json").write_text(
        dump_manifest(dataclasses.replace(manifest, artifacts=artifacts))
    )
    return target
