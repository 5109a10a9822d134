"""`make demo`: train, gate and package the example model, then score a sample with it.

Runs on a laptop with no AWS account, no Docker and no network.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from sklambda.errors import IntegrityError, PackagingError
from sklambda.examples import penguins
from sklambda.model import load
from sklambda.package import frame_to_records, summary


def step(text: str) -> None:
    print(f"\n==> {text}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo.py")
    parser.add_argument(
        "--model",
        type=Path,
        default=Path("models/penguins"),
        help="the committed artifact whose gate file the demo reuses",
    )
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    args = parser.parse_args()
    started = time.perf_counter()

    step("train, gate and package the penguins model (fixed seed, 60/20/20 split)")
    work = args.out / "penguins"
    shutil.rmtree(args.out, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(args.model / "gate.toml", work / "gate.toml")
    try:
        packaged = penguins.package(work)
    except PackagingError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(summary(packaged))

    step("load it: SHA-256 of every file checked, runtime from the manifest")
    model = load(work)
    print(f"  {model.name} {model.version}: runtime {model.runtime}, classes {model.classes}")

    step("score a sample: four holdout birds, one from an unknown island, one malformed")
    test = penguins.split(penguins.load_frame()).test
    sample = test.sample(4, random_state=1)
    rows = frame_to_records(sample, model.manifest.features)
    rows.append({**rows[1], "island": "Atlantis"})
    rows.append({**rows[0], "bill_length_mm": "long"})
    truth = [*sample[penguins.TARGET], sample[penguins.TARGET].iloc[1], None]
    checked = model.validate(rows)
    scores = model.score_columns(checked.columns)
    assert scores.labels is not None and scores.probabilities is not None
    for i, label, proba in zip(checked.rows, scores.labels, scores.probabilities, strict=True):
        print(f"  row {i}: {label:<10} p={proba.max():.3f}  (true: {truth[i]})")
    for e in checked.errors:
        print(f"  row {e.row}: rejected: {e.path()}: {e.reason}")
    for n in checked.notes:
        print(f"  row {n.row}: note: {n.path()}: {n.reason}")

    step("the two runtimes agree on the whole holdout")
    holdout = frame_to_records(test, model.manifest.features)
    onnx = load(work, runtime="onnx").score(holdout)
    ref = load(work, runtime="sklearn").score(holdout)
    assert onnx.probabilities is not None and ref.probabilities is not None
    same = bool(np.all(onnx.labels == ref.labels))
    diff = float(np.abs(onnx.probabilities - ref.probabilities).max())
    print(f"  {len(holdout)} rows: identical labels {same}, max probability difference {diff:.1e}")

    step("a tampered artifact is refused")
    (work / "model.onnx").write_bytes((work / "model.onnx").read_bytes() + b"\0")
    try:
        load(work)
    except IntegrityError as exc:
        print(f"  refused: {exc}")
    else:
        print("  ERROR: a tampered artifact loaded", file=sys.stderr)
        return 1

    print(f"\ndemo finished in {time.perf_counter() - started:.1f} s; artifact in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
