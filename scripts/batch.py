"""`make batch FILE=<local file>`: score a file the way the deployed stack would, on a laptop.

Starts moto's S3 (and SQS, for the dead-letter queue) on loopback, creates the data bucket named
as template.yaml names it, uploads the file under ``incoming/``, hands the batch function the
S3 event the bucket notification would send, and downloads the predictions, the errors and the
manifest to ``out/``. A file over ``BatchSplitBytes`` (``--split-bytes`` sets it; ``make batch
SPLIT_BYTES=``) takes the split path: the batch function starts its execution, and the split
function's plan, workers (``--workers`` local processes) and finish run here, with a line of
progress per share.

A file that is not there, a directory, a file that cannot be read, or a model directory without
``model.json`` is refused before anything starts: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sklambda.errors import ModelLoadError, RuntimeUnavailableError
from sklambda_tools.localbatch import run_batch

ROOT = Path(__file__).resolve().parents[1]
PROG = "scripts/batch.py"


def unusable(file: str, model: Path) -> str | None:
    """Why the file (or the model) cannot be scored, in one line; None if it can."""
    if not file:
        return "no file given: make batch FILE=<a .csv, .jsonl, .csv.gz or .jsonl.gz file>"
    path = Path(file)
    try:
        if path.is_dir():
            return f"{file} is a directory, not a file: make batch FILE=<a file>"
        with path.open("rb") as f:
            f.read(1)
    except FileNotFoundError:
        return f"{file}: no such file"
    except PermissionError:
        return f"cannot read {file}: permission denied"
    except OSError as exc:
        return f"cannot read {file}: {exc.strerror or exc}"
    if not (model / "model.json").is_file():
        return f"no model.json in {model}: --model is a packaged model's directory"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(prog=PROG)
    parser.add_argument("file", help="the file to score (.csv, .jsonl, gzipped or not)")
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "penguins")
    parser.add_argument(
        "--runtime", choices=["onnx", "sklearn"], help="override the runtime the manifest names"
    )
    parser.add_argument(
        "--split-bytes",
        type=int,
        help="BatchSplitBytes: larger files take the split path (default: the template's)",
    )
    parser.add_argument("--workers", type=int, help="local worker processes of the split path")
    parser.add_argument(
        "--chunk-rows", type=int, help="BatchChunkRows (a split file's shares are whole chunks)"
    )
    args = parser.parse_args()
    problem = unusable(args.file, args.model)
    if problem is not None:
        print(f"{PROG}: {problem}", file=sys.stderr)
        return 2
    args.file = Path(args.file)
    if args.split_bytes is not None and args.split_bytes < 1:
        print(f"{PROG}: --split-bytes must be at least 1", file=sys.stderr)
        return 2
    for name, value in (("--workers", args.workers), ("--chunk-rows", args.chunk_rows)):
        if value is not None and value < 1:
            print(f"{PROG}: {name} must be at least 1", file=sys.stderr)
            return 2
    overrides = {"ServingRuntime": args.runtime} if args.runtime else {}
    if args.split_bytes is not None:
        overrides["BatchSplitBytes"] = str(args.split_bytes)
    if args.chunk_rows is not None:
        overrides["BatchChunkRows"] = str(args.chunk_rows)

    def progress(done: int, total: int) -> None:
        print(f"  shares scored: {done} of {total}", file=sys.stderr, flush=True)

    try:
        done = run_batch(
            ROOT,
            args.file,
            args.out,
            model_dir=args.model.resolve(),
            parameters=overrides or None,
            workers=args.workers,
            progress=progress,
        )
    except (ModelLoadError, RuntimeUnavailableError) as exc:  # the function's init fails
        print(f"{PROG}: the batch function cannot load the model: {exc}", file=sys.stderr)
        return 2
    m = done.manifest or {}
    rows = m.get("rows", {})
    print(
        f"{args.file.name}: {m.get('status', done.result)} - read {rows.get('read')}, "
        f"scored {rows.get('scored')}, rejected {rows.get('rejected')}"
        + (f" ({m.get('reason')})" if m.get("reason") else "")
    )
    if done.split is not None:
        run = done.split
        took = ", ".join(f"{step} {seconds:.2f} s" for step, seconds in run.seconds.items())
        print(f"  split path: {run.shares} shares ({took})")
    for kind, path in done.files.items():
        print(f"  {kind}: {path}")
    return 0 if m.get("status") == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
