"""`make bench` (cold start part): fresh interpreter to first answer, from the built artifacts.

Runs the predict function as `make test-built` does (a fresh ``python -I -S`` whose path holds
only the built function and its layers, ``-B`` so that no bytecode is written, as on Lambda's
read-only file system) with each runtime layer, with the compiled bytecode the build ships and
without any (``__pycache__`` removed; the sklearn layer rebuilt from sources), and times it from
spawn to the answer line. Needs ``make build-host``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from drain import drain_pipe

from sklambda_tools.local import TemplateResolver, built_function_command, load_template

ROOT = Path(__file__).resolve().parents[1]


def strip_bytecode(source: Path, target: Path) -> None:
    shutil.copytree(
        source, target, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


def variant_build(build: Path, work: Path, runtime: str, bytecode: bool) -> Path:
    """A build directory whose runtime and code layers have (or lack) bytecode."""
    out = work / f"{runtime}-{'pyc' if bytecode else 'source'}"
    if out.exists():
        return out
    out.mkdir(parents=True)
    layer = "OnnxRuntimeLayer" if runtime == "onnx" else "SklearnRuntimeLayer"
    for name in ("template.yaml", "PredictFunction", "ModelLayer"):
        (out / name).symlink_to(build / name)
    if bytecode:
        (out / "CodeLayer").symlink_to(build / "CodeLayer")
        (out / layer).symlink_to(build / layer)
        return out
    strip_bytecode(build / "CodeLayer", out / "CodeLayer")
    if runtime == "onnx":
        strip_bytecode(build / layer, out / layer)
    else:  # the shipped sklearn layer has no sources: build one that has
        env = {
            **os.environ,
            "ARTIFACTS_DIR": str(out / layer),
            "SKLAMBDA_BYTECODE": "none",
            "SKLAMBDA_ARCH": "arm64" if os.uname().machine == "aarch64" else "x86_64",
            "SKLAMBDA_PYTHON": "{}.{}".format(*sys.version_info[:2]),
        }
        subprocess.run(
            ["make", "-s", "-C", str(ROOT / "layers"), "build-SklearnRuntimeLayer"],
            env=env,
            check=True,
        )
    return out


def first_answer(command: list[str], env: dict[str, str], event: str, stderr: int) -> float:
    """Seconds from spawn to the answer line. The function's stdout (its logs and metrics, then
    the answer) is a pipe this process reads; ``stderr`` is a pipe another process drains."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=env,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(event)
    proc.stdin.close()
    for line in proc.stdout:
        if line.startswith("@@sklambda-result@@"):
            elapsed = time.perf_counter() - started
            if json.loads(line.split(" ", 1)[1])["statusCode"] != 200:
                raise RuntimeError("the function did not answer 200")
            proc.wait()
            return elapsed
    raise RuntimeError("the function gave no answer")


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/cold_start.py")
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build-host")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    build = args.build_dir.resolve()
    work = ROOT / "out" / "bench" / "cold"
    shutil.rmtree(work, ignore_errors=True)
    event = (ROOT / "events" / "predict-single.json").read_text()
    python = str(getattr(sys, "_base_executable", sys.executable))
    template = load_template(build / "template.yaml")
    cases: dict[str, tuple[list[str], dict[str, str]]] = {}
    for runtime in ("onnx", "sklearn"):
        resolver = TemplateResolver(template, {"ServingRuntime": runtime})
        for bytecode in (True, False):
            directory = variant_build(build, work, runtime, bytecode)
            name = f"{runtime}, {'compiled bytecode' if bytecode else 'no bytecode'}"
            cases[name] = built_function_command(
                directory, "PredictFunction", resolver, python=python, bytecode=False
            )
    print(f"cold start: {args.runs} fresh interpreters per case, interleaved", flush=True)
    times: dict[str, list[float]] = {name: [] for name in cases}
    with drain_pipe() as stderr:
        for _ in range(args.runs):
            for name, (command, env) in cases.items():
                times[name].append(first_answer(command, env, event, stderr))
    results: dict[str, Any] = {name: statistics.median(v) for name, v in times.items()}
    print("\n| Runtime layer, bytecode | Fresh interpreter to first answer (median) |")
    print("|---|---|")
    for name, seconds in results.items():
        print(f"| {name} | {seconds:.3f} s |")
    onnx = results["onnx, compiled bytecode"]
    ratio = results["sklearn, compiled bytecode"] / results["sklearn, no bytecode"]
    print("\nGoals:")
    print(f"  {'met ' if onnx < 0.3 else 'MISSED'} onnx under 0.3 s ({onnx:.3f} s)")
    print(
        f"  {'met ' if ratio <= 0.5 else 'MISSED'} sklearn compiled at most half of no bytecode "
        f"({ratio:.2f}x)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
