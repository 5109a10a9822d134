"""`make bench` (split part): the split path beside the single path, on the same files.

S3 is moto's server in its own process on loopback (``batchenv.batch_stack``). Every job runs
the functions' handlers in fresh worker processes, whose output goes to a drained pipe, as on
Lambda; times are of the handler calls alone (a worker's init, as a Lambda cold start, is not
in them), medians of ``--runs`` interleaved runs:

- **single**: the batch function scores the file in one invocation;
- **split**: the split function's plan (one process), the shares scored by ``--workers``
  processes at once (each takes every ``workers``-th share, in order), then the finish (one
  process). Its wall time is plan + the slowest worker's total + finish.
- **naive baseline**: as in ``bench/batch.py`` (pandas, ``predict_proba``, one put).

The shares are ``--workers`` of about equal size (the file's size over the workers), so that
each worker scores one share. Goals (the split path's issue): plan + finish at most 15% of the
single job's time on the largest file; a speed-up over the single job with two workers; a
worker's peak memory that does not grow with the file; each worker, and the single job, at
least 2x the naive baseline's rows per second on 1,000,000 rows and 1.5x on 100,000.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from batch import WORKER as BATCH_WORKER
from batch import make_csv
from batchenv import batch_stack

from sklambda_tools.localbatch import uploaded

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench-split"
SPLIT_HANDLER = ROOT / "functions" / "split" / "app.py"

STEPS = r"""
import json, os, sys, time
events = json.loads(sys.stdin.read())
sys.path.insert(0, os.environ["BENCH_DIR"])
from drain import drained_stdout, peak_reset, rss

from sklambda_tools.local import LambdaContext, load_handler
app = load_handler(os.environ["BENCH_SPLIT_HANDLER"])
seconds, payloads = [], []
with drained_stdout():
    before = rss("VmRSS")
    peak_reset()
    for event in events:
        started = time.perf_counter()
        payloads.append(app.lambda_handler(event, LambdaContext("split", timeout_seconds=900)))
        seconds.append(time.perf_counter() - started)
print(json.dumps({"seconds": seconds, "peak": rss("VmHWM"), "before": before,
                  "payloads": payloads}))
