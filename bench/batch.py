"""`make bench` (batch part): rows per second and peak memory, end to end through S3.

S3 is moto's server, in its own process on the loopback interface, so that the object store's
memory is not counted as the job's. Each run is a fresh worker process: it resets its peak
resident memory (``/proc/self/clear_refs``), scores one file that is already in the bucket, and
reports the wall time and the peak. Two jobs, on the same files, interleaved:

- **sklambda**: the batch function's handler (streaming, chunked, validated, onnx runtime);
- **naive baseline**: the whole object read into pandas, ``predict_proba`` with the pipeline,
  ``to_csv``, one ``put_object``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from batchenv import batch_stack

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench-data"

WORKER = r"""
import json, os, sys, time, io
job, key = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.environ["BENCH_DIR"])
from drain import drained_stdout, peak_reset, rss

import boto3
s3 = boto3.client("s3")
if job == "sklambda":
    from sklambda_tools.local import LambdaContext, load_handler
    app = load_handler(os.environ["BENCH_HANDLER"])
    # what S3's notification carries: the key, its ETag, size and version
    obj = json.loads(os.environ["BENCH_OBJECT"])
    event = {"Records": [{"s3": {"bucket": {"name": os.environ["BENCH_BUCKET"]},
                                 "object": {"key": key, **obj}}}]}
else:
    import joblib, pandas as pd
    model = joblib.load(os.path.join(os.environ["SKLAMBDA_MODEL_DIR"], "model.joblib"))
# Both jobs write their stdout (the handler: logs, metrics) into a pipe that another process
# drains, as on Lambda; the drain starts before the clock and the peak reset.
with drained_stdout():
    before = rss("VmRSS")
    peak_reset()
    started = time.perf_counter()
    if job == "sklambda":
        context = LambdaContext(function_name="batch", timeout_seconds=900)
        result = app.lambda_handler(event, context)
        assert result["results"][0]["status"] == "succeeded", result
    else:
        body = s3.get_object(Bucket=os.environ["BENCH_BUCKET"], Key=key)["Body"].read()
        frame = pd.read_csv(io.BytesIO(body))
        proba = model.predict_proba(frame)
        out = pd.DataFrame(proba, columns=[f"probability_{c}" for c in model.classes_])
        out.insert(0, "label", model.classes_[proba.argmax(axis=1)])
        out.insert(0, "row", range(1, len(out) + 1))
        s3.put_object(Bucket=os.environ["BENCH_BUCKET"], Key="naive/" + key,
                      Body=out.to_csv(index=False).encode())
    elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "peak": rss("VmHWM"), "before": before}))
"""


def make_csv(path: Path, rows: int) -> None:
    from sklambda_tools.examples import penguins

    frame = penguins.load_frame()[penguins.FEATURES]
    lines = frame.to_csv(index=False, lineterminator="\n").splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    with path.open("w") as f:
        f.write(header)
        full, rest = divmod(rows, len(body))
        for _ in range(full):
            f.writelines(body)
        f.writelines(body[:rest])


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/batch.py")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    with batch_stack(BUCKET, SKLAMBDA_CHUNK_ROWS="10000") as (env, s3):
        work = ROOT / "out" / "bench"
        work.mkdir(parents=True, exist_ok=True)
        results: dict[str, Any] = {}
        for size in args.sizes:
            path = work / f"penguins-{size}.csv"
            if not path.exists():
                make_csv(path, size)
            key = f"incoming/penguins-{size}.csv"
            s3.upload_file(str(path), BUCKET, key)
            head = s3.head_object(Bucket=BUCKET, Key=key)
            env["BENCH_OBJECT"] = json.dumps(
                {"eTag": head["ETag"].strip('"'), "size": head["ContentLength"]}
            )
            runs: dict[str, list[dict[str, float]]] = {"sklambda": [], "naive baseline": []}
            print(
                f"{size:,} rows ({path.stat().st_size / 1e6:.0f} MB): {args.runs} runs each",
                flush=True,
            )
            for _ in range(args.runs):
                for job in runs:
                    s3.delete_objects(
                        Bucket=BUCKET,
                        Delete={"Objects": [{"Key": f"manifests/penguins-{size}.csv.json"}]},
                    )
                    worker = subprocess.run(
                        [sys.executable, "-c", WORKER, job.split()[0], key],
                        env=env,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    runs[job].append(json.loads(worker.stdout.strip().splitlines()[-1]))
            for job, values in runs.items():
                seconds = statistics.median(v["seconds"] for v in values)
                results[f"{job}, {size}"] = {
                    "rows_per_second": size / seconds,
                    "seconds": seconds,
                    "peak_mb": statistics.median(v["peak"] for v in values) / 1e6,
                    "before_mb": statistics.median(v["before"] for v in values) / 1e6,
                }

    print(
        "\n| Job, rows | Rows/s (median) | Seconds | Peak RSS | RSS before | vs baseline rows/s |"
    )
    print("|---|---|---|---|---|---|")
    for key, r in results.items():
        size = key.rsplit(", ", 1)[1]
        base = results[f"naive baseline, {size}"]["rows_per_second"]
        print(
            f"| {key} | {r['rows_per_second']:,.0f} | {r['seconds']:.2f} | {r['peak_mb']:.0f} MB "
            f"| {r['before_mb']:.0f} MB | {r['rows_per_second'] / base:.2f}x |"
        )
    if len(args.sizes) >= 2:
        small, large = f"sklambda, {args.sizes[0]}", f"sklambda, {args.sizes[-1]}"
        growth = results[large]["peak_mb"] / results[small]["peak_mb"] - 1
        ratio = min(
            results[f"sklambda, {s}"]["rows_per_second"]
            / results[f"naive baseline, {s}"]["rows_per_second"]
            for s in args.sizes
        )
        print("\nGoals:")
        verdict = {True: "met ", False: "MISSED"}
        print(f"  {verdict[ratio >= 1.5]} throughput >= 1.5x baseline (lowest: {ratio:.2f}x)")
        print(
            f"  {verdict[growth <= 0.10]} peak memory of the largest file within 10% of the "
            f"smallest's ({growth:+.1%})"
        )
        print(
            f"  {'met ' if results[large]['peak_mb'] < 512 else 'MISSED'} peak under 512 MB "
            f"({results[large]['peak_mb']:.0f} MB)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
