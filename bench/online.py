"""`make bench` (online part): cold start and warm latency of the predict handler.

Three handlers are measured in the same run, on the same requests: sklambda's handler with the
onnx runtime, the same handler with the sklearn runtime, and the naive baseline
(``bench/naive_handler.py``). Cold start is a fresh interpreter, from spawn to the first answer
(imports, model load, first request). Warm latency is one handler call, in process, repeated.
The machine is shared and noisy: medians and ratios against the baseline measured alongside are
the figures to read, not single numbers.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from drain import drain_pipe, drained_stdout

from sklambda_tools.examples import penguins
from sklambda_tools.local import LambdaContext, load_handler
from sklambda_tools.package import frame_to_records

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "penguins"
HANDLERS = {
    "sklambda onnx": (ROOT / "functions" / "predict" / "app.py", {"SKLAMBDA_RUNTIME": "onnx"}),
    "sklambda sklearn": (
        ROOT / "functions" / "predict" / "app.py",
        {"SKLAMBDA_RUNTIME": "sklearn"},
    ),
    "naive baseline": (ROOT / "bench" / "naive_handler.py", {}),
}
BASE_ENV = {
    "SKLAMBDA_MODEL_DIR": str(MODEL_DIR),
    "POWERTOOLS_SERVICE_NAME": "predict",
    "POWERTOOLS_METRICS_NAMESPACE": "sklambda-bench",
}


def request(instances: list[dict[str, Any]]) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / "predict-single.json").read_text())
    event = copy.deepcopy(event)
    event["body"] = json.dumps({"instances": instances})
    return event


def holdout_rows(n: int) -> list[dict[str, Any]]:
    frame = penguins.load_frame()
    rows = frame_to_records(frame, penguins_features())
    return [rows[i % len(rows)] for i in range(n)]


def penguins_features() -> Any:
    from sklambda.manifest import read_manifest

    return read_manifest(MODEL_DIR).features


COLD_SCRIPT = """
import json, sys
from sklambda_tools.local import LambdaContext, load_handler
event = json.loads(sys.stdin.read())
module = load_handler(sys.argv[1])
response = module.lambda_handler(event, LambdaContext(function_name="predict"))
sys.stdout.write("ANSWER " + str(response["statusCode"]) + "\\n")
sys.stdout.flush()
"""


def cold_start(path: Path, env: dict[str, str], event: dict[str, Any], stderr: int) -> float:
    """Seconds from spawning a fresh interpreter to its first answer. Its stdout (the handler's
    logs and metrics, then the answer) is a pipe this process reads; ``stderr`` a drained pipe."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", COLD_SCRIPT, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env={**os.environ, **BASE_ENV, **env},
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(event))
    proc.stdin.close()
    for line in proc.stdout:
        if line.startswith("ANSWER "):
            elapsed = time.perf_counter() - started
            if line.split()[1] != "200":
                raise RuntimeError(f"{path} answered {line.strip()}")
            proc.wait()
            return elapsed
    raise RuntimeError(f"{path} gave no answer")


def warm_handler(path: Path, env: dict[str, str]) -> Callable[[dict[str, Any]], Any]:
    os.environ.update({**BASE_ENV, **env})
    with drained_stdout():
        module = load_handler(path, name=f"bench_{len(env)}_{path.stem}")
    context = LambdaContext(function_name="predict")
    return lambda event: module.lambda_handler(event, context)


def latencies(call: Callable[[dict[str, Any]], Any], event: dict[str, Any], n: int) -> list[float]:
    out = []
    with drained_stdout():
        for _ in range(min(50, n)):
            call(event)  # warm caches, allocators, branch predictors
        for _ in range(n):
            started = time.perf_counter()
            response = call(event)
            out.append(time.perf_counter() - started)
            assert response["statusCode"] == 200
    return out


