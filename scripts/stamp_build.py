"""After `sam build`: make the built template's ``ServingRuntime`` default the model's runtime.

`sam build --parameter-overrides` builds with a value but writes the template's default
unchanged, so `sam deploy` (guided or not) would pick the default layer, not the one the
model's manifest names. This rewrites that one default in ``<build-dir>/template.yaml`` and
checks the result.

    python scripts/built_runtime.py .aws-sam/build --runtime sklearn
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from sklambda_tools.local import load_template

PARAMETER = "ServingRuntime"
# The parameter's block as SAM writes it: two-space keys under Parameters, four-space fields.
BLOCK = re.compile(rf"(?m)^(  {PARAMETER}:\n(?:    .*\n)*?    Default: )(\S+)$")


def stamp(template: Path, runtime: str) -> None:
    text = template.read_text()
    allowed = load_template(template)["Parameters"][PARAMETER]["AllowedValues"]
    if runtime not in allowed:
        raise ValueError(f"{PARAMETER} must be one of {', '.join(allowed)}, not {runtime!r}")
    new, count = BLOCK.subn(lambda m: m.group(1) + runtime, text)
    if count != 1:
        raise ValueError(f"{template}: no single {PARAMETER} default to set")
    template.write_text(new)
    written = load_template(template)["Parameters"][PARAMETER]["Default"]
    if written != runtime:
        raise ValueError(f"{template}: {PARAMETER} default reads {written!r} after the edit")


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/built_runtime.py")
    parser.add_argument("build_dir", type=Path)
    parser.add_argument("--runtime", required=True)
    args = parser.parse_args()
    try:
        stamp(args.build_dir / "template.yaml", args.runtime)
    except (OSError, ValueError) as exc:
        print(f"scripts/built_runtime.py: {exc}", file=sys.stderr)
        return 2
    print(f"{args.build_dir}/template.yaml: {PARAMETER} defaults to {args.runtime}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
