"""`make bench` (hardening part): the worst small uploads, each at most 1 MB compressed.

Each input goes through the batch function's handler in a fresh worker process, with S3 as
moto's server in its own process (as in bench/batch.py). The worker resets its peak resident
memory before the handler runs and reports the wall time until the file is scored or refused,
the peak above what the process held before, and the job record's status and reason.

Goal: under 512 MB above the baseline and under 30 s for every input.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from batchenv import batch_stack

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench-hardening"
HEADER = "island,bill_length_mm,bill_depth_mm,flipper_length_mm,body_mass_g,sex\n"
ROW = "Biscoe,48.6,16.0,230.0,5800.0,male\n"
LIMIT_MB, LIMIT_S = 512, 30.0

WORKER = r"""
import json, os, sys, time
key = sys.argv[1]

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    return 0

import boto3
from sklambda_tools.local import LambdaContext, load_handler
app = load_handler(os.environ["BENCH_HANDLER"])
s3 = boto3.client("s3")
event = {"Records": [{"s3": {"bucket": {"name": os.environ["BENCH_BUCKET"]},
                             "object": {"key": key}}}]}
sys.path.insert(0, os.environ["BENCH_DIR"])
from drain import drained_stdout
with drained_stdout():
    before = rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    started = time.perf_counter()
    try:
        context = LambdaContext(function_name="batch", timeout_seconds=900)
        result = app.lambda_handler(event, context)
        outcome = result["results"][0]["status"]
    except Exception as exc:
        outcome = "raised " + type(exc).__name__
    elapsed = time.perf_counter() - started
record_key = "manifests/" + key[len("incoming/"):] + ".json"
try:
    got = s3.get_object(Bucket=os.environ["BENCH_BUCKET"], Key=record_key)
    record = json.loads(got["Body"].read())
except Exception:
    record = {}
print(json.dumps({"seconds": elapsed, "peak": rss("VmHWM"), "before": before, "outcome": outcome,
                  "status": record.get("status"), "reason": (record.get("reason") or "")[:120],
                  "rows": record.get("rows")}))
"""


def gzipped_until(limit: int, head: bytes, unit: bytes) -> bytes:
    """``head`` then ``unit`` repeated, gzipped, about as much as fits in ``limit`` bytes."""
    sample = 16 << 20
    ratio = sample / len(_gzip_repeated(head, unit, sample // len(unit)))
    times = int(limit * ratio * 0.98) // len(unit)
    while True:
        data = _gzip_repeated(head, unit, times)
        if len(data) <= limit:
            return data
        times = int(times * 0.97)


def _gzip_repeated(head: bytes, unit: bytes, times: int) -> bytes:
    buffer = io.BytesIO()
    per = max(1, (1 << 20) // len(unit))
    block = unit * per
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as z:
        z.write(head)
        left = times
        while left > 0:
            n = min(per, left)
            z.write(block if n == per else unit * n)
            left -= n
    return buffer.getvalue()


def inputs() -> dict[str, bytes]:
    mb = 1_000_000
    return {
        "incoming/endless-line.csv.gz": gzipped_until(mb, HEADER.encode(), b"1"),
        "incoming/zeros.jsonl.gz": gzipped_until(mb, b"", b"0"),
        "incoming/wide-header.csv": (
            ",".join(f"column_{i}" for i in range(10_000)) + "\n" + ROW
        ).encode(),
        "incoming/open-quote.csv.gz": gzipped_until(mb, (HEADER + 'Biscoe,"').encode(), b"x"),
        "incoming/repeated-rows.csv.gz": gzipped_until(mb, HEADER.encode(), ROW.encode()),
        "incoming/nested.jsonl": (b"[" * 100_000 + b"\n") * 5,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/hardening.py")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    results: dict[str, Any] = {}
    with batch_stack(BUCKET) as (env, s3):
        for key, body in inputs().items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            done = subprocess.run(
                [sys.executable, "-c", WORKER, key],
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=600,
            )
            if done.returncode != 0:
                results[key] = {"error": done.stderr[-2000:], "bytes": len(body)}
                continue
            run = json.loads(done.stdout.strip().splitlines()[-1])
            run["bytes"] = len(body)
            run["above_baseline_mb"] = (run["peak"] - run["before"]) / 1e6
            results[key] = run
    print("\n| Input (compressed bytes) | Outcome | Seconds | Peak above baseline | Reason |")
    print("|---|---|---|---|---|")
    ok = True
    for key, run in results.items():
        if "error" in run:
            ok = False
            print(f"| {key} ({run['bytes']:,}) | worker failed | | | {run['error'][-80:]!r} |")
            continue
        within = run["above_baseline_mb"] < LIMIT_MB and run["seconds"] < LIMIT_S
        ok &= within
        print(
            f"| {key} ({run['bytes']:,}) | {run['status'] or run['outcome']} | "
            f"{run['seconds']:.2f} | {run['above_baseline_mb']:.0f} MB | {run['reason']} |"
        )
    print(
        f"\nGoal: every input under {LIMIT_MB} MB and {LIMIT_S:.0f} s: {'met' if ok else 'MISSED'}"
    )
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "goal_met": ok}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
