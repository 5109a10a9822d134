"""Estimate the split path's wall time, requests and cost for big files (no AWS access).

A model, not a measurement: it takes throughput figures measured on this machine (or read from
a bench output) and the published prices and quotas below, and prints, for files of 1, 10 and
100 GB at Distributed Map concurrencies of 10, 100 and 1,000, a Markdown table of shares, wall
time, Lambda GB-seconds, Step Functions state transitions, S3 requests, cost by service and the
limit that bites next. A second table covers gzip inputs (plan and finish times only).
``docs/scale.md`` explains the model and its assumptions.

The model, for a plain (not gzip) file of ``S`` bytes with no rejected rows:

- shares: ``ceil(S / share)``, a share being ``BatchSplitBytes`` rounded up to whole chunks of
  ``BatchChunkRows`` rows (``sklambda.split`` cuts only at chunk ends);
- plan: ``S / min(planner rate, one S3 GET stream)`` plus a step overhead;
- a share: ``share / (rows_per_second * bytes_per_row)`` plus a step overhead; the map runs
  ``ceil(shares / min(concurrency, shares))`` waves of it;
- finish: one ``UploadPartCopy`` per share, made ``shares.ASSEMBLERS`` (8) at a time, at an
  assumed server-side copy rate per call: the output's bytes / (rate x min(8, shares)); plus
  the shares' results read 16 at a time (``shares.RESULT_READERS``) at an assumed latency,
  plus a step overhead;
- wall time: plan + waves + finish (the batch function's hand-off and Step Functions' own
  scheduling are left out);
- GB-seconds: memory times the time of every Lambda step (batch hand-off, plan, every share,
  finish);
- state transitions: the parent's states on the success path (Plan, Planned, Score, Finish,
  Finished, Done: 6), plus, per child execution, one for its start (the Distributed Map's
  charge) and one for its one state (ScoreShare); retries would add one each;
- S3 requests: counted from ``sklambda.shares`` and ``sklambda.split`` (see ``s3_requests``).

``--json PATH`` reads measured figures from a JSON object in one of two forms:

- the output of ``bench/split.py --json out/bench/split.json``: an object keyed by row count
  (a string), each value with ``rows``, ``bytes``, ``worker_rows_per_second`` and
  ``plan_seconds`` (among others). The entry with the most rows is used: ``rows_per_second``
  is its ``worker_rows_per_second`` (the slowest share's), ``bytes_per_row`` is
  ``bytes / rows``, ``plan_mb_per_second`` is ``bytes / plan_seconds / 1e6`` (moto's server
  on loopback, so no real network in it);
- a flat object whose keys, all optional, are the figures themselves:
  ``rows_per_second`` (the batch core's rows per second on one worker), ``bytes_per_row``
  (input bytes per row of that file), ``plan_mb_per_second`` (the planner's rate on a plain
  CSV, MB of content per second), ``plan_gzip_mb_per_second`` (the planner's rate on a gzip
  CSV, MB of decompressed content per second, staging the shares included) and
  ``compress_mb_per_second`` (gzip compression as the finisher runs it,
  ``batchio.gzip_writer`` at level ``batchio.GZIP_LEVEL``, MB of predictions per second).

An option given on the command line wins over the file, and the file over the defaults (the
figures of 2026-12 on the development machine, 2 cores). ``--measure-gzip`` measures the last
one here (``batchio.gzip_writer`` on synthetic predictions, in process) and uses it.

Run: ``.venv/bin/python bench/scale_costs.py`` (``--help`` for the options).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sklambda.batchio import GZIP_LEVEL, gzip_writer

# --- published prices (US East (N. Virginia), on-demand, free tiers ignored) ------------------

# "$0.0000166667 for every GB-second", x86, first 6 billion GB-seconds a month: AWS Lambda
# pricing, https://aws.amazon.com/lambda/pricing/ (the stored copy renders the table from a
# price feed; the figure is the one "How AWS Pricing Works - Lambda",
# https://docs.aws.amazon.com/whitepapers/latest/how-aws-pricing-works/lambda.html, rounds to
# $0.00001667, and third-party summaries of the page quote in full).
LAMBDA_GB_SECOND_USD = 0.0000166667
# "$0.20 per 1 million requests": same two pages.
LAMBDA_REQUEST_USD = 0.20 / 1_000_000
# "$0.0250" per 1,000 state transitions, US East (N. Virginia), Standard workflows: AWS Step
# Functions pricing, https://aws.amazon.com/step-functions/pricing/ ("including retries").
SFN_TRANSITION_USD = 0.025 / 1_000
# S3 Standard, "PUT, COPY, POST, LIST requests (per 1,000 requests)" $0.005 and "GET, SELECT,
# and all other requests (per 1,000 requests)" $0.0004: Amazon S3 pricing,
# https://aws.amazon.com/s3/pricing/. Unconfirmed for us-east-1 on the page itself (the stored
# copy shows another region, $0.0055 and $0.00044); $0.005 / $0.0004 are the figures AWS
# solution guidance and third-party summaries give for US East. The page also says "DELETE and
# CANCEL requests are free" and LIST is charged as PUT; a DeleteObjects call (a POST) is
# counted as a PUT-class request here, which may overstate it.
S3_PUT_USD = 0.005 / 1_000
S3_GET_USD = 0.0004 / 1_000

# --- published limits -------------------------------------------------------------------------

# "Code can run for up to 15 minutes in a single invocation": Lambda quotas,
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html (the template's
# BatchTimeout is at most 900).
LAMBDA_TIMEOUT_S = 900
# "Concurrent executions: 1,000" (default, can be raised): the same page; it warns that new
# accounts start lower.
ACCOUNT_CONCURRENCY = 1_000
# The stack's reserved concurrency by default (predict 50, batch 10, drift 1, hook 1: README,
# "Known limits"); the split function is unreserved and shares what is left.
STACK_RESERVED = 62
# "1,000 execution environment instances every 10 seconds" per function: Lambda scaling
# behavior, https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html.
LAMBDA_SCALING_PER_10S = 1_000
# "Maximum number of parallel Map Run child executions: 10,000" (hard) and "Maximum number of
# open Map Runs: 1000" (hard): Step Functions service quotas,
# https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html.
MAP_CHILDREN_MAX = 10_000
OPEN_MAP_RUNS_MAX = 1_000
# StateTransition, Standard, US East (N. Virginia): bucket 5,000, refill 5,000 per second: same
# page.
SFN_TRANSITIONS_PER_S = 5_000
# "at least 3,500 PUT/COPY/POST/DELETE or 5,500 GET/HEAD requests per second per partitioned
# Amazon S3 prefix": Best practices design patterns: optimizing Amazon S3 performance,
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html.
S3_PUT_PER_PREFIX_S = 3_500
S3_GET_PER_PREFIX_S = 5_500
# "Maximum number of parts per upload: 10,000"; "Part size: 5 MiB to 5 GiB"; "Maximum object
# size": 5 TiB on earlier copies, 48.8 TiB on the current one: Amazon S3 multipart upload
# limits, https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html.
S3_MAX_PARTS = 10_000
S3_MIN_PART = 5 * 1024**2
S3_MAX_PART = 5 * 1024**3

# --- assumptions (not published, not measured here) -------------------------------------------

# One S3 GET stream's rate in Lambda. AWS's S3 guidance, for EC2 in the Region: "Make one
# concurrent request for each 85-90 MB/s of desired network throughput" (Performance guidelines
# for Amazon S3,
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance-guidelines.html).
# Lambda's network bandwidth is not published: unconfirmed for Lambda.
STREAM_MB_S = 85.0
# UploadPartCopy of a share's part, server side, per call (the finisher makes
# shares.ASSEMBLERS calls at a time, and the model assumes each keeps this rate): AWS
# publishes no rate.
COPY_MB_S = 100.0  # an assumption, unconfirmed
# One small S3 request (a share's result JSON): an assumption.
REQUEST_LATENCY_S = 0.05
# A Lambda step's fixed cost (cold start, the S3 round trips around the data): an assumption;
# the onnx predict function's local cold start is 0.26 s (docs/benchmarks.md).
STEP_OVERHEAD_S = 1.0
# Predictions per input byte: an assumption. The penguin file's predictions (row, label and
# three probabilities at full precision, 77 bytes a row) measured 2.16x its 36 bytes of input
# a row (make bench, 2026-12-02); a file with more or wider columns has a lower ratio
# (--output-ratio).
OUTPUT_RATIO = 1.0

RESULT_READERS = 16  # sklambda.shares.RESULT_READERS
ASSEMBLERS = 8  # sklambda.shares.ASSEMBLERS: parts uploaded or copied at a time
PARENT_TRANSITIONS = 6  # Plan, Planned, Score, Finish, Finished, Done
CHILD_TRANSITIONS = 2  # the child execution's start, ScoreShare
GB = 10**9
MB = 10**6


@dataclass(frozen=True)
class Figures:
    """What the model is fed: measured rates, settings and assumptions."""

    rows_per_second: float = 255_000.0
    # bench/split.py's and bench/batch.py's penguin file: 35,814,030 bytes for 1,000,000 rows
    bytes_per_row: float = 36.0
    plan_mb_per_second: float = 220.0
    plan_gzip_mb_per_second: float = 67.0
    # level 6: median of 5 runs of --measure-gzip on 2026-12-02, 12.5 to 14.7 MB/s
    compress_mb_per_second: float = 13.7
    stream_mb_per_second: float = STREAM_MB_S
    copy_mb_per_second: float = COPY_MB_S
    memory_mb: int = 2048
    share_bytes: int = 256 * 1024**2
    chunk_rows: int = 10_000
    output_ratio: float = OUTPUT_RATIO
    step_overhead_s: float = STEP_OVERHEAD_S

    @property
    def worker_bytes_per_second(self) -> float:
        return self.rows_per_second * self.bytes_per_row

    @property
    def share_size(self) -> int:
        """A share's bytes: BatchSplitBytes rounded up to whole chunks."""
        chunk = self.chunk_rows * self.bytes_per_row
        return int(math.ceil(self.share_bytes / chunk) * chunk)