def serve_overhead(event: dict[str, Any], runs: int) -> dict[str, float]:
    """Median and p99 of one request through the local API (real HTTP on loopback, a kept-alive
    session) and of the same event handed to the handler directly, interleaved."""
    import requests

    from sklambda_tools.localapi import LocalApi, Server

    os.environ.update({**BASE_ENV, "SKLAMBDA_RUNTIME": "onnx"})
    app = LocalApi(ROOT, model_dir=MODEL_DIR, parameters={"AuthMode": "NONE"})
    direct = warm_handler(*HANDLERS["sklambda onnx"])
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    http, plain = [], []
    with Server(app, port=0) as server, requests.Session() as session, drained_stdout():
        url = server.url + "/predict"
        headers = {"Content-Type": "application/json"}
        for _ in range(50):
            session.post(url, data=event["body"], headers=headers)
        for _ in range(runs):
            started = time.perf_counter()
            response = session.post(url, data=event["body"], headers=headers)
            http.append(time.perf_counter() - started)
            assert response.status_code == 200
            started = time.perf_counter()
            direct(event)
            plain.append(time.perf_counter() - started)
    return {
        "http_p50": pct(http, 50) * 1000,
        "http_p99": pct(http, 99) * 1000,
        "direct_p50": pct(plain, 50) * 1000,
        "direct_p99": pct(plain, 99) * 1000,
    }


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/online.py")
    parser.add_argument("--cold-runs", type=int, default=7)
    parser.add_argument("--warm-runs", type=int, default=2000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    events = {1: request(holdout_rows(1)), 100: request(holdout_rows(100))}
    results: dict[str, Any] = {"cold_start_s": {}, "warm_ms": {}}

    print(f"cold start: {args.cold_runs} fresh interpreters per handler, interleaved", flush=True)
    cold: dict[str, list[float]] = {name: [] for name in HANDLERS}
    with drain_pipe() as stderr:
        for _ in range(args.cold_runs):
            for name, (path, env) in HANDLERS.items():
                cold[name].append(cold_start(path, env, events[1], stderr))
    for name, values in cold.items():
        results["cold_start_s"][name] = statistics.median(values)

    print(f"warm: {args.warm_runs} calls per handler and request size", flush=True)
    for name, (path, env) in HANDLERS.items():
        call = warm_handler(path, env)
        for size, event in events.items():
            runs = args.warm_runs if size == 1 else max(200, args.warm_runs // 5)
            values = latencies(call, event, runs)
            results["warm_ms"][f"{name}, {size}"] = {
                "p50": pct(values, 50) * 1000,
                "p99": pct(values, 99) * 1000,
                "runs": runs,
            }

    print(
        "local API: the same 1-instance request through `make serve`'s server and direct",
        flush=True,
    )
    results["serve_ms"] = serve_overhead(events[1], args.warm_runs)

    base_cold = results["cold_start_s"]["naive baseline"]
    print("\n| Handler | Cold start (median) | vs baseline |")
    print("|---|---|---|")
    for name, value in results["cold_start_s"].items():
        print(f"| {name} | {value:.3f} s | {value / base_cold:.2f}x |")
    print("\n| Handler, instances | p50 | p99 | p50 vs baseline |")
    print("|---|---|---|---|")
    for key, figures in results["warm_ms"].items():
        size = key.rsplit(", ", 1)[1]
        base = results["warm_ms"][f"naive baseline, {size}"]["p50"]
        print(
            f"| {key} | {figures['p50']:.3f} ms | {figures['p99']:.3f} ms | "
            f"{figures['p50'] / base:.3f}x |"
        )
    serve = results["serve_ms"]
    print("\n| Path | p50 | p99 |")
    print("|---|---|---|")
    print(
        f"| handler called directly | {serve['direct_p50']:.3f} ms | {serve['direct_p99']:.3f} ms |"
    )
    print(
        f"| HTTP through the local API | {serve['http_p50']:.3f} ms | {serve['http_p99']:.3f} ms |"
    )
    warm = results["warm_ms"]
    onnx1, naive1 = warm["sklambda onnx, 1"], warm["naive baseline, 1"]
    onnx100, naive100 = warm["sklambda onnx, 100"], warm["naive baseline, 100"]
    ratios = {
        "warm 1-instance p50": onnx1["p50"] / naive1["p50"],
        "warm 1-instance p99": onnx1["p99"] / naive1["p99"],
        "warm 100-instance p50": onnx100["p50"] / naive100["p50"],
        "cold start": results["cold_start_s"]["sklambda onnx"] / base_cold,
    }
    goals = {
        f"warm 1-instance p50 <= 1/15 of the baseline's ({ratios['warm 1-instance p50']:.3f})": (
            ratios["warm 1-instance p50"] <= 1 / 15
        ),
        f"warm 1-instance p99 <= 1/10 of the baseline's ({ratios['warm 1-instance p99']:.3f})": (
            ratios["warm 1-instance p99"] <= 1 / 10
        ),
        f"100 instances p50 <= 1/4 of the baseline's ({ratios['warm 100-instance p50']:.3f})": (
            ratios["warm 100-instance p50"] <= 1 / 4
        ),
        f"cold start <= 1/5 of the baseline's ({ratios['cold start']:.3f})": (
            ratios["cold start"] <= 1 / 5
        ),
        "local API adds < 2 ms (median)": serve["http_p50"] - serve["direct_p50"] < 2.0,
    }
    results["ratios"] = ratios
    print("\nGoals (onnx runtime):")
    for goal, met in goals.items():
        print(f"  {'met ' if met else 'MISSED'} {goal}")
    results["goals"] = goals
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
