"""What `sam local invoke` would run (`make test-built`): the built functions, each in a fresh
isolated interpreter, answer every event in events/ exactly as the source does in-process; the
layers are trimmed, compiled and within Lambda's limits.

They need a `sam build` for this machine in ``$SKLAMBDA_BUILD_DIR`` (``make build-host``);
without one, they are skipped.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest

from sklambda_tools.local import (
    LambdaContext,
    TemplateResolver,
    invoke_built,
    load_handler,
    load_template,
    new_execution_environment,
)
from sklambda_tools.localbatch import uploaded

from support import EVENTS, REPO

API_EVENTS = sorted(p.name for p in EVENTS.glob("*.json") if "httpMethod" in p.read_text())
S3_EVENTS = sorted(p.name for p in EVENTS.glob("s3-*.json"))

pytestmark = pytest.mark.skipif(
    not os.environ.get("SKLAMBDA_BUILD_DIR"), reason="needs a host build: make test-built"
)


@pytest.fixture(scope="session")
def build_dir() -> Path:
    return Path(os.environ["SKLAMBDA_BUILD_DIR"]).resolve()


@pytest.fixture(scope="session")
def built_template(build_dir: Path) -> dict:  # type: ignore[type-arg]
    return load_template(build_dir / "template.yaml")


@pytest.fixture(scope="session")
def resolvers(built_template: dict) -> dict[str, TemplateResolver]:  # type: ignore[type-arg]
    return {
        runtime: TemplateResolver(built_template, {"ServingRuntime": runtime})
        for runtime in ("onnx", "sklearn")
    }


def in_process(
    function: str, event: dict[str, Any], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The same event through the source handler, in this process, with the same settings."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SKLAMBDA_MODEL_DIR", str(REPO / "models" / "penguins"))
    module = load_handler(REPO / "functions" / function / "app.py", name=f"source_{function}")
    try:
        return module.lambda_handler(
            event, LambdaContext(function_name=function, timeout_seconds=900)
        )
    finally:
        new_execution_environment()


def body_of(response: dict[str, Any]) -> Any:
    return json.loads(response["body"])


@pytest.mark.parametrize("runtime", ["onnx", "sklearn"])
@pytest.mark.parametrize("name", API_EVENTS)
def test_the_built_predict_function_answers_like_the_source(
    name: str,
    runtime: str,
    build_dir: Path,
    resolvers: dict[str, TemplateResolver],
    python: str,
    runtime_paths: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an event from events/
    event = json.loads((EVENTS / name).read_text())
    resolver = resolvers[runtime]
    # When the built function (its layers only, no project venv) and the source answer it
    built = invoke_built(
        build_dir, "PredictFunction", event, resolver, python=python, runtime_paths=runtime_paths
    ).result
    env = {
        k: v
        for k, v in resolver.function_environment("PredictFunction").items()
        if not v.startswith("/opt/")
    }
    source = in_process("predict", event, env, monkeypatch)
    # Then the answers are the same
    assert built["statusCode"] == source["statusCode"]
    assert body_of(built) == body_of(source)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """moto's server on loopback, as the S3 and SQS of both runs."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def credentials(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fake credentials and moto's endpoint, in this process and for the built function."""
    values = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_endpoint,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.mark.parametrize("name", S3_EVENTS)
def test_the_built_batch_function_scores_like_the_source(
    name: str,
    build_dir: Path,
    resolvers: dict[str, TemplateResolver],
    python: str,
    runtime_paths: list[str],
    credentials: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3

    s3 = boto3.client("s3")
    sqs = boto3.client("sqs")
    event = json.loads((EVENTS / name).read_text())
    bucket = event["Records"][0]["s3"]["bucket"]["name"]
    key = unquote_plus(event["Records"][0]["s3"]["object"]["key"])
    s3.create_bucket(Bucket=bucket)
    queue = sqs.create_queue(QueueName="built-dlq")["QueueUrl"]
    rows = (REPO / "tests" / "built" / "birds.csv").read_text()
    body = rows if key.endswith(".csv") else "".join(json.dumps(r) + "\n" for r in _records(rows))
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
    event["Records"][0]["s3"]["object"].pop("eTag")  # the placeholder's: let the job ask S3
    path = key[len("incoming/") :]
    outputs = [f"predictions/{path}", f"errors/{path}.jsonl", f"manifests/{path}.json"]

    def run_and_collect(run: Any) -> tuple[Any, dict[str, bytes | None]]:
        result = run()
        got = {}
        for out in outputs:
            try:
                got[out] = s3.get_object(Bucket=bucket, Key=out)["Body"].read()
            except s3.exceptions.NoSuchKey:
                got[out] = None
        s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": o} for o in outputs]})
        return result, got

    resolver = resolvers["onnx"]
    env = {**credentials, "SKLAMBDA_DEAD_LETTER_QUEUE_URL": queue}
    built, built_out = run_and_collect(
        lambda: (
            invoke_built(
                build_dir,
                "BatchFunction",
                event,
                resolver,
                python=python,
                runtime_paths=runtime_paths,
                env=env,
            ).result
        )
    )
    source_env = {
        k: v
        for k, v in resolver.function_environment("BatchFunction").items()
        if not v.startswith("/opt/")
    }
    source, source_out = run_and_collect(
        lambda: in_process("batch", event, {**source_env, **env}, monkeypatch)
    )
    assert built == source
    assert built_out[outputs[0]] == source_out[outputs[0]]
    assert built_out[outputs[1]] == source_out[outputs[1]]
    if built["results"][0]["status"] == "succeeded":
        built_manifest = json.loads(built_out[outputs[2]] or b"{}")
        source_manifest = json.loads(source_out[outputs[2]] or b"{}")
        assert (
            built_manifest["rows"]
            == source_manifest["rows"]
            == {"read": 20, "scored": 19, "rejected": 1}
        )


def _records(csv_text: str) -> list[dict[str, Any]]:
    import csv
    import io

    out = []
    for row in csv.DictReader(io.StringIO(csv_text)):
        record: dict[str, Any] = {}
        for k, v in row.items():
            if v == "":
                record[k] = None
            elif k in ("island", "sex"):
                record[k] = v
            else:
                try:
                    record[k] = float(v)
                except ValueError:
                    record[k] = v
        out.append(record)
    return out


# --- the layers themselves ---------------------------------------------------------------------


def pyc_flags(path: Path) -> int:
    return int(struct.unpack("<I", path.read_bytes()[4:8])[0])


@pytest.mark.parametrize("layer", ["CodeLayer", "OnnxRuntimeLayer"])
def test_bytecode_is_compiled_to_survive_the_zip(build_dir: Path, layer: str) -> None:
    root = build_dir / layer / "python"
    sources = [p for p in root.rglob("*.py") if ".dist-info" not in str(p)]
    compiled = list(root.rglob("__pycache__/*.pyc"))
    assert sources and len(compiled) >= len(sources) * 0.95
    # hash-based, unchecked (flags 0b01): valid whatever the zip does to the timestamps
    assert {pyc_flags(p) for p in compiled} == {1}


def test_the_sklearn_layer_ships_bytecode_only(build_dir: Path) -> None:
    root = build_dir / "SklearnRuntimeLayer" / "python"
    assert not [p for p in root.rglob("*.py") if ".dist-info" not in str(p)]
    compiled = list((root / "sklearn").rglob("*.pyc"))
    assert compiled and {pyc_flags(p) for p in compiled} == {1}


@pytest.mark.parametrize("layer", ["OnnxRuntimeLayer", "SklearnRuntimeLayer"])
def test_runtime_layers_are_trimmed_but_keep_their_metadata(build_dir: Path, layer: str) -> None:
    root = build_dir / layer / "python"
    names = {p.name for p in root.iterdir()}
    assert not names & {"boto3", "botocore", "s3transfer"}
    assert not list(root.rglob("tests"))
    assert not list(root.rglob("*.pyi"))
    assert any(n.startswith("numpy-") and n.endswith(".dist-info") for n in names)


def test_every_function_fits_lambda(build_dir: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "size.py"),
            "--build-dir",
            str(build_dir),
            "--parameter",
            "ServingRuntime=sklearn",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    onnx = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "size.py"), "--build-dir", str(build_dir)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    predict = next(line for line in onnx.splitlines() if line.startswith("PredictFunction"))
    assert float(predict.split(": ")[1].split(" MB")[0]) < 120


def test_the_template_lint_passes_and_catches_a_broken_template(tmp_path: Path) -> None:
    sam = os.environ.get("SKLAMBDA_SAM", str(REPO / ".venv-tools" / "bin" / "sam"))
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    good = subprocess.run(
        [sam, "validate", "--lint", "--region", "us-east-1", "-t", str(REPO / "template.yaml")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert good.returncode == 0, good.stdout + good.stderr
    broken = tmp_path / "template.yaml"
    broken.write_text(
        (REPO / "template.yaml").read_text().replace("Runtime: python3.13", "Runtime: python2.9")
    )
    bad = subprocess.run(
        [sam, "validate", "--lint", "--region", "us-east-1", "-t", str(broken)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode != 0
    assert "python2.9" in bad.stdout + bad.stderr


def test_the_built_drift_function_reports_like_the_source(
    build_dir: Path,
    resolvers: dict[str, TemplateResolver],
    python: str,
    runtime_paths: list[str],
    credentials: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3

    # Given the schedule's event and a data bucket with nothing captured in its window
    bucket = "built-drift-bucket"
    boto3.client("s3").create_bucket(Bucket=bucket)
    event = json.loads((EVENTS / "drift-schedule.json").read_text())
    env = {**credentials, "SKLAMBDA_DATA_BUCKET": bucket}
    resolver = resolvers["onnx"]
    # When the built function and the source run it
    built = invoke_built(
        build_dir,
        "DriftFunction",
        event,
        resolver,
        python=python,
        runtime_paths=runtime_paths,
        env=env,
    )
    source_env = {
        k: v
        for k, v in resolver.function_environment("DriftFunction").items()
        if not v.startswith("/opt/")
    }
    source = in_process("drift", event, {**source_env, **env}, monkeypatch)
    # Then both write the same window's report and say the same
    assert (
        built.result
        == source
        == {
            "status": "not enough data",
            "rows": 0,
            "max_psi": None,
            "max_feature": None,
            "report": "monitoring/drift/2026-11-22.json",
        }
    )
    assert '"DriftRows":0.0' in built.stdout  # its metrics, as EMF records


def test_the_built_split_function_scores_a_file_as_the_single_path_does(
    build_dir: Path,
    built_template: dict,  # type: ignore[type-arg]
    resolvers: dict[str, TemplateResolver],
    python: str,
    runtime_paths: list[str],
    credentials: dict[str, str],
) -> None:
    import boto3

    # Given a file in a versioned bucket, and the built template's state machine definition
    definition = built_template["Resources"]["SplitStateMachine"]["Properties"]["DefinitionUri"]
    assert json.loads((build_dir / definition).read_text())["StartAt"] == "Plan"
    s3, bucket = boto3.client("s3"), "built-split-bucket"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    queue = boto3.client("sqs").create_queue(QueueName="built-split-dlq")["QueueUrl"]
    data = (REPO / "tests" / "built" / "birds.csv").read_bytes()
    env = {**credentials, "SKLAMBDA_DEAD_LETTER_QUEUE_URL": queue}
    resolver = resolvers["onnx"]

    def invoke(function: str, event: dict[str, Any], **more: str) -> Any:
        run = invoke_built(
            build_dir,
            function,
            event,
            resolver,
            python=python,
            runtime_paths=runtime_paths,
            env={**env, **more},
        )
        return run.result

    outputs = {}
    for path in ("one", "split"):
        key = f"incoming/{path}/birds.csv"
        made = s3.put_object(Bucket=bucket, Key=key, Body=data)
        source = uploaded(bucket, key, made, len(data))
        if path == "one":  # the batch function, in one invocation
            obj = {"key": key, "size": len(data), "versionId": made["VersionId"]}
            record = {"s3": {"bucket": {"name": bucket}, "object": obj}}
            assert invoke("BatchFunction", {"Records": [record]})["results"][0]["status"] == (
                "succeeded"
            )
        else:  # the built split function's steps, as its state machine runs them
            tiny = {"SKLAMBDA_SPLIT_BYTES": "300", "SKLAMBDA_CHUNK_ROWS": "3"}
            plan = json.loads((EVENTS / "split-plan.json").read_text())  # sam local invoke's
            assert set(plan["source"]) == set(source)
            planned = invoke("SplitFunction", {**plan, "source": source}, **tiny)
            where = planned["items"]
            items = json.loads(s3.get_object(Bucket=bucket, Key=where["key"])["Body"].read())
            assert len(items) > 1
            for item in items:
                invoke("SplitFunction", {"action": "score", "item": item}, **tiny)
            finish = {"action": "finish", "source": source, "plan": planned}
            assert invoke("SplitFunction", finish, **tiny)["status"] == "succeeded"
        outputs[path] = [
            s3.get_object(Bucket=bucket, Key=f"{prefix}/{path}/birds.csv{suffix}")["Body"].read()
            for prefix, suffix in (("predictions", ""), ("errors", ".jsonl"))
        ]
    # Then the outputs are the single path's, byte for byte
    assert outputs["split"] == outputs["one"]
