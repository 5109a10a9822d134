"""`make size`: the unpacked size of every function with its layers, against Lambda's limit.

Reads a `sam build` output (its template names each function's code and layers); counts the
files as Lambda unpacks them. Exits 1 when a function with its layers is over 250 MB.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sklambda_tools.local import TemplateResolver, load_template

LIMIT_MB = 250.0
MB = 1_000_000  # Lambda's quota is 250 MB; the figures are reported in decimal megabytes


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def sizes(build_dir: Path, parameters: dict[str, str]) -> dict[str, dict[str, float]]:
    template = load_template(build_dir / "template.yaml")
    resolver = TemplateResolver(template, parameters)
    out: dict[str, dict[str, float]] = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        parts = {"function code": tree_bytes(build_dir / logical_id) / MB}
        for layer in resolver.function_layers(logical_id):
            parts[layer] = tree_bytes(build_dir / layer) / MB
        out[logical_id] = parts
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/size.py")
    parser.add_argument("--build-dir", type=Path, default=Path(".aws-sam/build"))
    parser.add_argument("--parameter", action="append", default=[], help="Name=Value")
    args = parser.parse_args()
    parameters = dict(p.split("=", 1) for p in args.parameter)
    worst = 0.0
    for function, parts in sizes(args.build_dir, parameters).items():
        total = sum(parts.values())
        worst = max(worst, total)
        detail = ", ".join(f"{name} {mb:.1f}" for name, mb in parts.items())
        print(f"{function}: {total:.1f} MB unpacked ({detail})")
    verdict = "within" if worst <= LIMIT_MB else "OVER"
    print(f"largest: {worst:.1f} MB, {verdict} Lambda's {LIMIT_MB:.0f} MB limit")
    return 0 if worst <= LIMIT_MB else 1


if __name__ == "__main__":
    sys.exit(main())
