"""Drift of a data file against the packaged model's baselines (`make drift DATA=<csv>`).

The rows are read and validated as the batch job reads them, scored with the model, counted
into the baselines' bins, and compared feature by feature (and for the predictions) with the
population stability index. Rows that fail validation are counted apart.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from sklambda.batchio import read_csv
from sklambda.drift import MIN_ROWS, PREDICTION, PSI_THRESHOLD, count, drift_counter
from sklambda.errors import FileError, SklambdaError
from sklambda.model import Model, load
from sklambda.scoring import MODEL_REFUSALS, score_text, unscorable


def file_drift(
    model: Model, path: Path, *, threshold: float = PSI_THRESHOLD, min_rows: int = MIN_ROWS
) -> dict[str, Any]:
    """Drift of a CSV file's rows, read, validated and scored as the batch job does."""
    counter = drift_counter(model.manifest.baselines)
    opener = gzip.open if path.suffix == ".gz" else open
    invalid = 0
    with opener(path, "rt", encoding="utf-8-sig", newline="") as text:
        names, chunks = read_csv(text, 10_000)
        header = model.schema.check_header(names, unknown="ignore")
        for chunk in chunks:
            invalid += len(chunk.broken)
            n = len(chunk.numbers)
            if not n:
                continue
            cells = {name: chunk.columns[header.positions[name]] for name in model.schema.names}
            scored = score_text(model, cells, n)
            invalid += len(scored.rejected_rows)
            count(counter, scored)
    report = counter.report(threshold=threshold, min_rows=min_rows)
    report["rows_invalid"] = invalid
    report["model"] = {"name": model.name, "version": model.version}
    return report


def render(report: dict[str, Any]) -> str:
    """The report as a short table, worst feature first."""
    lines = [
        f"{report['rows']} rows ({report.get('rows_invalid', 0)} invalid rows not counted) against "
        f"{report['model']['name']} {report['model']['version']}'s baselines: {report['status']}"
    ]
    if report["status"] == "not enough data":
        lines.append(f"  at least {report['min_rows']} rows are needed for a verdict")
        return "\n".join(lines)
    features = sorted(report["features"].items(), key=lambda kv: kv[1]["psi"], reverse=True)
    entries = (
        [*features, (PREDICTION, report["prediction"])] if "prediction" in report else features
    )
    for name, entry in entries:
        flag = "DRIFT" if entry["drifted"] else "ok"
        bar = "#" * min(40, int(entry["psi"] * 40))
        lines.append(f"  {name:<20} PSI {entry['psi']:7.3f}  {flag:<5} {bar}")
        if entry["drifted"]:
            moved = sorted(
                entry["bins"], key=lambda b: abs(b["actual"] - b["expected"]), reverse=True
            )
            for b in moved[:2]:
                lines.append(
                    f"      {b['bin']:<24} expected {b['expected']:.1%}, now {b['actual']:.1%}"
                )
    lines.append(f"  (PSI above {report['threshold']} counts as drift)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when there is no drift (or too little data), 1 on drift, 2 for a file it cannot
    read."""
    parser = argparse.ArgumentParser(prog="python -m sklambda_tools.drift")
    parser.add_argument("--data", type=Path, required=True, help="a CSV file (or .csv.gz)")
    parser.add_argument("--model", type=Path, default=Path("models/penguins"))
    parser.add_argument("--threshold", type=float, default=PSI_THRESHOLD)
    parser.add_argument("--min-rows", type=int, default=MIN_ROWS)
    parser.add_argument("--json", type=Path, help="also write the full report here")
    args = parser.parse_args(argv)
    try:
        model = load(args.model)
    except SklambdaError as exc:  # a missing export, a module the pickle needs, a bad hash
        print(f"drift: {args.model}: {exc}", file=sys.stderr)
        return 2
    try:
        report = file_drift(model, args.data, threshold=args.threshold, min_rows=args.min_rows)
    except (FileError, OSError, UnicodeDecodeError) as exc:
        print(f"drift: {args.data}: {exc}", file=sys.stderr)
        return 2
    except MODEL_REFUSALS as exc:  # exit 1 means drift; a failure to check is 2
        print(
            f"drift: {args.data}: the model cannot score its rows: {unscorable(exc)}",
            file=sys.stderr,
        )
        return 2
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=_plain))
    return 1 if report["status"] == "drift" else 0  # a script or a CI step can act on drift


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


if __name__ == "__main__":
    sys.exit(main())
