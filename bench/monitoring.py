"""`make bench` (monitoring part): what capture adds to a request, and the drift job's budget.

1. Capture: the warm 1-instance request through the predict handler with capture off, at the
   default 10% and at 100%, interleaved, against moto's Firehose in this process (so a capture's
   own cost is moto's, not the network's: the figure that matters is the median, which the
   sampling keeps untouched).
2. Drift job: one million captured rows (gzipped JSON lines in moto's S3 server, its own process)
   through the job in a fresh worker that resets its peak RSS first; wall time and peak memory,
   against a 60 s, 1 GB Lambda budget.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drain import drained_stdout

from sklambda_tools.localbatch import moto_server_process

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "models" / "penguins"
BUCKET = "bench-monitoring"


def capture_overhead(runs: int) -> dict[str, float]:
    import boto3
    from moto import mock_aws

    from sklambda_tools.local import LambdaContext, load_handler

    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "b",
            "AWS_SECRET_ACCESS_KEY": "b",
            "AWS_DEFAULT_REGION": "us-east-1",
            "SKLAMBDA_MODEL_DIR": str(MODEL_DIR),
            "POWERTOOLS_SERVICE_NAME": "predict",
            "POWERTOOLS_METRICS_NAMESPACE": "sklambda-bench",
        }
    )
    event = json.loads((ROOT / "events" / "predict-single.json").read_text())
    results: dict[str, list[float]] = {}
    # the handlers' logs and metrics go into a pipe that another process drains, as on Lambda
    with mock_aws(), drained_stdout():
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        boto3.client("firehose").create_delivery_stream(
            DeliveryStreamName="capture",
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/c",
                "BucketARN": f"arn:aws:s3:::{BUCKET}",
                "Prefix": "capture/",
                "CompressionFormat": "GZIP",
            },
        )
        handlers = {}
        for rate in ("0", "0.1", "1"):
            os.environ.update({"SKLAMBDA_CAPTURE_STREAM": "capture", "SKLAMBDA_CAPTURE_RATE": rate})
            module = load_handler(ROOT / "functions" / "predict" / "app.py", name=f"capture_{rate}")
            handlers[rate] = module.lambda_handler
            results[rate] = []
        context = LambdaContext(function_name="predict")
        for _ in range(50):
            for handler in handlers.values():
                handler(event, context)
        for _ in range(runs):
            for rate, handler in handlers.items():
                started = time.perf_counter()
                handler(event, context)
                results[rate].append(time.perf_counter() - started)
    out = {}
    for rate, values in results.items():
        values.sort()
        out[f"{rate} p50"] = statistics.median(values) * 1000
        out[f"{rate} p99"] = values[int(len(values) * 0.99)] * 1000
        out[f"{rate} mean"] = statistics.fmean(values) * 1000
    return out


WORKER = r"""
import json, os, sys, time
from datetime import datetime
def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
import boto3
from sklambda import drift
from sklambda.model import load
model = load(os.environ["SKLAMBDA_MODEL_DIR"])
s3 = boto3.client("s3")
end = datetime.fromisoformat(sys.argv[1])
before = rss("VmRSS")
open("/proc/self/clear_refs", "w").write("5")
started = time.perf_counter()
report = drift.run(s3, os.environ["BENCH_BUCKET"], model, end=end, hours=24,
                      threshold=0.2, min_rows=200)
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "peak": rss("VmHWM"), "before": before,
                  "rows": report["rows"], "status": report["status"]}))
"""


def drift_job(rows: int) -> dict[str, Any]:
    import boto3

    from sklambda.drift import hour_prefixes
    from sklambda.model import load
    from sklambda.scoring import predict_all
    from sklambda_tools.examples import penguins
    from sklambda_tools.package import frame_to_records

    model = load(MODEL_DIR)
    birds = frame_to_records(penguins.load_frame(), model.manifest.features)
    with moto_server_process() as endpoint:
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "b",
            "AWS_SECRET_ACCESS_KEY": "b",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "SKLAMBDA_MODEL_DIR": str(MODEL_DIR),
            "BENCH_BUCKET": BUCKET,
        }
        s3 = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="b",
            aws_secret_access_key="b",
        )
        s3.create_bucket(Bucket=BUCKET)
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        prefixes = hour_prefixes(end, 24)
        per_request, per_object = 10, 50_000
        predictions = predict_all(model, birds).predictions()
        written = 0
        while written < rows:
            lines = []
            for start in range(written, min(written + per_object, rows), per_request):
                picks = [(start + i) % len(birds) for i in range(per_request)]
                lines.append(
                    json.dumps(
                        {
                            "request_id": str(start),
                            "time": "t",
                            "model": {"name": model.name, "version": model.version},
                            "instances": [birds[i] for i in picks],
                            "predictions": [predictions[i] for i in picks],
                        }
                    )
                )
            key = f"{prefixes[written // per_object % 24]}part-{written}.gz"
            s3.put_object(
                Bucket=BUCKET, Key=key, Body=gzip.compress(("\n".join(lines) + "\n").encode())
            )
            written += per_object
        worker = subprocess.run(
            [sys.executable, "-c", WORKER, end.isoformat()],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(worker.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/monitoring.py")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    print("capture: warm 1-instance requests, capture off / 10% / 100%, interleaved", flush=True)
    capture = capture_overhead(args.runs)
    print("\n| Capture rate | p50 | p99 | mean |")
    print("|---|---|---|---|")
    for rate in ("0", "0.1", "1"):
        print(
            f"| {rate} | {capture[f'{rate} p50']:.3f} ms | {capture[f'{rate} p99']:.3f} ms | "
            f"{capture[f'{rate} mean']:.3f} ms |"
        )
    added = capture["0.1 p50"] - capture["0 p50"]
    print(f"\ndrift job: {args.rows:,} captured rows", flush=True)
    job = drift_job(args.rows)
    peak, before = job["peak"] / 1e6, job["before"] / 1e6
    print(
        f"  {job['rows']:,} rows counted in {job['seconds']:.1f} s; peak RSS {peak:.0f} MB "
        f"(before: {before:.0f} MB); {job['status']}"
    )
    print("\nGoals:")
    print(
        f"  {'met ' if added < 1.0 else 'MISSED'} capture (10%) adds under 1 ms at the median "
        f"({added:+.3f} ms)"
    )
    ok = job["seconds"] < 60 and job["peak"] < 1e9
    print(
        f"  {'met ' if ok else 'MISSED'} drift job within 60 s and 1 GB "
        f"({job['seconds']:.1f} s, {job['peak'] / 1e6:.0f} MB)"
    )
    if args.json:
        args.json.write_text(json.dumps({"capture_ms": capture, "drift_job": job}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
