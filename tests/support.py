"""Facts several test modules share: the sample bird, the status each API event must get, and a
mocked S3 bucket."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]  # the one repository-root constant of the tests
EVENTS = REPO / "events"
PENGUINS_DIR = REPO / "models" / "penguins"

# The first instance of samples/request.json (the body of events/predict-multi.json).
BIRD: dict[str, Any] = json.loads((REPO / "samples" / "request.json").read_text())["instances"][0]

# Every API Gateway event in events/ and the status it must get; a new event without an entry
# fails test_every_event_is_exercised.
EXPECTED_STATUS = {
    "predict-single.json": 200,
    "predict-multi.json": 200,
    "predict-invalid-instances.json": 422,
    "predict-empty.json": 422,
    "predict-not-json.json": 400,
    "predict-wrong-content-type.json": 415,
    "get-model.json": 200,
    "get-health.json": 200,
    "v2-infer.json": 200,
    "v2-model-metadata.json": 200,
}

# The Open Inference Protocol's routes (GET but the /infer ones, which are POST).
V2_PATHS = {
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    *(
        f"{prefix}{suffix}"
        for prefix in (
            "/v2/models/{model_name}",
            "/v2/models/{model_name}/versions/{model_version}",
        )
        for suffix in ("", "/ready", "/infer")
    ),
}


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


@contextlib.contextmanager
def mocked_bucket(bucket: str, region: str = "us-east-1", versioned: bool = False) -> Iterator[Any]:
    """A moto S3 client with ``bucket`` created, under fake credentials, for the ``with`` block."""
    import boto3
    import pytest
    from moto import mock_aws

    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            mp.setenv(name, "testing")
        mp.setenv("AWS_DEFAULT_REGION", region)
        with mock_aws():
            client = boto3.client("s3", region_name=region)
            client.create_bucket(Bucket=bucket)
            if versioned:
                client.put_bucket_versioning(
                    Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}
                )
            yield client


def job_outputs(
    s3: Any, bucket: str, key: str
) -> tuple[bytes | None, bytes | None, dict[str, Any] | None]:
    """What a batch job wrote for ``incoming/<path>``: its predictions, its errors file and its
    job record (each ``None`` when there is none)."""
    from sklambda.batch import output_keys

    keys = output_keys(key)

    def get(name: str) -> bytes | None:
        try:
            data: bytes = s3.get_object(Bucket=bucket, Key=name)["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        return data

    record = get(keys.record)
    return get(keys.predictions), get(keys.errors), json.loads(record) if record else None


def float32_copy(dest: Path) -> Path:
    """The example model with its graph exported for float32 inputs, at ``dest``: the tests of
    the float32 bound need a graph that takes float32 (the penguins pipeline itself exports in
    double precision). The export is checked against the pipeline on the committed holdout's
    parity rows before it is written."""
    import dataclasses
    import shutil

    import joblib

    from sklambda.manifest import (
        ONNX_FILE,
        ArtifactFile,
        dump_manifest,
        read_manifest,
        sha256_bytes,
    )
    from sklambda_tools import export

    shutil.copytree(PENGUINS_DIR, dest)
    manifest = read_manifest(dest)
    assert manifest.runtime.onnx is not None
    pipeline = joblib.load(dest / "model.joblib")
    graph = export._convert(
        export.for_export(pipeline), manifest.features, manifest.output, "float32", "columns"
    )
    (dest / ONNX_FILE).write_bytes(graph)
    onnx = dataclasses.replace(
        manifest.runtime.onnx, input_dtype="float32", inputs=export.graph_inputs(graph)
    )
    artifacts = {
        **manifest.artifacts,
        ONNX_FILE: ArtifactFile(sha256=sha256_bytes(graph), bytes=len(graph)),
    }
    manifest = dataclasses.replace(
        manifest,
        artifacts=artifacts,
        runtime=dataclasses.replace(manifest.runtime, onnx=onnx),
    )
    (dest / "model.json").write_text(dump_manifest(manifest))
    return dest


# .venv-tools has aws-sam-translator (`make tools` builds it); a variable may name another.
TOOLS_PYTHON = os.environ.get("SKLAMBDA_TOOLS_PYTHON", str(REPO / ".venv-tools" / "bin" / "python"))
_TRANSFORM_EACH = """
import json, sys
sys.path.insert(0, sys.argv[1])
from samtranslator.yaml_helper import yaml_parse
from transform import transform
jobs = json.load(sys.stdin)
json.dump({n: transform(yaml_parse(open(p).read()), v) for n, (p, v) in jobs.items()}, sys.stdout)
"""


def transformed(jobs: dict[str, tuple[Path, dict[str, str]]]) -> dict[str, Any]:
    """What scripts/transform.py (SAM's translator) makes of each (template, parameters), in
    one .venv-tools run."""
    import pytest

    if not Path(TOOLS_PYTHON).exists():
        pytest.skip(f"{TOOLS_PYTHON} is missing: `make tools` (or `make lint-template`) builds it")
    out = subprocess.run(
        [TOOLS_PYTHON, "-c", _TRANSFORM_EACH, str(REPO / "scripts")],
        input=json.dumps({n: (str(p), v) for n, (p, v) in jobs.items()}),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    loaded: dict[str, Any] = json.loads(out.stdout)
    return loaded


EDGE_CLI = REPO / "edge" / "bin" / "sklambda-edge.mjs"


def edge_score(bundle: Path, instances: list[Any], *, predict: bool = False) -> dict[str, Any]:
    """What the edge module answers in Node for ``instances`` (one process: the bundle's
    command line), as JSON: ``{rows, predictions, errors, notes}``, or with ``predict`` what
    POST /predict answers. NaN and infinities travel as Python's json writes them."""
    body = json.dumps({"instances": instances}, allow_nan=True)
    flags = ["--predict"] if predict else []
    done = subprocess.run(
        ["node", str(EDGE_CLI), str(bundle), *flags],
        input=body.encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr.decode()
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def python_score(model: Any, instances: list[Any]) -> dict[str, Any]:
    """The scoring core's answer in the shape ``edge_score`` gives (the batch rule: the valid
    rows scored, the others' reasons)."""
    from sklambda.scoring import score_records

    scored = score_records(model, instances)
    return {
        "rows": scored.rows,
        "predictions": scored.predictions(),
        "errors": [{"path": e.path(), "reason": e.reason} for e in scored.errors],
        "notes": [{"path": n.path(), "reason": n.reason, "kind": n.kind} for n in scored.notes],
    }


def _key_order(remarks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``remarks`` with each instance's "unknown feature" reasons sorted by path. They come in
    the order of the instance's keys, and a JavaScript object lists keys that are array indices
    ("0", "17") first, whatever their order in the JSON text; the rest keeps its order."""

    def instance(remark: dict[str, Any]) -> str:
        return str(remark["path"]).split("]")[0]

    first: dict[str, int] = {}
    for position, remark in enumerate(remarks):
        first.setdefault(instance(remark), position)

    def key(item: tuple[int, dict[str, Any]]) -> tuple[int, int, str, int]:
        position, remark = item
        unknown = remark["reason"] == "unknown feature"
        return (
            first[instance(remark)],
            0 if unknown else 1,
            remark["path"] if unknown else "",
            position,
        )

    return [remark for _, remark in sorted(enumerate(remarks), key=key)]


def assert_same_answers(python: dict[str, Any], edge: dict[str, Any], tolerance: float) -> None:
    """The same rows scored, the same reasons and notes word for word, the same labels, and
    probabilities (or values, relatively) within ``tolerance``."""
    assert edge["rows"] == python["rows"]
    for what in ("errors", "notes"):
        ours, theirs = _key_order(python[what]), _key_order(edge[what])
        first = next(
            (i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None
        )
        assert ours == theirs, (what, first, first is not None and (ours[first], theirs[first]))
    assert len(edge["predictions"]) == len(python["predictions"])
    pairs = zip(python["rows"], python["predictions"], edge["predictions"], strict=True)
    for row, ours, theirs in pairs:
        assert ours.keys() == theirs.keys(), row
        if "value" in ours:
            scale = max(abs(ours["value"]), 1.0)
            assert abs(theirs["value"] - ours["value"]) / scale <= tolerance, row
            continue
        assert theirs["label"] == ours["label"], row
        if "probabilities" in ours:
            assert theirs["probabilities"].keys() == ours["probabilities"].keys(), row
            gap = max(abs(theirs["probabilities"][c] - p) for c, p in ours["probabilities"].items())
            assert gap <= tolerance, (row, gap)


def oip_violations(schema: str, body: Any) -> list[str]:
    """What is wrong with ``body`` by the Open Inference Protocol's own OpenAPI document
    (``tests/contracts/open_inference_rest.yaml``): its ``components/schemas/<schema>``,
    checked by openapi-schema-validator (OpenAPI 3.0 schemas, references resolved)."""
    import yaml
    from openapi_schema_validator import OAS30Validator

    document = _OIP.get("document")
    if document is None:
        document = _OIP["document"] = yaml.safe_load(
            (REPO / "tests" / "contracts" / "open_inference_rest.yaml").read_text()
        )
    validator = OAS30Validator({"$ref": f"#/components/schemas/{schema}", **document})
    return [error.message for error in validator.iter_errors(body)]


_OIP: dict[str, Any] = {}


@contextlib.contextmanager
def local_api(**environment: str) -> Iterator[str]:
    """The local API of the example model (no auth) on a free port, its URL; the process
    environment (with ``environment`` set while it runs) and the execution environment are as
    they were afterwards."""
    from sklambda_tools.local import new_execution_environment
    from sklambda_tools.localapi import LocalApi, Server

    saved = dict(os.environ)
    os.environ.update(environment)
    app = LocalApi(REPO, model_dir=PENGUINS_DIR, parameters={"AuthMode": "NONE"})
    try:
        with Server(app, port=0) as server:
            yield server.url
    finally:
        os.environ.clear()
        os.environ.update(saved)
        new_execution_environment()
