"""An embedded S3 for the batch function (`make batch`, `make demo`): moto's server on loopback,
the data bucket named as template.yaml names it, the S3 event its notification would send."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from sklambda.shares import execution_name
from sklambda_tools.local import TemplateResolver, function_setup, invoke_function, load_template
from sklambda_tools.localsplit import SplitRun, default_workers, run_split

ACCOUNT = "123456789012"  # moto's
REGION = "us-east-1"


@dataclass
class BatchRun:
    result: dict[str, Any]
    manifest: dict[str, Any] | None
    files: dict[str, Path]
    emitted: str
    split: SplitRun | None = None  # the file took the split path


def split_definition(root: Path, function_arn: str) -> str:
    """The split state machine's definition as CloudFormation deploys it: its
    DefinitionSubstitutions put ``function_arn`` (the split function's alias) in."""
    definition = (root / "statemachines" / "split.asl.json").read_text()
    return definition.replace("${SplitFunctionArn}", function_arn)


def split_machine(sfn: Any, root: Path) -> str:
    """The split state machine in the embedded Step Functions (what the batch function starts
    an execution of; the steps are run by ``localsplit``): its ARN."""
    function = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:split:live"
    made = sfn.create_state_machine(
        name="sklambda-split",
        definition=split_definition(root, function),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/split",
    )
    return str(made["stateMachineArn"])


def uploaded(bucket: str, key: str, put: dict[str, Any], size: int) -> dict[str, Any]:
    """The source of an object just put (``put``: S3's answer), as the batch function and the
    split path's steps name it: bucket, key, version id, ETag, size."""
    return {
        "bucket": bucket,
        "key": key,
        "version_id": put.get("VersionId"),
        "etag": str(put["ETag"]).strip('"'),
        "size": size,
    }


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server_process() -> Iterator[str]:
    """moto's server on loopback in a child process (its memory is not the caller's, which
    matters to the benchmarks); yields the endpoint URL and stops the server on exit."""
    port = free_port()
    code = (
        "import sys\nfrom moto.server import ThreadedMotoServer\n"
        f"s = ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False); s.start()\n"
        "print('up', flush=True)\nsys.stdin.read()\n"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # its request log
        text=True,
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()
        yield f"http://127.0.0.1:{port}"
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=30)


def run_batch(
    root: Path,
    file: Path,
    out: Path,
    *,
    model_dir: Path,
    quiet: bool = True,
    parameters: dict[str, str] | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BatchRun:
    """Score ``file`` through the batch function against moto's S3 on loopback; the outputs
    land in ``out`` (``predictions/``, ``errors/``, ``manifests/``). A file over
    ``BatchSplitBytes`` (``parameters`` may set it) takes the split path: the batch function
    starts its execution, and the split function's steps run here, the shares scored by
    ``workers`` processes (``progress(done, total)`` after each)."""
    import boto3
    from moto.server import ThreadedMotoServer

    template = load_template(root / "template.yaml")
    bucket = (
        TemplateResolver(template)
        .resolve(
            {"Fn::Sub": template["Resources"]["DataBucket"]["Properties"]["BucketName"]["Fn::Sub"]}
        )
        .replace("000000000000", ACCOUNT)
    )
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = {
        k: os.environ.get(k)
        for k in (
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
        )
    }
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
        }
    )
    try:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        queue = boto3.client("sqs").create_queue(QueueName="batch-dead-letters")["QueueUrl"]
        machine = split_machine(boto3.client("stepfunctions"), root)
        resources = {"BatchDeadLetterQueue": queue, "SplitStateMachine": machine}
        key = f"incoming/{file.name}"
        put = s3.put_object(Bucket=bucket, Key=key, Body=file.read_bytes())
        event = json.loads((root / "events" / "s3-put-csv.json").read_text())
        record = event["Records"][0]["s3"]
        record["bucket"].update({"name": bucket, "arn": f"arn:aws:s3:::{bucket}"})
        record["object"].update(
            {
                "key": quote_plus(key, safe="/"),
                "size": file.stat().st_size,
                "eTag": put["ETag"].strip('"'),
                "versionId": put["VersionId"],
            }
        )
        captured = io.StringIO()
        with redirect_stdout(captured if quiet else io.StringIO()):
            result = invoke_function(
                root,
                "BatchFunction",
                event,
                model_dir=model_dir,
                parameters=parameters,
                resources=resources,
            )
        split = None
        statuses = [r.get("status") for r in result.get("results", [])]
        if statuses == ["split"]:
            setup = function_setup(
                root,
                "SplitFunction",
                model_dir=model_dir,
                parameters=parameters,
                resources=resources,
            )
            source = uploaded(bucket, key, put, file.stat().st_size)
            out.mkdir(parents=True, exist_ok=True)
            with redirect_stdout(captured if quiet else io.StringIO()):
                split = run_split(
                    setup,
                    source,
                    s3,
                    execution=execution_name(bucket, key, put["VersionId"]),
                    workers=workers or default_workers(),
                    progress=progress,
                    log=out / "split-workers.log",
                )
        path = key[len("incoming/") :]
        out.mkdir(parents=True, exist_ok=True)
        files = {}
        for prefix, suffix in (("predictions", ""), ("errors", ".jsonl"), ("manifests", ".json")):
            name = f"{prefix}/{path}{suffix}"
            try:
                data = s3.get_object(Bucket=bucket, Key=name)["Body"].read()
            except s3.exceptions.NoSuchKey:
                continue
            target = out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            files[prefix] = target
        manifest = json.loads(files["manifests"].read_text()) if "manifests" in files else None
        return BatchRun(result, manifest, files, captured.getvalue(), split)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()
