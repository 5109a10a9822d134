"""`make openapi`: write docs/openapi.json from the API's contract and the model's manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

from sklambda_tools.openapi import write

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/openapi.py")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "penguins")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "openapi.json")
    args = parser.parse_args()
    write(args.model, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
