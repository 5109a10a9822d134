"""`make invoke` and `make batch` explain a user's mistake in one message, exit 2, no traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable


def run(script: str, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, PYTHON, f"scripts/{script}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def refused(done: subprocess.CompletedProcess[str], *phrases: str) -> str:
    """The run exited 2 with every phrase on stderr, nothing on stdout and no traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout == ""
    for phrase in phrases:
        assert phrase in done.stderr, (phrase, done.stderr)
    return done.stderr


@pytest.fixture
def unreadable(tmp_path: Path) -> tuple[Path, tuple[str, ...]]:
    """A file the script cannot read, and the prefix that runs the script without root's power
    to read any file (when the tests run as root)."""
    path = tmp_path / "locked.json"
    path.write_text(json.dumps({"httpMethod": "GET", "path": "/health"}))
    path.chmod(0)
    if os.geteuid() != 0:
        return path, ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root reads every file, and setpriv is not here to drop that")
    return path, (setpriv, "--bounding-set=-dac_override,-dac_read_search")


# --- make invoke ----------------------------------------------------------------------------------


def test_invoke_still_runs_a_function() -> None:
    done = run("invoke.py", "PredictFunction", "events/get-health.json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout[done.stdout.index("{\n") :])["statusCode"] == 200


def test_an_unknown_function_is_refused_naming_the_functions() -> None:
    err = refused(
        run("invoke.py", "Nope", "events/get-health.json"),
        "Nope",
        "template.yaml",
        "PredictFunction",
        "BatchFunction",
        "DriftFunction",
    )
    assert len(err.strip().splitlines()) == 1


def test_a_near_miss_gets_a_suggestion() -> None:
    refused(
        run("invoke.py", "predictfunction", "events/get-health.json"),
        "did you mean PredictFunction",
    )


def test_a_resource_that_is_not_a_function_is_refused() -> None:
    refused(
        run("invoke.py", "DataBucket", "events/get-health.json"),
        "DataBucket is an AWS::S3::Bucket",
        "not a function",
        "PredictFunction",
    )


def test_a_missing_event_file_is_refused() -> None:
    refused(
        run("invoke.py", "PredictFunction", "events/nope.json"),
        "events/nope.json",
        "no such file",
        "events/ has ",
        "predict-single.json",
    )


def test_a_directory_as_event_file_is_refused() -> None:
    refused(run("invoke.py", "PredictFunction", "events"), "events is a directory")


def test_an_unreadable_event_file_is_refused(unreadable: tuple[Path, tuple[str, ...]]) -> None:
    path, prefix = unreadable
    refused(
        run("invoke.py", "PredictFunction", str(path), prefix=prefix),
        str(path),
        "permission denied",
    )


@pytest.mark.parametrize("text", ["not json", '{"httpMethod": "GET",', ""])
def test_an_event_file_that_is_not_json_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "event.json"
    path.write_text(text)
    refused(run("invoke.py", "PredictFunction", str(path)), str(path), "not JSON")


def test_an_event_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_bytes(b'{"body": "\xff"}')
    refused(run("invoke.py", "PredictFunction", str(path)), str(path), "not UTF-8")


def test_an_event_that_is_not_an_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text("[1, 2]")
    refused(run("invoke.py", "PredictFunction", str(path)), "a JSON object", "an array")


def test_a_bare_request_body_is_refused_naming_the_event_to_use() -> None:
    # Given samples/request.json, a request body rather than the event API Gateway sends
    done = run("invoke.py", "PredictFunction", "samples/request.json")
    # Then it is refused, naming what it looks like, the event to start from and how to wrap it
    refused(
        done,
        "looks like a request body",
        "API Gateway proxy event",
        "events/predict-multi.json",
        '"body"',
        "make serve",
    )


def test_a_bare_request_body_is_not_an_s3_event() -> None:
    refused(
        run("invoke.py", "BatchFunction", "samples/request.json"),
        "looks like a request body",
        "S3",
        "events/s3-put-csv.json",
        "make batch FILE=",
    )


def test_an_api_event_is_not_an_s3_event() -> None:
    refused(
        run("invoke.py", "BatchFunction", "events/predict-single.json"),
        "API Gateway proxy event",
        "PredictFunction",
        "s3-put-csv.json",
    )


def test_an_s3_event_is_not_an_api_event() -> None:
    refused(
        run("invoke.py", "PredictFunction", "events/s3-put-csv.json"),
        "S3 notification event",
        "BatchFunction",
        "get-health.json",
    )


def test_an_s3_event_without_its_records_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"Records": [{"s3": {"bucket": {"name": "b"}}}]}))
    refused(run("invoke.py", "BatchFunction", str(path)), "Records[0].s3.object.key")


