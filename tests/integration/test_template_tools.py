"""checkov and SAM's transform on the real template: checkov passes template.yaml and what SAM
makes of it, and fails a copy that lost its hardening; the transformed stage is throttled in
every AuthMode."""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sklambda_tools.local import load_template

from support import REPO, transformed

# The venv `make lint-template` builds for checkov (its pins conflict with .venv-tools'); as
# tests/built does for sam, a variable may name another.
CHECKOV = os.environ.get("SKLAMBDA_CHECKOV", str(REPO / ".venv-checkov" / "bin" / "checkov"))
AUTH_MODES = ("IAM", "API_KEY", "NONE")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(REPO / "template.yaml")


def broken(template: dict[str, Any]) -> dict[str, Any]:
    """A copy that lost three things checkov checks: predict's reserved concurrency, the access
    log, and the data bucket's justified skip (the bucket policy checkov does not check)."""
    spoilt = copy.deepcopy(template)
    resources = spoilt["Resources"]
    del resources["PredictFunction"]["Properties"]["ReservedConcurrentExecutions"]
    del resources["PredictApi"]["Properties"]["AccessLogSetting"]
    del resources["DataBucket"]["Metadata"]
    return spoilt


def test_what_sam_makes_throttles_the_stage_in_every_auth_mode() -> None:
    path = REPO / "template.yaml"
    made = transformed({mode: (path, {"AuthMode": mode}) for mode in AUTH_MODES})
    for mode, cfn in made.items():
        stage = cfn["Resources"]["PredictApiStage"]
        assert "Condition" not in stage, mode
        (settings,) = stage["Properties"]["MethodSettings"]
        assert settings["ThrottlingRateLimit"] == {"Ref": "ApiRateLimit"}, mode
        assert settings["ThrottlingBurstLimit"] == {"Ref": "ApiBurstLimit"}, mode
        assert stage["Properties"]["AccessLogSetting"]["DestinationArn"] == {
            "Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]
        }
        predict = cfn["Resources"]["PredictFunction"]
        assert predict["Type"] == "AWS::Lambda::Function" and "Condition" not in predict
        assert predict["Properties"]["ReservedConcurrentExecutions"] == {
            "Ref": "PredictReservedConcurrency"
        }


def checkov_failures(files: list[Path]) -> dict[str, set[tuple[str, str]]]:
    """checkov's failed (check, resource) pairs, by file name, in one run over ``files``."""
    if not Path(CHECKOV).exists():
        pytest.skip(f"{CHECKOV} is missing: `make lint-template` builds .venv-checkov")
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "BC_SKIP_MAPPING": "TRUE"}
    args = [CHECKOV, "--framework", "cloudformation", "--skip-download", "-o", "json"]
    for file in files:
        args += ["-f", str(file)]
    out = subprocess.run(
        args, capture_output=True, text=True, env=env, check=False, timeout=600, cwd=files[0].parent
    )
    assert out.returncode in (0, 1), out.stdout[-2000:] + out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["summary"]["parsing_errors"] == 0, report["summary"]
    failures: dict[str, set[tuple[str, str]]] = {file.name: set() for file in files}
    scanned = {c["file_path"].lstrip("/") for c in report["results"]["passed_checks"]}
    assert scanned == set(failures)  # checkov read every file as CloudFormation
    for check in report["results"]["failed_checks"]:
        failures[check["file_path"].lstrip("/")].add(
            (check["check_id"], check["resource"].split(".", 1)[1])
        )
    return failures


def test_checkov_passes_the_template_and_fails_a_broken_copy(
    template: dict[str, Any], tmp_path: Path
) -> None:
    real, spoilt = tmp_path / "real-sam.yaml", tmp_path / "broken-sam.json"
    real.write_text((REPO / "template.yaml").read_text())
    spoilt.write_text(json.dumps(broken(template)))
    made = transformed({"real": (real, {}), "broken": (spoilt, {})})
    (tmp_path / "real-cfn.json").write_text(json.dumps(made["real"]))
    (tmp_path / "broken-cfn.json").write_text(json.dumps(made["broken"]))
    names = ["real-sam.yaml", "real-cfn.json", "broken-sam.json", "broken-cfn.json"]
    failures = checkov_failures([tmp_path / n for n in names])
    assert failures["real-sam.yaml"] == set()
    assert failures["real-cfn.json"] == set()
    lost = {"CKV_AWS_115": "PredictFunction", "CKV_AWS_18": "DataBucket"}
    assert failures["broken-sam.json"] == {*lost.items(), ("CKV_AWS_76", "PredictApi")}
    assert failures["broken-cfn.json"] == {*lost.items(), ("CKV_AWS_76", "PredictApiStage")}