@dataclass(frozen=True)
class Requests:
    get: int
    put: int  # PUT, COPY, POST and LIST


@dataclass(frozen=True)
class Row:
    size: int
    concurrency: int
    shares: int
    plan_s: float
    share_s: float
    waves: int
    finish_s: float
    gb_seconds: float
    lambda_requests: int
    transitions: int
    requests: Requests
    put_rate: float  # PUT-class requests per second under shares/ while the map runs
    next_limit: str

    @property
    def wall_s(self) -> float:
        return self.plan_s + self.waves * self.share_s + self.finish_s

    @property
    def lambda_usd(self) -> float:
        return self.gb_seconds * LAMBDA_GB_SECOND_USD + self.lambda_requests * LAMBDA_REQUEST_USD

    @property
    def sfn_usd(self) -> float:
        return self.transitions * SFN_TRANSITION_USD

    @property
    def s3_usd(self) -> float:
        return self.requests.get * S3_GET_USD + self.requests.put * S3_PUT_USD


def parts_of(size: float) -> int:
    """Parts of an ``S3Writer`` upload of ``size`` bytes (parts of at least 5 MiB)."""
    return max(1, math.ceil(size / S3_MIN_PART))


def s3_requests(f: Figures, size: int, shares: int) -> Requests:
    """The S3 requests of one plain file on the success path, no rejected rows.

    - batch function: the job record's GET (a 404);
    - plan: the source's GET; plan.json and summary.json PUTs;
    - the map's ItemReader: plan.json's GET;
    - each share: its result's GET (a 404), the header's and its range's GETs; the errors part
      (empty: one PUT), the predictions part (create, its 5 MiB parts, complete), the result
      PUT;
    - finish: the job record's GET, each result's GET; errors (empty parts: one PUT);
      predictions (create, one UploadPartCopy per share, complete; a last share under 5 MiB is
      read and uploaded instead); finishing.json's two PUTs (after each output); the job
      record's PUT; the cleanup's DeleteObjects of the versions the plan and the results name
      and finishing.json's, 1,000 objects a call (4 + 3 per share objects), with no
      ListObjectVersions (a failed file's cleanup lists the prefix).
    """
    out = f.share_size * f.output_ratio
    last = size - (shares - 1) * f.share_size
    tail = 1 if last * f.output_ratio < S3_MIN_PART and shares > 1 else 0
    get = 1 + 1 + 1 + 3 * shares + 1 + shares + tail
    worker_put = 1 + 1 + parts_of(out) + 1 + 1
    pages = math.ceil((4 + 3 * shares) / 1000)
    put = 2 + shares * worker_put + 1 + (1 + shares + 1) + 2 + 1 + pages
    return Requests(get, put)


