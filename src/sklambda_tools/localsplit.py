"""The split path on a laptop (`make batch` over the threshold, `make bench`): the split
function's steps, run as its state machine runs them, through its handler.

Plan and finish run in this process; the shares are scored by ``workers`` local processes
(spawned, each a fresh execution environment of the split function, as Lambda would start
them), at most that many at once, as the Distributed Map's ``MaxConcurrency`` allows. A share
whose worker raises is tried again (``ATTEMPTS`` in all; the state machine allows a share 7);
one that still fails aborts the file (the state machine's catch). The state machine's own
definition is run by moto's interpreter in the tests (``tests/integration/test_split_machine.py``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from types import ModuleType
from typing import Any

from sklambda_tools.local import FunctionSetup, LambdaContext, load_handler

ATTEMPTS = 3  # a share's tries here (fewer than the state machine's 7: a laptop, not S3)


@dataclass
class SplitRun:
    """What the steps returned: the plan's and the finish's payloads, the shares scored."""

    plan: dict[str, Any]
    finish: dict[str, Any] | None = None
    shares: int = 0
    retried: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # plan, score, finish


def _context(setup: FunctionSetup) -> LambdaContext:
    return LambdaContext(function_name="SplitFunction", timeout_seconds=setup.timeout)


_worker: tuple[ModuleType, FunctionSetup] | None = None


def _start_worker(setup: FunctionSetup, log: str | None) -> None:
    """A worker process: the function's environment, its handler loaded once (its init)."""
    global _worker
    if log is not None:  # the handler's logs, as Lambda's go to CloudWatch: not the terminal
        sys.stdout = open(log, "a", buffering=1)  # noqa: SIM115 - the process's lifetime
    setup.apply()
    _worker = (load_handler(setup.source), setup)


def _score(item: dict[str, Any]) -> dict[str, Any]:
    assert _worker is not None
    module, setup = _worker
    done: dict[str, Any] = getattr(module, setup.handler)(
        {"action": "score", "item": item}, _context(setup)
    )
    return done


def run_split(
    setup: FunctionSetup,
    source: dict[str, Any],
    s3: Any,
    *,
    execution: str,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    log: Path | None = None,
) -> SplitRun:
    """Plan ``source`` (bucket, key, version_id, etag, size), score its shares with
    ``workers`` processes, and finish it, through the split function's handler."""
    setup.apply()
    module = load_handler(setup.source)

    def step(event: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = getattr(module, setup.handler)(event, _context(setup))
        return payload

    clock = time.perf_counter()
    planned = step({"action": "plan", "source": source, "execution": execution})
    run = SplitRun(planned, seconds={"plan": time.perf_counter() - clock})
    if planned.get("status") != "planned":
        return run
    where = planned["items"]
    items = json.loads(s3.get_object(Bucket=where["bucket"], Key=where["key"])["Body"].read())
    run.shares = len(items)
    clock = time.perf_counter()
    error = _score_all(setup, items, workers, run, progress, log)
    run.seconds["score"] = time.perf_counter() - clock
    clock = time.perf_counter()
    if error is not None:
        state = {"source": source, "plan": {"Payload": planned}, "error": error}
        run.finish = step({"action": "abort", "state": state, "execution": execution})
    else:
        run.finish = step(
            {"action": "finish", "source": source, "plan": planned, "execution": execution}
        )
    run.seconds["finish"] = time.perf_counter() - clock
    return run


def _score_all(
    setup: FunctionSetup,
    items: list[dict[str, Any]],
    workers: int,
    run: SplitRun,
    progress: Callable[[int, int], None] | None,
    log: Path | None,
) -> dict[str, Any] | None:
    """Score every item; the error (as the state machine's catch gives it) of the first one
    whose tries all raised, else ``None``."""
    context = get_context("spawn")
    done, total = 0, len(items)
    tries = {i: 0 for i in range(total)}
    with ProcessPoolExecutor(
        max_workers=max(1, workers),
        mp_context=context,
        initializer=_start_worker,
        initargs=(setup, str(log) if log else None),
    ) as pool:
        pending: dict[Future[dict[str, Any]], int] = {}

        def submit(index: int) -> None:
            tries[index] += 1
            pending[pool.submit(_score, items[index])] = index

        for index in range(total):
            submit(index)
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                index = pending.pop(future)
                exc = future.exception()
                if exc is None:
                    done += 1
                    if progress is not None:
                        progress(done, total)
                    continue
                if tries[index] < ATTEMPTS:
                    run.retried += 1
                    submit(index)
                    continue
                for other in pending:
                    other.cancel()
                cause = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
                return {"Error": type(exc).__name__, "Cause": json.dumps(cause)}
    return None


def default_workers() -> int:
    """As many workers as this machine has cores (at least two: the split path's point)."""
    return max(2, os.cpu_count() or 1)