"""


def steps(env: dict[str, str], events: list[dict[str, Any]]) -> subprocess.Popen[str]:
    """A worker process running ``events`` through the split handler, in order."""
    process = subprocess.Popen(
        [sys.executable, "-c", STEPS],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(events))
    process.stdin.close()
    return process


def report(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None and process.stderr is not None
    out, err = process.stdout.read(), process.stderr.read()
    if process.wait(timeout=900) != 0:
        raise RuntimeError(f"a worker failed: {err[-2000:]}")
    loaded: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return loaded


def run_single(env: dict[str, str], key: str, job: str) -> dict[str, Any]:
    worker = subprocess.run(
        [sys.executable, "-c", BATCH_WORKER, job, key],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    loaded: dict[str, Any] = json.loads(worker.stdout.strip().splitlines()[-1])
    return loaded


def run_split(env: dict[str, str], s3: Any, source: dict[str, Any], workers: int) -> dict[str, Any]:
    clock = time.perf_counter()
    plan = report(steps(env, [{"action": "plan", "source": source}]))
    planned = plan["payloads"][0]
    assert planned["status"] == "planned", planned
    where = planned["items"]
    items = json.loads(s3.get_object(Bucket=where["bucket"], Key=where["key"])["Body"].read())
    running = [
        steps(env, [{"action": "score", "item": item} for item in items[k::workers]])
        for k in range(workers)
    ]
    scored = [report(p) for p in running]
    finish = report(steps(env, [{"action": "finish", "source": source, "plan": planned}]))
    assert finish["payloads"][0]["status"] == "succeeded", finish
    outside = time.perf_counter() - clock
    rows = [item["rows"] for item in items]
    share_seconds = [s for worker in scored for s in worker["seconds"]]
    share_rows = [r for k in range(workers) for r in rows[k::workers]]
    return {
        "shares": len(items),
        "plan_seconds": plan["seconds"][0],
        "finish_seconds": finish["seconds"][0],
        "workers_seconds": max(sum(worker["seconds"]) for worker in scored),
        "wall_seconds": plan["seconds"][0]
        + max(sum(worker["seconds"]) for worker in scored)
        + finish["seconds"][0],
        "wall_with_process_starts": outside,
        "worker_rows_per_second": min(
            r / s for r, s in zip(share_rows, share_seconds, strict=True)
        ),
        "worker_peak_mb": max(worker["peak"] for worker in scored) / 1e6,
        "worker_before_mb": max(worker["before"] for worker in scored) / 1e6,
        "plan_peak_mb": plan["peak"] / 1e6,
        "finish_peak_mb": finish["peak"] / 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/split.py")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with batch_stack(BUCKET, SKLAMBDA_CHUNK_ROWS="10000") as (env, s3):
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        env["BENCH_SPLIT_HANDLER"] = str(SPLIT_HANDLER)
        work = ROOT / "out" / "bench"
        work.mkdir(parents=True, exist_ok=True)
        for size in args.sizes:
            path = work / f"penguins-{size}.csv"
            if not path.exists():
                make_csv(path, size)
            key = f"incoming/split-{size}.csv"
            put = s3.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
            source = uploaded(BUCKET, key, put, path.stat().st_size)
            env["BENCH_OBJECT"] = json.dumps(
                {"eTag": source["etag"], "size": source["size"], "versionId": put["VersionId"]}
            )
            env["SKLAMBDA_SPLIT_BYTES"] = str(-(-source["size"] // args.workers))
            print(f"{size:,} rows ({source['size'] / 1e6:.0f} MB): {args.runs} runs", flush=True)
            runs: dict[str, list[dict[str, Any]]] = {"single": [], "split": [], "naive": []}
            for _ in range(args.runs):
                for job in runs:
                    s3.delete_objects(
                        Bucket=BUCKET,
                        Delete={"Objects": [{"Key": f"manifests/split-{size}.csv.json"}]},
                    )
                    if job == "split":
                        runs[job].append(run_split(env, s3, source, args.workers))
                    else:
                        runs[job].append(
                            run_single(env, key, "sklambda" if job == "single" else job)
                        )
            single = statistics.median(r["seconds"] for r in runs["single"])
            naive = statistics.median(r["seconds"] for r in runs["naive"])
            split = {
                name: statistics.median(r[name] for r in runs["split"]) for name in runs["split"][0]
            }
            results[str(size)] = {
                "rows": size,
                "bytes": source["size"],
                "single_seconds": single,
                "single_rows_per_second": size / single,
                "single_peak_mb": statistics.median(r["peak"] for r in runs["single"]) / 1e6,
                "naive_rows_per_second": size / naive,
                **split,
                "overhead": (split["plan_seconds"] + split["finish_seconds"]) / single,
                "speedup": single / split["wall_seconds"],
            }
    print_report(results, args.workers)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def print_report(results: dict[str, Any], workers: int) -> None:
    print(
        f"\n| Rows | Single s | Split wall s ({workers} workers) | Plan s | Finish s "
        "| Plan+finish / single | Speed-up | Worker rows/s | Single rows/s | Naive rows/s "
        "| Worker peak | Plan peak | Finish peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results.values():
        print(
            f"| {r['rows']:,} | {r['single_seconds']:.2f} | {r['wall_seconds']:.2f} "
            f"| {r['plan_seconds']:.2f} | {r['finish_seconds']:.2f} | {r['overhead']:.1%} "
            f"| {r['speedup']:.2f}x | {r['worker_rows_per_second']:,.0f} "
            f"({r['worker_rows_per_second'] / r['naive_rows_per_second']:.2f}x) "
            f"| {r['single_rows_per_second']:,.0f} "
            f"({r['single_rows_per_second'] / r['naive_rows_per_second']:.2f}x) "
            f"| {r['naive_rows_per_second']:,.0f} | {r['worker_peak_mb']:.0f} MB "
            f"| {r['plan_peak_mb']:.0f} MB | {r['finish_peak_mb']:.0f} MB |"
        )
    largest = max(results.values(), key=lambda r: r["rows"])
    smallest = min(results.values(), key=lambda r: r["rows"])
    verdict = {True: "met ", False: "MISSED"}
    growth = largest["worker_peak_mb"] / smallest["worker_peak_mb"] - 1
    print("\nGoals:")
    print(
        f"  {verdict[largest['overhead'] <= 0.15]} plan + finish <= 15% of the single job "
        f"({largest['rows']:,} rows: {largest['overhead']:.1%})"
    )
    speedup = largest["speedup"]
    print(f"  {verdict[speedup > 1]} speed-up with {workers} workers ({speedup:.2f}x)")
    print(f"  {verdict[growth <= 0.10]} worker peak within 10% across files ({growth:+.1%})")
    for r in results.values():
        goal = 2.0 if r["rows"] >= 1_000_000 else 1.5
        worker = r["worker_rows_per_second"] / r["naive_rows_per_second"]
        one = r["single_rows_per_second"] / r["naive_rows_per_second"]
        print(
            f"  {verdict[min(worker, one) >= goal]} worker and single >= {goal}x naive at "
            f"{r['rows']:,} rows (worker {worker:.2f}x, single {one:.2f}x)"
        )


if __name__ == "__main__":
    sys.exit(main())