def finish_seconds(f: Figures, size: float, shares: int) -> float:
    """The plain finish: the output's copies, ``ASSEMBLERS`` at a time, and the results."""
    copying = f.copy_mb_per_second * MB * min(ASSEMBLERS, shares)
    copy_s = size * f.output_ratio / copying
    results_s = math.ceil(shares / RESULT_READERS) * REQUEST_LATENCY_S
    return copy_s + results_s + f.step_overhead_s


def finish_limit(f: Figures) -> float:
    """The plain file size (bytes) whose finish takes ``LAMBDA_TIMEOUT_S``."""
    low, high = 0.0, 1e15
    for _ in range(200):
        middle = (low + high) / 2
        shares = max(1, math.ceil(middle / f.share_size))
        if finish_seconds(f, middle, shares) > LAMBDA_TIMEOUT_S:
            high = middle
        else:
            low = middle
    return low


def estimate(f: Figures, size: int, concurrency: int) -> Row:
    shares = max(1, math.ceil(size / f.share_size))
    running = min(concurrency, shares)
    waves = math.ceil(shares / running)
    plan_rate = min(f.plan_mb_per_second, f.stream_mb_per_second) * MB
    plan_s = size / plan_rate + f.step_overhead_s
    share_s = f.share_size / f.worker_bytes_per_second + f.step_overhead_s
    out = f.share_size * f.output_ratio
    finish_s = finish_seconds(f, size, shares)
    handoff_s = f.step_overhead_s
    gb = f.memory_mb / 1024
    gb_seconds = gb * (handoff_s + plan_s + shares * share_s + finish_s)
    transitions = PARENT_TRANSITIONS + CHILD_TRANSITIONS * shares
    requests = s3_requests(f, size, shares)
    put_rate = running * (parts_of(out) + 4) / share_s
    row = Row(
        size=size,
        concurrency=concurrency,
        shares=shares,
        plan_s=plan_s,
        share_s=share_s,
        waves=waves,
        finish_s=finish_s,
        gb_seconds=gb_seconds,
        lambda_requests=shares + 3,
        transitions=transitions,
        requests=requests,
        put_rate=put_rate,
        next_limit="",
    )
    return replace(row, next_limit=next_limit(f, row, running))


