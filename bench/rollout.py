"""`make bench` (rollout part): how long the pre-traffic check of the example model takes.

The check (``sklambda.pretraffic.check``) of ``models/penguins`` against the predict function
serving it, in this process (``sklambda_tools.rollout.check_in_process``): from the start of
the check (the probe file read and verified) through ``GET /health`` and the probe rows'
``POST /predict`` requests to the verdict. Each run loads the handler module afresh at its first
request, so each carries the function's init (settings, model load and verification) as the
first invoke of a new version does; the interpreter's imports are paid once, by the first run
(reported on its own). The handler's logs and metrics go into a pipe another process drains,
as on Lambda. A second series runs each check in a fresh interpreter (its imports included:
the first check of a new execution environment), spawned with its output read through pipes.
On AWS the check adds two synchronous invokes' network time and the new version's cold start;
the figures here are the check's own work. The goal: under 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from drain import drain_pipe, drained_stdout

from sklambda_tools.rollout import check_in_process

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "penguins"
GOAL_SECONDS = 10.0


def measure(runtime: str, runs: int) -> dict[str, Any]:
    seconds, rows = [], 0
    for _ in range(runs):
        with drained_stdout():
            verdict = check_in_process(MODEL_DIR, MODEL_DIR, runtime)
        if not verdict.succeeded:
            raise RuntimeError(f"the check of {MODEL_DIR} failed ({runtime}): {verdict.reason}")
        seconds.append(verdict.seconds)
        rows = verdict.rows
    return {
        "first": seconds[0],
        "median": statistics.median(seconds),
        "min": min(seconds),
        "max": max(seconds),
        "values": seconds,
        "rows": rows,
    }


COLD_SCRIPT = """
import sys
from sklambda_tools.rollout import check_in_process
verdict = check_in_process(sys.argv[1], sys.argv[1], sys.argv[2])
sys.stdout.write("\\nVERDICT " + verdict.status + " " + repr(verdict.seconds) + "\\n")
sys.stdout.flush()
"""


def cold(runtime: str, stderr: int) -> tuple[float, float]:
    """``(check seconds, seconds from spawn)`` of one check in a fresh interpreter. Its stdout
    (the handler's logs and metrics, then the verdict) is a pipe read here; ``stderr`` a
    drained pipe."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", COLD_SCRIPT, str(MODEL_DIR), runtime],
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=dict(os.environ),
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("VERDICT "):
            wall = time.perf_counter() - started
            _, status, seconds = line.split()
            proc.wait()
            if status != "Succeeded":
                raise RuntimeError(f"the check of {MODEL_DIR} failed ({runtime})")
            return float(seconds), wall
    raise RuntimeError(f"the check of {MODEL_DIR} gave no verdict ({runtime})")


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/rollout.py")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    print(
        f"pre-traffic check of {MODEL_DIR.name}: {args.runs} runs per runtime, in process",
        flush=True,
    )
    results: dict[str, Any] = {"runs": args.runs, "seconds": {}, "cold": {}}
    for runtime in ("onnx", "sklearn"):
        results["seconds"][runtime] = measure(runtime, args.runs)
    print(f"the same in {args.cold_runs} fresh interpreters per runtime, interleaved", flush=True)
    checks: dict[str, list[float]] = {"onnx": [], "sklearn": []}
    spawned: dict[str, list[float]] = {"onnx": [], "sklearn": []}
    with drain_pipe() as stderr:
        for _ in range(args.cold_runs):
            for runtime in checks:
                seconds, wall = cold(runtime, stderr)
                checks[runtime].append(seconds)
                spawned[runtime].append(wall)
    for runtime in checks:
        results["cold"][runtime] = {
            "check": summary(checks[runtime]),
            "from_spawn": summary(spawned[runtime]),
        }

    print("\n| Runtime | Probe rows | Median | Min | Max | First run (imports) |")
    print("|---|---|---|---|---|---|")
    for runtime, s in results["seconds"].items():
        print(
            f"| {runtime} | {s['rows']} | {s['median']:.3f} s | {s['min']:.3f} s | "
            f"{s['max']:.3f} s | {s['first']:.3f} s |"
        )
    print("\n| Runtime, fresh interpreter | Check median | Min | Max | From spawn (median) |")
    print("|---|---|---|---|---|")
    for runtime, c in results["cold"].items():
        check = c["check"]
        print(
            f"| {runtime} | {check['median']:.3f} s | {check['min']:.3f} s | "
            f"{check['max']:.3f} s | {c['from_spawn']['median']:.3f} s |"
        )
    slowest = max(
        *(s["max"] for s in results["seconds"].values()),
        *(c["check"]["max"] for c in results["cold"].values()),
    )
    goals = {
        f"every check under {GOAL_SECONDS:g} s (slowest {slowest:.3f} s)": slowest < GOAL_SECONDS
    }
    print("\nGoals:")
    for goal, met in goals.items():
        print(f"  {'met ' if met else 'MISSED'} {goal}")
    results["goals"] = goals
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