def test_a_bare_body_is_refused_for_the_drift_function_too() -> None:
    refused(
        run("invoke.py", "DriftFunction", "samples/request.json"),
        "looks like a request body",
        "events/drift-schedule.json",
    )


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("MaxInstances", "--param MaxInstances: expected Name=Value"),
        ("MaxInstancez=5", "no parameter MaxInstancez"),
    ],
)
def test_a_malformed_parameter_is_refused(param: str, message: str) -> None:
    refused(
        run("invoke.py", "PredictFunction", "events/get-health.json", "--param", param), message
    )


def test_a_missing_model_is_refused(tmp_path: Path) -> None:
    refused(
        run("invoke.py", "PredictFunction", "events/get-health.json", "--model", str(tmp_path)),
        "no model.json",
    )


# --- make batch -----------------------------------------------------------------------------------


def one_line(err: str) -> None:
    assert len(err.strip().splitlines()) == 1, err


def test_batch_refuses_a_missing_file() -> None:
    one_line(refused(run("batch.py", "samples/nope.csv"), "samples/nope.csv", "no such file"))


def test_batch_refuses_a_directory() -> None:
    one_line(refused(run("batch.py", "samples"), "samples is a directory"))


def test_batch_refuses_an_unreadable_file(unreadable: tuple[Path, tuple[str, ...]]) -> None:
    path, prefix = unreadable
    one_line(refused(run("batch.py", str(path), prefix=prefix), str(path), "permission denied"))


def test_batch_without_a_file_says_how_to_give_one() -> None:
    # `make batch` without FILE= runs `scripts/batch.py ""`
    one_line(refused(run("batch.py", ""), "make batch FILE="))


def test_batch_refuses_a_missing_model(tmp_path: Path) -> None:
    one_line(refused(run("batch.py", "samples/birds.csv", "--model", str(tmp_path)), "model.json"))


def test_the_hook_invoked_locally_checks_the_predict_function_and_reports_nothing(
    tmp_path: Path,
) -> None:
    from sklambda_tools.rollout import tampered_copy

    # Given the hook's sample event: locally there is no deployed version and no CodeDeploy
    done = run("invoke.py", "PreTrafficCheckFunction", "events/pretraffic-hook.json")
    # Then the check runs against the predict function in this process, and says so
    assert done.returncode == 0, done.stderr
    assert "nothing is reported" in done.stderr and "Traceback" not in done.stderr
    verdict = json.loads(done.stdout[done.stdout.rindex("\n{") :])
    assert verdict["status"] == "Succeeded" and verdict["rows"] == 256
    # and a model whose graph was changed (and re-hashed) disagrees with its own probe rows
    bad = tampered_copy(REPO / "models" / "penguins", tmp_path / "tampered")
    done = run(
        "invoke.py", "PreTrafficCheckFunction", "events/pretraffic-hook.json", "--model", str(bad)
    )
    verdict = json.loads(done.stdout[done.stdout.rindex("\n{") :])
    assert verdict["status"] == "Failed" and "of probes.json disagrees" in verdict["reason"]