def next_limit(f: Figures, row: Row, running: int) -> str:
    """The limit nearest to its quota (the first one past it, if any)."""
    available = ACCOUNT_CONCURRENCY - STACK_RESERVED
    uses = [
        ("plan step", row.plan_s / LAMBDA_TIMEOUT_S, f"{row.plan_s:,.0f} s of {LAMBDA_TIMEOUT_S}"),
        (
            "finish step",
            row.finish_s / LAMBDA_TIMEOUT_S,
            f"{row.finish_s:,.0f} s of {LAMBDA_TIMEOUT_S}",
        ),
        (
            "a share's step",
            row.share_s / LAMBDA_TIMEOUT_S,
            f"{row.share_s:,.0f} s of {LAMBDA_TIMEOUT_S}",
        ),
        (
            "output parts",
            row.shares / S3_MAX_PARTS,
            f"{row.shares:,} of {S3_MAX_PARTS:,} parts",
        ),
        (
            "account concurrency",
            running / available,
            f"{running:,} of {available:,} unreserved",
        ),
        (
            "S3 PUT rate, shares/ prefix",
            row.put_rate / S3_PUT_PER_PREFIX_S,
            f"{row.put_rate:,.0f} of {S3_PUT_PER_PREFIX_S:,}/s",
        ),
        (
            "parallel child executions",
            running / MAP_CHILDREN_MAX,
            f"{running:,} of {MAP_CHILDREN_MAX:,}",
        ),
    ]
    failing = sorted((u for u in uses if u[1] > 1), key=lambda u: -u[1])
    if failing:
        return "**fails**: " + "; ".join(f"{name} ({detail})" for name, _, detail in failing)
    name, use, detail = max(uses, key=lambda u: u[1])
    return f"{name} ({detail}, {use:.0%})"


