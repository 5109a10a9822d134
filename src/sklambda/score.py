"""Score JSON Lines with a packaged model, offline: ``python -m sklambda.score MODEL_DIR``.

For a gateway, a cron job or an application that has the model beside it and no server. Each
line of standard input is one instance, as in the API and batch JSON Lines files; each line of
standard output answers the input line of that number (``row``, 1-based), in order:

- ``{"row": n, "label": ..., "probabilities": {...}}`` (a regressor: ``{"row": n, "value": ...}``):
  the API's prediction for that instance, from the same scoring core;
- ``{"row": n, "errors": [{"field": ..., "reason": ...}]}``: why it was not scored, with the
  API's reasons (a line that is not JSON, or not UTF-8, too: the batch reader's reasons).

A blank line gets no answer (its number is skipped), as in batch. Unknown features are refused,
as the API refuses them (``--unknown ignore`` drops them, as batch does). Answers are written a
chunk at a time (``--chunk-rows``), so memory does not grow with the input.

It imports the model's runtime and numpy, nothing of AWS, Powertools, pandas or scikit-learn
(with the ``onnx`` runtime). Exit status 0 when every line was answered, rejected rows
included; 2, with one line on standard error, for a model that does not load or a bad option.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

from sklambda.batchio import MAX_LINE_BYTES, Chunk, read_jsonl
from sklambda.errors import SklambdaError
from sklambda.model import Model, load
from sklambda.schema import UnknownPolicy
from sklambda.scoring import Scored, formatter, score_records, unscorable

PROG = "python -m sklambda.score"


def answers(model: Model, chunk: Chunk, unknown: UnknownPolicy = "reject") -> Iterator[str]:
    """The output lines of one chunk, in row order."""
    lines: dict[int, str] = {}
    reasons: dict[int, list[dict[str, Any]]] = {}
    for number, _, reason in chunk.broken:
        reasons.setdefault(number, []).append({"field": None, "reason": reason})
    for numbers, outcome in _scored(model, chunk, unknown):
        if isinstance(outcome, str):  # the model raised for this one row
            reasons.setdefault(numbers[0], []).append({"field": None, "reason": outcome})
            continue
        for error in outcome.errors:
            entry = {"field": error.field, "reason": error.reason}
            reasons.setdefault(numbers[error.row], []).append(entry)
        rows = [numbers[i] for i in outcome.rows]
        text = formatter(model).json_rows(rows, {}, outcome.scores)
        lines.update(zip(rows, text.splitlines(), strict=True))
    for number, found in reasons.items():
        errors = {"row": number, "errors": found}
        lines[number] = json.dumps(errors, separators=(",", ":"), allow_nan=False)
    for number in sorted(lines):
        yield lines[number]


def _scored(
    model: Model, chunk: Chunk, unknown: UnknownPolicy
) -> Iterator[tuple[list[int], Scored | str]]:
    """The chunk scored in one go or, when the model raises, row by row: a row it cannot
    score is a rejected row, with the batch function's reason (``unscorable``)."""
    if not chunk.records:
        return
    try:
        yield chunk.numbers, score_records(model, chunk.records, unknown=unknown)
        return
    except SklambdaError:
        raise
    except Exception:  # a row the model cannot take: find it
        pass
    for number, record in zip(chunk.numbers, chunk.records, strict=True):
        try:
            yield [number], score_records(model, [record], unknown=unknown)
        except SklambdaError:
            raise
        except Exception as exc:
            yield [number], unscorable(exc)


def run(
    model: Model, source: IO[bytes], out: IO[str], *, unknown: UnknownPolicy, chunk_rows: int
) -> int:
    """Answer every line of ``source`` on ``out``; the number of lines answered."""
    count = 0
    for chunk in read_jsonl(source, chunk_rows, max_line_bytes=MAX_LINE_BYTES):
        text = list(answers(model, chunk, unknown))
        out.write("".join(line + "\n" for line in text))
        out.flush()
        count += len(text)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a packaged model's directory (with model.json)")
    parser.add_argument("--runtime", choices=["onnx", "sklearn"], help="the manifest's by default")
    parser.add_argument("--unknown", choices=["reject", "ignore"], default="reject")
    parser.add_argument("--chunk-rows", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.chunk_rows < 1:
        parser.error("--chunk-rows must be at least 1")
    try:
        model = load(args.model_dir, runtime=args.runtime)
    except (SklambdaError, OSError) as exc:
        print(f"{PROG}: the model does not load: {exc}", file=sys.stderr)
        return 2
    run(model, sys.stdin.buffer, sys.stdout, unknown=args.unknown, chunk_rows=args.chunk_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
