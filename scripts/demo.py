"""`make demo`: the whole system on a laptop, with no AWS account and no Docker.

Trains, gates and packages the example model; serves it through the local API and sends a valid
and an invalid request; scores a sample file with bad rows in an embedded S3; shows the metrics
the functions emitted and the drift of a shifted sample; takes a new model version through the
champion gate and the pre-traffic check; then stops everything it started.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pandas as pd
import requests

from sklambda.errors import IntegrityError
from sklambda.model import load
from sklambda_tools import edge, evaluate
from sklambda_tools.drift import file_drift, render
from sklambda_tools.errors import GateFailed, PackagingError
from sklambda_tools.examples import penguins
from sklambda_tools.localapi import LocalApi, Server
from sklambda_tools.localbatch import run_batch
from sklambda_tools.package import Packaged, build, plural
from sklambda_tools.rollout import check_in_process, tampered_copy

ROOT = Path(__file__).resolve().parents[1]
BIRD = json.loads((ROOT / "samples" / "request.json").read_text())["instances"][0]


def step(number: int, text: str) -> None:
    print(f"\n[{number}] {text}", flush=True)


def metrics_of(emitted: str) -> dict[str, float]:
    """Sum every metric in the embedded-metric-format lines a function printed."""
    totals: dict[str, float] = defaultdict(float)
    for line in emitted.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                name = metric["Name"]
                value = blob[name]
                label = f"{name}[{blob['Class']}]" if "Class" in blob else name
                totals[label] += sum(value) if isinstance(value, list) else value
    return dict(totals)


def package(work: Path, gate_from: Path) -> Packaged:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(gate_from / "gate.toml", work / "gate.toml")
    return penguins.package(work)


def candidate(c: float, more_data: bool) -> Any:
    """The example pipeline with another ``C``, fitted on the training split (and, for
    ``more_data``, the validation split too)."""
    splits = penguins.split(penguins.load_frame())
    rows = pd.concat([splits.train, splits.validation]) if more_data else splits.train
    return penguins.make_pipeline(c).fit(rows[penguins.FEATURES], rows[penguins.TARGET])


def rollout(champion: Path, out: Path) -> bool:
    """Two candidates through the champion gate, then the pre-traffic check of the one that
    passed: against itself, against a version still serving the champion, against a tampered
    copy. ``True`` when every step did what it should."""
    splits = penguins.split(penguins.load_frame())
    gate_file = champion / "gate.toml"
    rule = evaluate.read_champion(gate_file)

    def package(name: str, pipeline: Any) -> Packaged:
        dest = out / name
        shutil.rmtree(dest, ignore_errors=True)
        return build(
            pipeline,
            splits.test,
            penguins.TARGET,
            dest,
            name="penguins",
            description=penguins.DESCRIPTION,
            train=splits.train,
            gate=evaluate.read_gate(gate_file),
            gate_source=gate_file.name,
            champion=champion,
            champion_rule=rule,
        )

    try:
        package("penguins-weaker", candidate(0.5, more_data=False))
    except GateFailed as exc:
        print(f"    C=0.5: passes the validation gate, refused by the champion gate: {exc}")
    else:
        print("    ERROR: a candidate worse than the champion was packaged", file=sys.stderr)
        return False
    try:
        v2 = package("penguins-v2", candidate(10.0, more_data=True))
    except PackagingError as exc:
        print(f"    ERROR: the retrained candidate was refused: {exc}", file=sys.stderr)
        return False
    assert v2.manifest.champion is not None
    compared = ", ".join(
        f"{c.metric} {c.candidate:.4f} vs {c.champion:.4f}" for c in v2.manifest.champion.checks
    )
    print(f"    retrained on train+validation: {v2.manifest.version} passes ({compared})")
    tampered = tampered_copy(v2.path, out / "penguins-v2-tampered")
    for served, what, expected in (
        (v2.path, "the new version", "Succeeded"),
        (champion, "a version still serving the champion", "Failed"),
        (tampered, "a version with a tampered graph", "Failed"),
    ):
        with redirect_stdout(io.StringIO()):  # the handler's logs and metrics
            verdict = check_in_process(v2.path, served)
        print(f"    pre-traffic check of {what}: {verdict.status} in {verdict.seconds:.2f} s")
        print(f"        {verdict.reason[:160]}")
        if verdict.status != expected:
            print(f"    ERROR: expected {expected}", file=sys.stderr)
            return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/demo.py")
    parser.add_argument(
        "--model",
        type=Path,
        default=ROOT / "models" / "penguins",
        help="the committed artifact whose gate file the demo reuses",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    args = parser.parse_args()
    started = time.perf_counter()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    work = args.out / "penguins"

    step(1, "train, gate and package the penguins model (fixed seed; 60/20/20 split)")
    try:
        packaged = package(work, args.model)
    except PackagingError as exc:
        print(f"    refused: {exc}", file=sys.stderr)
        return 1
    m = packaged.manifest
    print(
        f"    {m.name} {m.version}: accuracy {m.metrics.values['accuracy']:.3f}, macro F1 "
        f"{m.metrics.values['macro_f1']:.3f}; gate passed ({plural(len(m.gate.checks), 'check')})"
    )
    print(f"    serving runtime {m.runtime.serving}: {m.runtime.reason}")

    emitted = io.StringIO()
    step(2, "start the local API (what API Gateway sends, the predict handler in-process)")
    # (no capture: there is no Firehose on a laptop, and a sampled request would count a failure)
    app = LocalApi(
        ROOT, model_dir=work.resolve(), parameters={"AuthMode": "NONE", "CaptureRate": "0"}
    )
    with Server(app, port=0) as server:
        native = [f"{method} {path}" for path, method in app.routes if not path.startswith("/v2")]
        v2 = len(app.routes) - len(native)
        print(
            f"    {server.url}: {', '.join(native)}, and {v2} Open Inference Protocol routes (/v2)"
        )
        # the same bird as MLServer's pandas codec sends it: one [1, 1] tensor per feature
        tensors = {
            "parameters": {"content_type": "pd"},
            "inputs": [
                {
                    "name": name,
                    "shape": [1, 1],
                    "datatype": "BYTES" if isinstance(value, str) else "FP64",
                    "data": [value],
                }
                for name, value in BIRD.items()
            ],
            "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
        }
        with redirect_stdout(emitted):
            valid = requests.post(f"{server.url}/predict", json={"instances": [BIRD]}, timeout=30)
            name = valid.json()["model"]["name"]
            inferred = requests.post(
                f"{server.url}/v2/models/{name}/infer", json=tensors, timeout=30
            )
            invalid = requests.post(
                f"{server.url}/predict",
                json={"instances": [{**BIRD, "bill_length_mm": "long", "colour": "black"}]},
                timeout=30,
            )
        prediction = valid.json()["predictions"][0]
        print(
            f"    POST /predict (a Biscoe bird)  -> {valid.status_code}: {prediction['label']}, "
            f"p={max(prediction['probabilities'].values()):.4f}"
        )
        label, proba = (o["data"] for o in inferred.json()["outputs"])
        print(
            f"    POST /v2/models/{name}/infer (the same bird, V2 tensors) -> "
            f"{inferred.status_code}: {label[0]}, p={max(proba):.4f}"
        )
        print(f"    POST /predict (two mistakes)   -> {invalid.status_code}:")
        for error in invalid.json()["errors"]:
            print(f"        {error['path']}: {error['reason']}")
    print("    local API stopped")

    step(3, "score samples/birds.csv in an embedded S3 (moto on loopback)")
    batch = run_batch(
        ROOT, ROOT / "samples" / "birds.csv", args.out / "s3", model_dir=work.resolve()
    )
    emitted.write(batch.emitted)
    manifest: dict[str, Any] = batch.manifest or {}
    rows = manifest.get("rows", {})
    print(
        f"    {manifest.get('status')}: read {rows.get('read')}, scored {rows.get('scored')}, "
        f"rejected {rows.get('rejected')} in {manifest.get('duration_seconds')} s"
    )
    for kind, path in batch.files.items():
        print(f"    {kind:<11} {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    step(4, "metrics the functions emitted (CloudWatch embedded metric format)")
    for name, value in sorted(metrics_of(emitted.getvalue()).items()):
        print(f"    {name:<28} {value:g}")

    step(5, "drift: samples/birds-shifted.csv (heavier birds, a new island, sex often missing)")
    report = file_drift(load(work), ROOT / "samples" / "birds-shifted.csv")
    for line in render(report).splitlines()[:7]:
        print(f"    {line}")

    step(6, "a new model version: the champion gate, then the pre-traffic check")
    if not rollout(work, args.out):
        return 1

    step(7, "the edge: the same model on the device (make edge; Node with onnxruntime-node)")
    bundle = edge.bundle(work, args.out / "edge")
    print(f"    {edge.describe(bundle)}")
    node = subprocess.run(
        ["node", str(ROOT / "edge" / "bin" / "sklambda-edge.mjs"), str(bundle.path), "--predict"],
        input=json.dumps({"instances": [BIRD]}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if node.returncode != 0:
        print(f"    ERROR: Node did not answer: {node.stderr.strip()[-500:]}", file=sys.stderr)
        return 1
    on_device = json.loads(node.stdout)["predictions"][0]
    same = on_device["label"] == prediction["label"] and all(
        abs(p - prediction["probabilities"][c]) <= 1e-5
        for c, p in on_device["probabilities"].items()
    )
    verdict = "the API's answer" if same else "NOT the API's answer"
    print(
        f"    in Node (a Biscoe bird)        -> {on_device['label']}, "
        f"p={max(on_device['probabilities'].values()):.4f} ({verdict})"
    )
    if not same:
        return 1

    step(8, "a tampered artifact is refused")
    graph = bytearray((work / "model.onnx").read_bytes())
    graph[-1] ^= 1  # one bit, same size: the SHA-256 check is what catches it
    (work / "model.onnx").write_bytes(bytes(graph))
    try:
        load(work)
    except IntegrityError as exc:
        print(f"    {exc}")
    else:
        print("    ERROR: a tampered artifact loaded", file=sys.stderr)
        return 1

    print(
        f"\ndemo done in {time.perf_counter() - started:.1f} s; outputs under "
        f"{args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
