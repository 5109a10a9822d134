"""`make batch FILE=<local file>`: score a file the way the deployed stack would, on a laptop.

Starts moto's S3 (and SQS, for the dead-letter queue) on loopback, creates the data bucket named
as template.yaml names it, uploads the file under ``incoming/``, hands the batch function the
S3 event the bucket notification would send, and downloads the predictions, the errors and the
manifest to ``out/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sklambda_tools.localbatch import run_batch

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/batch.py")
    parser.add_argument("file", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "penguins")
    args = parser.parse_args()
    done = run_batch(ROOT, args.file, args.out, model_dir=args.model.resolve())
    m = done.manifest or {}
    rows = m.get("rows", {})
    print(
        f"{args.file.name}: {m.get('status', done.result)} - read {rows.get('read')}, "
        f"scored {rows.get('scored')}, rejected {rows.get('rejected')}"
        + (f" ({m.get('reason')})" if m.get("reason") else "")
    )
    for kind, path in done.files.items():
        print(f"  {kind}: {path}")
    return 0 if m.get("status") == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