def minutes(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def table(f: Figures, sizes: list[float], concurrencies: list[int]) -> str:
    lines = [
        "| File | Concurrency | Shares | Plan | Waves x share | Finish | Wall time | Lambda GB-s "
        "| State transitions | S3 GET / PUT-class | Lambda $ | Step Functions $ | S3 $ | Total $ "
        "| Next limit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for gb in sizes:
        for c in concurrencies:
            r = estimate(f, int(gb * GB), c)
            total = r.lambda_usd + r.sfn_usd + r.s3_usd
            lines.append(
                f"| {gb:g} GB | {c:,} | {r.shares:,} | {minutes(r.plan_s)} "
                f"| {r.waves:,} x {r.share_s:.0f} s | {minutes(r.finish_s)} "
                f"| {minutes(r.wall_s)} | {r.gb_seconds:,.0f} | {r.transitions:,} "
                f"| {r.requests.get:,} / {r.requests.put:,} | {r.lambda_usd:.4f} "
                f"| {r.sfn_usd:.4f} | {r.s3_usd:.4f} | {total:.4f} | {r.next_limit} |"
            )
    return "\n".join(lines)


def gzip_table(f: Figures, sizes: list[float]) -> str:
    """gzip inputs: the plan stages the decompressed shares; the finish compresses the
    predictions again as one stream, in one Lambda."""
    plan_rate = min(f.plan_gzip_mb_per_second, f.stream_mb_per_second) * MB
    compress_rate = min(f.compress_mb_per_second, f.stream_mb_per_second) * MB
    lines = [
        "| Content (decompressed) | Plan | Finish (re-compression) | Verdict |",
        "|---|---|---|---|",
    ]
    for gb in sizes:
        size = gb * GB
        plan_s = size / plan_rate + f.step_overhead_s
        finish_s = size * f.output_ratio / compress_rate + f.step_overhead_s
        worst = max(plan_s, finish_s)
        step = "finish" if finish_s >= plan_s else "plan"
        if worst > LAMBDA_TIMEOUT_S:
            verdict = f"**fails in the {step} step** ({worst:,.0f} s of {LAMBDA_TIMEOUT_S})"
        else:
            verdict = f"fits ({step} {worst:,.0f} s of {LAMBDA_TIMEOUT_S})"
        lines.append(f"| {gb:g} GB | {minutes(plan_s)} | {minutes(finish_s)} | {verdict} |")
    return "\n".join(lines)


def thresholds(f: Figures) -> str:
    """The file sizes at which each single-Lambda step reaches the timeout."""
    plain = min(f.plan_mb_per_second, f.stream_mb_per_second) * MB
    gz_plan = min(f.plan_gzip_mb_per_second, f.stream_mb_per_second) * MB
    compress = min(f.compress_mb_per_second, f.stream_mb_per_second) * MB
    budget = LAMBDA_TIMEOUT_S - f.step_overhead_s
    parts = S3_MAX_PARTS * f.share_size
    return "\n".join(
        [
            f"- plain plan step reaches {LAMBDA_TIMEOUT_S} s at {budget * plain / GB:,.1f} GB",
            f"- plain finish step ({ASSEMBLERS} copies at a time) reaches it at "
            f"{finish_limit(f) / GB:,.1f} GB",
            f"- gzip plan step reaches it at {budget * gz_plan / GB:,.1f} GB of content",
            f"- gzip finish step reaches it at {budget * compress / f.output_ratio / GB:,.1f} GB"
            " of content",
            f"- {S3_MAX_PARTS:,} output parts (one per share) at {parts / GB:,.0f} GB",
            f"- a share's step at {f.share_size / MB:,.0f} MB takes "
            f"{f.share_size / f.worker_bytes_per_second:,.0f} s of {LAMBDA_TIMEOUT_S} s "
            f"(a share could be {budget * f.worker_bytes_per_second / GB:,.1f} GB at this rate)",
        ]
    )


def measure_gzip(megabytes: int = 20) -> tuple[float, float]:
    """MB/s of ``batchio.gzip_writer`` (what both batch paths compress with, level
    ``batchio.GZIP_LEVEL``) on synthetic CSV predictions (row, label, three probabilities with
    nine significant digits), and how many times smaller the stream is."""
    rng = random.Random(0)
    lines = ["row,label,probability_Adelie,probability_Chinstrap,probability_Gentoo\n"]
    size, row = len(lines[0]), 0
    while size < megabytes * MB:
        row += 1
        p = [rng.random() for _ in range(3)]
        total = sum(p)
        line = f"{row},Adelie,{p[0] / total:.9g},{p[1] / total:.9g},{p[2] / total:.9g}\n"
        lines.append(line)
        size += len(line)
    data = "".join(lines).encode()
    sink = io.BytesIO()
    started = time.perf_counter()
    with gzip_writer(sink) as stream:
        for at in range(0, len(data), 1 << 20):
            stream.write(data[at : at + (1 << 20)])
    seconds = time.perf_counter() - started
    return len(data) / seconds / MB, len(data) / len(sink.getvalue())


JSON_KEYS = (
    "rows_per_second",
    "bytes_per_row",
    "plan_mb_per_second",
    "plan_gzip_mb_per_second",
    "compress_mb_per_second",
)


def from_json(path: Path) -> dict[str, float]:
    """The figures in a bench output: ``bench/split.py``'s (keyed by row count), or flat."""
    loaded = json.loads(path.read_text())
    if not isinstance(loaded, dict):
        raise SystemExit(f"{path}: not a JSON object")
    entries = [v for v in loaded.values() if isinstance(v, dict) and "rows" in v]
    if not entries:
        return {k: float(loaded[k]) for k in JSON_KEYS if k in loaded}
    largest = max(entries, key=lambda entry: entry["rows"])
    try:
        rows, size = float(largest["rows"]), float(largest["bytes"])
        return {
            "rows_per_second": float(largest["worker_rows_per_second"]),
            "bytes_per_row": size / rows,
            "plan_mb_per_second": size / float(largest["plan_seconds"]) / MB,
        }
    except KeyError as exc:
        raise SystemExit(f"{path}: the entry of {largest['rows']} rows has no {exc}") from exc


def figures(args: argparse.Namespace) -> Figures:
    values: dict[str, Any] = {}
    if args.json is not None:
        values.update(from_json(Path(args.json)))
    for name in (*JSON_KEYS, "stream_mb_per_second", "copy_mb_per_second", "output_ratio"):
        given = getattr(args, name)
        if given is not None:
            values[name] = given
    for name in ("memory_mb", "share_bytes", "chunk_rows"):
        given = getattr(args, name)
        if given is not None:
            values[name] = given
    return Figures(**values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/scale_costs.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", type=Path, help="read measured figures from a bench output")
    parser.add_argument("--rows-per-second", type=float)
    parser.add_argument("--bytes-per-row", type=float)
    parser.add_argument("--plan-mb-per-second", type=float)
    parser.add_argument("--plan-gzip-mb-per-second", type=float)
    parser.add_argument("--compress-mb-per-second", type=float)
    parser.add_argument("--stream-mb-per-second", type=float, help="one S3 GET stream in Lambda")
    parser.add_argument("--copy-mb-per-second", type=float, help="UploadPartCopy, per call")
    parser.add_argument("--output-ratio", type=float, help="prediction bytes per input byte")
    parser.add_argument("--memory-mb", type=int, help="BatchMemorySize (default 2048)")
    parser.add_argument("--share-bytes", type=int, help="BatchSplitBytes (default 268435456)")
    parser.add_argument("--chunk-rows", type=int, help="BatchChunkRows (default 10000)")
    parser.add_argument("--sizes-gb", type=float, nargs="+", default=[1, 10, 100])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument(
        "--measure-gzip", action="store_true", help="measure batchio.gzip_writer here"
    )
    args = parser.parse_args(argv)
    if args.measure_gzip:
        rate, ratio = measure_gzip()
        print(
            f"gzip level {GZIP_LEVEL} (batchio.gzip_writer) on synthetic predictions: "
            f"{rate:.1f} MB/s, {ratio:.1f}x smaller"
        )
        if args.compress_mb_per_second is None:
            args.compress_mb_per_second = round(rate, 1)
    f = figures(args)
    print(
        f"Figures: {f.rows_per_second:,.0f} rows/s x {f.bytes_per_row:.3g} B/row = "
        f"{f.worker_bytes_per_second / MB:.1f} MB/s a worker; planner "
        f"{f.plan_mb_per_second:.3g} MB/s (gzip {f.plan_gzip_mb_per_second:.3g}); one S3 stream "
        f"{f.stream_mb_per_second:g} MB/s; UploadPartCopy {f.copy_mb_per_second:g} MB/s a call, "
        f"{ASSEMBLERS} at a time; gzip level {GZIP_LEVEL} {f.compress_mb_per_second:g} MB/s; "
        f"{f.memory_mb} MB; shares of "
        f"{f.share_size / MB:,.1f} MB (BatchSplitBytes {f.share_bytes:,} in whole chunks of "
        f"{f.chunk_rows:,} rows); output {f.output_ratio:g} x input.\n"
    )
    print(table(f, args.sizes_gb, args.concurrency))
    print("\ngzip inputs (sizes are decompressed content):\n")
    print(gzip_table(f, args.sizes_gb))
    print("\nWhere each single-Lambda step reaches the timeout:\n")
    print(thresholds(f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
