"""`make invoke FN=<LogicalId> EVENT=<file>`: what `sam local invoke` does, without a container.

The function's environment comes from template.yaml (Globals merged, parameters at their
defaults or ``--param Name=Value``), ``/opt/model`` is the model directory, the context's
remaining time runs down from the function's timeout, and the result is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sklambda_tools.local import invoke_function

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/invoke.py")
    parser.add_argument("function", help="the function's logical id in template.yaml")
    parser.add_argument("event", type=Path, help="an event file (events/...)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "penguins")
    parser.add_argument("--param", action="append", default=[], help="Name=Value")
    args = parser.parse_args()
    result = invoke_function(
        ROOT,
        args.function,
        json.loads(args.event.read_text()),
        model_dir=args.model.resolve(),
        parameters=dict(p.split("=", 1) for p in args.param),
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
