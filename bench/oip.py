"""`make bench` (the Open Inference Protocol): one row through POST /v2/models/{name}/infer and
the same row through POST /predict, side by side.

The predict handler (onnx runtime) is loaded once, as one execution environment, and called in
process with API Gateway events, as Lambda runs it: its logs and metrics go to a pipe another
process drains (``bench/drain.py``). The two requests alternate, call by call, so that noise
from the shared machine falls on both alike; medians, p99 and the ratio of the medians are the
figures. 100 rows are measured too, for scale. The goal: a 1-row V2 request costs at most 10%
more than the native one at the median.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from drain import drained_stdout

from sklambda.manifest import read_manifest
from sklambda_tools.examples import penguins
from sklambda_tools.local import LambdaContext, load_handler
from sklambda_tools.package import frame_to_records

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "penguins"
GOAL = 1.10  # V2 median / native median, one row


def events(rows: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The native and the V2 event of the same rows (the V2 one as MLServer's codec sends it)."""
    base: dict[str, Any] = json.loads((ROOT / "events" / "predict-single.json").read_text())
    native = copy.deepcopy(base)
    native["body"] = json.dumps({"instances": rows})
    features = read_manifest(MODEL_DIR).features
    v2: dict[str, Any] = json.loads((ROOT / "events" / "v2-infer.json").read_text())
    v2["body"] = json.dumps(
        {
            "parameters": {"content_type": "pd"},
            "inputs": [
                {
                    "name": f.name,
                    "shape": [len(rows), 1],
                    "datatype": "BYTES" if f.kind == "categorical" else "FP64",
                    "data": [row[f.name] for row in rows],
                }
                for f in features
            ],
        }
    )
    return native, v2


def side_by_side(
    handler: Any, native: dict[str, Any], v2: dict[str, Any], runs: int
) -> dict[str, list[float]]:
    context = LambdaContext(function_name="predict")
    times: dict[str, list[float]] = {"native": [], "v2": []}
    with drained_stdout():
        for _ in range(min(100, runs)):  # warm caches and allocators
            handler(native, context)
            handler(v2, context)
        for i in range(runs):
            order = (("native", native), ("v2", v2)) if i % 2 else (("v2", v2), ("native", native))
            for name, event in order:
                started = time.perf_counter()
                response = handler(event, context)
                times[name].append(time.perf_counter() - started)
                assert response["statusCode"] == 200, response["body"]
    return times


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/oip.py")
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    os.environ.update(
        {
            "SKLAMBDA_MODEL_DIR": str(MODEL_DIR),
            "SKLAMBDA_RUNTIME": "onnx",
            "POWERTOOLS_SERVICE_NAME": "predict",
            "POWERTOOLS_METRICS_NAMESPACE": "sklambda-bench",
        }
    )
    with drained_stdout():
        module = load_handler(ROOT / "functions" / "predict" / "app.py", name="bench_oip")
    rows = frame_to_records(penguins.load_frame(), read_manifest(MODEL_DIR).features)
    results: dict[str, Any] = {}
    print("| Rows | native p50 | V2 p50 | native p99 | V2 p99 | V2 / native (p50) |")
    print("|---|---|---|---|---|---|")
    for size in (1, 100):
        native, v2 = events([rows[i % len(rows)] for i in range(size)])
        runs = args.runs if size == 1 else max(200, args.runs // 5)
        times = side_by_side(module.lambda_handler, native, v2, runs)
        figures = {
            name: {
                "p50_ms": float(np.percentile(values, 50)) * 1000,
                "p99_ms": float(np.percentile(values, 99)) * 1000,
            }
            for name, values in times.items()
        }
        ratio = figures["v2"]["p50_ms"] / figures["native"]["p50_ms"]
        results[str(size)] = {**figures, "ratio_p50": ratio, "runs": runs}
        print(
            f"| {size} | {figures['native']['p50_ms']:.3f} ms | {figures['v2']['p50_ms']:.3f} ms "
            f"| {figures['native']['p99_ms']:.3f} ms | {figures['v2']['p99_ms']:.3f} ms "
            f"| {ratio:.3f} |"
        )
    met = results["1"]["ratio_p50"] <= GOAL
    results["goal"] = {"ratio_p50_at_most": GOAL, "met": met}
    print(
        f"\nGoal: {'met ' if met else 'MISSED'} a 1-row V2 request costs at most "
        f"{GOAL - 1:.0%} more than /predict at the median ({results['1']['ratio_p50']:.3f})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
