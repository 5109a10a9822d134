"""`make versions` and `make rollback`: the stack's published versions and rollback of the alias
`live`, on moto's CloudFormation and Lambda (a stack whose resources are the three functions)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from sklambda_tools import versions

from support import REPO

REGION = "us-east-1"
FUNCTIONS = ("PredictFunction", "BatchFunction", "DriftFunction")
A, B, C = "a0" * 8, "b1" * 8, "c2" * 8  # three releases (16 hex digits each)


def built(model_version: str, release: str) -> str:
    """A version description as the build writes it."""
    return f"sklambda model=penguins version={model_version} release={release}"


def test_the_description_the_build_writes_is_the_one_read() -> None:
    from sklambda_tools.release import Release

    written = Release(A, "penguins", "1.2.0").description
    assert written == built("1.2.0", A)
    assert versions.Version(1, written, "").build == Release(A, "penguins", "1.2.0")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fake credentials in a directory of its own (no samconfig.toml), nothing read from the
    machine's AWS configuration, and moto for the test."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        yield


def create_stack(name: str = "sklambda", functions: tuple[str, ...] = FUNCTIONS) -> dict[str, str]:
    """A CloudFormation stack of inline-code functions; their physical names by logical id."""
    role = boto3.client("iam").create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument="{}")[
        "Role"
    ]["Arn"]
    function = {
        "Type": "AWS::Lambda::Function",
        "Properties": {
            "Runtime": "python3.13",
            "Handler": "index.handler",
            "Role": role,
            "Code": {"ZipFile": "def handler(event, context):\n    return event\n"},
        },
    }
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {logical_id: function for logical_id in functions},
    }
    cfn = boto3.client("cloudformation")
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))
    return {
        logical_id: cfn.describe_stack_resource(StackName=name, LogicalResourceId=logical_id)[
            "StackResourceDetail"
        ]["PhysicalResourceId"]
        for logical_id in functions
    }


def publish(name: str, descriptions: list[str], live: str | None) -> None:
    """Publish one version per description (each after a code change, as Lambda publishes only
    what changed) and point the alias at ``live``."""
    lam = boto3.client("lambda")
    for i, description in enumerate(descriptions):
        lam.update_function_code(FunctionName=name, ZipFile=f"code {i}".encode())
        lam.publish_version(FunctionName=name, Description=description)
    if live is not None:
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion=live)


@pytest.fixture
def stack(aws: None) -> dict[str, str]:
    """Predict: 1 (release A), 2 (B), 3 (unstamped), 4 (C), live 4. Batch: 1 and 2 (A, the
    second a configuration change), 3 (C), live 3, no B. Drift: 1 (A), 2 (B), 3 (C), live 3."""
    names = create_stack()
    publish(
        names["PredictFunction"],
        [built("1.0.0", A), built("1.1.0", B), "unstamped", built("1.2.0", C)],
        live="4",
    )
    publish(
        names["BatchFunction"],
        [built("1.0.0", A), built("1.0.0", A), built("1.2.0", C)],
        live="3",
    )
    publish(names["DriftFunction"], [built("1.0.0", A), built("1.1.0", B), built("1.2.0", C)], "3")
    return names


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = versions.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def live(name: str) -> str:
    return str(boto3.client("lambda").get_alias(FunctionName=name, Name="live")["FunctionVersion"])


def aliases(names: dict[str, str]) -> dict[str, str]:
    return {logical_id: live(name) for logical_id, name in names.items()}


def point(name: str, version: str, weights: dict[str, float] | None = None) -> None:
    boto3.client("lambda").update_alias(
        FunctionName=name,
        Name="live",
        FunctionVersion=version,
        RoutingConfig={"AdditionalVersionWeights": weights or {}},
    )


def table(out: str, logical_id: str) -> tuple[str, dict[str, str]]:
    """A function's header line in the list, and its version rows by version number."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{logical_id} ("))
    rows: dict[str, str] = {}
    for line in lines[start + 2 :]:  # past the header line and the column names
        if not line.strip():
            break
        rows[line.split()[0]] = line
    return lines[start], rows


def refused(code: int, out: str, err: str, *phrases: str) -> str:
    """Exit 2 with one line on stderr holding every phrase, nothing on stdout."""
    assert code == 2, (code, out, err)
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for phrase in phrases:
        assert phrase in err, (phrase, err)
    return err


# --- list -----------------------------------------------------------------------------------------


def test_list_shows_each_functions_versions_newest_first_models_and_the_live_one(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "list")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == f"stack sklambda ({REGION})"
    header, rows = table(out, "PredictFunction")
    assert header.startswith(f"PredictFunction ({stack['PredictFunction']})")
    assert header.endswith("live: 4")
    assert list(rows) == ["4", "3", "2", "1"]  # newest first, no $LATEST
    assert re.fullmatch(
        rf"\s+4  live\s+\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d  penguins\s+1\.2\.0\s+{C}", rows["4"]
    ), rows["4"]
    assert " live " not in rows["2"]
    assert "penguins" in rows["2"] and "1.1.0" in rows["2"] and B in rows["2"]
    assert rows["3"].endswith('description "unstamped"')  # another form, shown as it is
    _, batch = table(out, "BatchFunction")
    assert list(batch) == ["3", "2", "1"]
    assert " live " in batch["3"] and C in batch["3"]
    _, drift = table(out, "DriftFunction")
    assert list(drift) == ["3", "2", "1"]


def test_list_during_a_deployment_shows_both_versions_and_their_weights(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given CodeDeploy shifting 10% of predict's traffic from version 2 to version 4
    point(stack["PredictFunction"], "2", {"4": 0.1})
    code, out, _ = run(capsys, "list")
    assert code == 0
    header, rows = table(out, "PredictFunction")
    assert "live: 2 (90%) and 4 (10%)" in header
    assert " live 90% " in rows["2"]
    assert " live 10% " in rows["4"]
    assert " live" not in rows["1"] and " live" not in rows["3"]


def test_list_says_when_a_function_has_no_live_alias_or_no_versions(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    names = create_stack()
    publish(names["PredictFunction"], [built("1.0.0", A)], live="1")
    publish(names["BatchFunction"], [built("1.0.0", A)], live=None)
    code, out, _ = run(capsys, "list")
    assert code == 0
    header, _ = table(out, "BatchFunction")
    assert "no alias 'live'" in header
    drift = out.splitlines()[out.splitlines().index(table(out, "DriftFunction")[0]) + 1]
    assert drift.strip() == "no published versions"


def test_list_honours_the_region(stack: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    refused(*run(capsys, "list", "--region", "eu-west-1"), "no stack 'sklambda' in eu-west-1")


def test_every_page_of_versions_is_read_and_aws_times_are_shown_in_utc(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given Lambda's listing in two pages (moto answers in one), in AWS's own time format
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    lam = boto3.client("lambda", region_name=REGION)
    stubber = Stubber(lam)

    def page(*entries: tuple[str, str], marker: str | None = None) -> dict[str, Any]:
        listed = [
            {"Version": v, "Description": built("1.0.0", A), "LastModified": t} for v, t in entries
        ]
        return {"Versions": listed, **({"NextMarker": marker} if marker else {})}

    stubber.add_response(
        "list_versions_by_function",
        page(
            ("$LATEST", "2024-05-02T09:00:00.000+0000"),
            ("1", "2024-05-01T12:00:00.000+0000"),
            marker="m",
        ),
        {"FunctionName": "f"},
    )
    stubber.add_response(
        "list_versions_by_function",
        page(("2", "2024-05-01T14:30:05.123+0200"), ("10", "2024-13-01T00:00:00Z")),
        {"FunctionName": "f", "Marker": "m"},
    )
    stubber.add_response(
        "get_alias",
        {"Name": "live", "FunctionVersion": "10"},
        {"FunctionName": "f", "Name": "live"},
    )
    with stubber:
        function = versions.read_function(
            lam, versions.Target("s", "given by --stack"), "PredictFunction", "f"
        )
    stubber.assert_no_pending_responses()
    assert [v.number for v in function.versions] == [10, 2, 1]  # numerically, newest first
    out = versions.render(versions.Target("s", ""), REGION, [function])
    _, rows = table(out, "PredictFunction")
    assert " 2024-05-01 12:00:00 " in rows["1"]
    assert " 2024-05-01 12:30:05 " in rows["2"]  # +0200 shown in UTC
    assert " 2024-13-01T00:00:00Z " in rows["10"] and " live " in rows["10"]  # as it is


# --- rollback -------------------------------------------------------------------------------------


CAVEAT_START = "note: CloudFormation still records each alias at the version it deployed"


def test_rollback_moves_predict_and_the_versions_of_its_release(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "rollback", "--version", "1")
    assert (code, err) == (0, "")
    # batch goes to the newest of its two versions of release A
    assert aliases(stack) == {"PredictFunction": "1", "BatchFunction": "2", "DriftFunction": "1"}
    lines = out.splitlines()
    assert lines[0] == "rollback of stack sklambda:"
    assert lines[1] == (
        f"  PredictFunction: live 4 -> 1, penguins 1.0.0, release {A} "
        f"(was penguins 1.2.0, release {C})"
    )
    assert lines[2].startswith(f"  BatchFunction: live 3 -> 2, penguins 1.0.0, release {A}")
    assert lines[3].startswith(f"  DriftFunction: live 3 -> 1, penguins 1.0.0, release {A}")
    assert lines[4].startswith(CAVEAT_START)
    assert "the next deploy that publishes a new version moves the alias again" in lines[4]
    assert "a deploy that publishes none leaves it where rollback put it" in lines[4]
    # and the list shows the new state
    _, rows = table(run(capsys, "list")[1], "PredictFunction")
    assert " live " in rows["1"] and " live " not in rows["4"]


def test_rollback_leaves_a_function_without_the_release_alone_and_says_so(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "rollback", "--version", "2")
    assert code == 0
    assert aliases(stack) == {"PredictFunction": "2", "BatchFunction": "3", "DriftFunction": "2"}
    assert f"  PredictFunction: live 4 -> 2, penguins 1.1.0, release {B}" in out
    assert f"  DriftFunction: live 3 -> 2, penguins 1.1.0, release {B}" in out
    assert (
        f"  BatchFunction: left at 3: it has no version of release {B} (its versions: 3, 2, 1)"
        in out.splitlines()
    )
    assert "BatchFunction: live" not in out


def test_a_follower_already_at_the_release_stays_where_it_is(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given batch at version 1, release A already (2 is the newer version of A)
    point(stack["BatchFunction"], "1")
    code, out, _ = run(capsys, "rollback", "--version", "1")
    assert code == 0
    assert aliases(stack) == {"PredictFunction": "1", "BatchFunction": "1", "DriftFunction": "1"}
    assert f"  BatchFunction: left at 1: already at release {A}" in out.splitlines()


def test_rollback_to_a_version_without_a_release_moves_predict_alone(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "rollback", "--version", "3")
    assert code == 0
    assert aliases(stack) == {"PredictFunction": "3", "BatchFunction": "3", "DriftFunction": "3"}
    assert '  PredictFunction: live 4 -> 3, description "unstamped"' in out
    assert "  BatchFunction: left at 3: PredictFunction version 3 records no release" in out
    assert "  DriftFunction: left at 3: PredictFunction version 3 records no release" in out


def test_a_follower_without_its_alias_is_left_alone(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    names = create_stack()
    publish(names["PredictFunction"], [built("1.0.0", A), built("1.1.0", B)], live="2")
    publish(names["BatchFunction"], [built("1.0.0", A)], live=None)
    publish(names["DriftFunction"], [built("1.0.0", A), built("1.1.0", B)], live="2")
    code, out, _ = run(capsys, "rollback", "--version", "1")
    assert code == 0
    assert "  BatchFunction: left alone: it has no alias 'live'" in out.splitlines()
    assert live(names["DriftFunction"]) == "1"


def test_an_alias_at_latest_is_listed_and_followed_from(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    point(stack["BatchFunction"], "$LATEST")
    header, rows = table(run(capsys, "list")[1], "BatchFunction")
    assert header.endswith("live: $LATEST")
    assert not any(" live" in row for row in rows.values())
    code, out, _ = run(capsys, "rollback", "--version", "1")
    assert code == 0
    assert f"  BatchFunction: live $LATEST -> 2, penguins 1.0.0, release {A}" in out.splitlines()
    assert live(stack["BatchFunction"]) == "2"


def test_the_live_version_is_a_no_op(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    point(stack["DriftFunction"], "1")  # a follower elsewhere is not realigned either
    code, out, err = run(capsys, "rollback", "--version", "4")
    assert (code, err) == (0, "")
    assert out.strip() == (
        f"PredictFunction's alias live already serves version 4 (penguins 1.2.0, release {C}): "
        "nothing changed"
    )
    assert aliases(stack) == {"PredictFunction": "4", "BatchFunction": "3", "DriftFunction": "1"}


class FailingUpdate:
    """moto's Lambda client, whose update_alias of one function fails with an AWS error."""

    def __init__(self, name: str, code: str) -> None:
        self.lam = boto3.client("lambda")
        self.name = name
        self.code = code

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.lam, attr)

    def update_alias(self, **request: Any) -> Any:
        if request["FunctionName"] == self.name:
            raise ClientError({"Error": {"Code": self.code, "Message": "no"}}, "UpdateAlias")
        return self.lam.update_alias(**request)


def fail_update(monkeypatch: pytest.MonkeyPatch, name: str, code: str) -> None:
    lam = FailingUpdate(name, code)
    monkeypatch.setattr(versions, "clients", lambda region: (boto3.client("cloudformation"), lam))


def test_a_follower_whose_alias_changed_meanwhile_is_left_and_said(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_update(monkeypatch, stack["BatchFunction"], "PreconditionFailedException")
    code, out, _ = run(capsys, "rollback", "--version", "1")
    assert code == 0
    assert aliases(stack) == {"PredictFunction": "1", "BatchFunction": "3", "DriftFunction": "1"}
    assert "  BatchFunction: left: its alias changed while rolling back" in out
    assert "  DriftFunction: live 3 -> 1" in out


def test_a_predict_alias_that_changed_meanwhile_is_refused_and_nothing_moves(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_update(monkeypatch, stack["PredictFunction"], "PreconditionFailedException")
    refused(
        *run(capsys, "rollback", "--version", "1"),
        "PredictFunction's alias live changed while rolling back",
        "nothing moved",
    )
    assert aliases(stack) == {"PredictFunction": "4", "BatchFunction": "3", "DriftFunction": "3"}


def test_an_aws_error_after_predict_moved_says_what_moved(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_update(monkeypatch, stack["BatchFunction"], "AccessDeniedException")
    code, out, err = run(capsys, "rollback", "--version", "1")
    assert code == 2
    assert out.splitlines() == [
        "rollback of stack sklambda, stopped by an error after:",
        f"  PredictFunction: live 4 -> 1, penguins 1.0.0, release {A} "
        f"(was penguins 1.2.0, release {C})",
    ]
    assert err.strip() == (
        "rollback: AWS error AccessDeniedException (UpdateAlias): no; "
        "these credentials may not do this"
    )


# --- refusals -------------------------------------------------------------------------------------


def test_a_version_that_does_not_exist_is_refused_naming_those_that_do(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    refused(
        *run(capsys, "rollback", "--version", "9"),
        "rollback: PredictFunction has no version 9; its versions: 4, 3, 2, 1",
    )
    assert aliases(stack) == {"PredictFunction": "4", "BatchFunction": "3", "DriftFunction": "3"}


@pytest.mark.parametrize("text", ["$LATEST", "$latest"])
def test_latest_is_refused(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str], text: str
) -> None:
    refused(
        *run(capsys, "rollback", "--version", text), "rollback: $LATEST is not a published version"
    )
    assert live(stack["PredictFunction"]) == "4"


@pytest.mark.parametrize("text", ["two", "0", "-1", "1.5", "", "²"])
def test_a_version_that_is_not_a_number_is_refused(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str], text: str
) -> None:
    refused(
        *run(capsys, "rollback", "--version", text),
        f"VERSION must be a published version's number, not '{text}'",
    )


def test_rollback_during_a_deployment_is_refused(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    point(stack["PredictFunction"], "2", {"4": 0.1})
    err = refused(
        *run(capsys, "rollback", "--version", "1"),
        "a deployment is in progress",
        "2 (90%) and 4 (10%)",
        "wait for it to finish",
        "aws deploy stop-deployment --deployment-id",
        "--auto-rollback-enabled",
    )
    assert err.startswith("rollback: ")
    # nothing moved, the weights included
    lam = boto3.client("lambda")
    alias = lam.get_alias(FunctionName=stack["PredictFunction"], Name="live")
    assert alias["FunctionVersion"] == "2"
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"4": 0.1}
    assert aliases(stack)["DriftFunction"] == "3"
    # even to a version that is one of the two
    refused(*run(capsys, "rollback", "--version", "2"), "a deployment is in progress")


@pytest.mark.parametrize("command", [["list"], ["rollback", "--version", "1"]])
def test_an_unknown_stack_is_refused_naming_it(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    refused(
        *run(capsys, *command, "--stack", "nope"),
        f"no stack 'nope' in {REGION} (given by --stack)",
        "STACK=",
        "AWS_REGION=",
    )


def test_a_stack_without_one_of_the_functions_is_refused_naming_it(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    create_stack(functions=("PredictFunction", "BatchFunction"))
    refused(*run(capsys, "list"), "versions: stack 'sklambda' in us-east-1 has no DriftFunction")


def test_a_function_deleted_outside_the_stack_is_refused_naming_it(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("lambda").delete_function(FunctionName=stack["BatchFunction"])
    refused(
        *run(capsys, "list"),
        f"BatchFunction of stack 'sklambda' ({stack['BatchFunction']}) does not exist in Lambda",
    )


def test_a_function_without_its_alias_cannot_be_rolled_back(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    names = create_stack()
    publish(names["PredictFunction"], [built("1.0.0", A)], live=None)
    refused(*run(capsys, "rollback", "--version", "1"), "PredictFunction", "no alias 'live'")


# --- the stack's name -----------------------------------------------------------------------------


def test_the_stack_defaults_to_samconfigs_stack_name(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = create_stack("penguins-prod")
    publish(names["PredictFunction"], [built("1.0.0", A), built("1.1.0", B)], live="2")
    (tmp_path / "samconfig.toml").write_text(
        'version = 0.1\n\n[default.deploy.parameters]\nstack_name = "penguins-prod"\n'
        'resolve_s3 = true\n\n[default.global.parameters]\nstack_name = "not-this-one"\n'
    )
    code, out, _ = run(capsys, "list")
    assert code == 0
    assert out.splitlines()[0] == f"stack penguins-prod ({REGION})"
    assert run(capsys, "rollback", "--version", "1")[0] == 0
    assert live(names["PredictFunction"]) == "1"
    # --stack overrides it
    refused(*run(capsys, "list", "--stack", "sklambda"), "no stack 'sklambda'")


def test_samconfigs_global_stack_name_is_the_fallback(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "samconfig.toml").write_text(
        'version = 0.1\n[default.global.parameters]\nstack_name = "from-global"\n'
    )
    refused(
        *run(capsys, "list"),
        "no stack 'from-global'",
        "samconfig.toml's [default.global.parameters] stack_name",
    )


def test_without_samconfig_the_stack_is_sklambda(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not (tmp_path / "samconfig.toml").exists()
    refused(*run(capsys, "list"), "no stack 'sklambda'", "the default: there is no samconfig.toml")
    (tmp_path / "samconfig.toml").write_text("version = 0.1\n[default.deploy.parameters]\nx = 1\n")
    refused(*run(capsys, "list"), "no stack 'sklambda'", "samconfig.toml names no stack_name")


def test_a_broken_samconfig_is_refused(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "samconfig.toml").write_text("[default.deploy.parameters\nstack_name = 'x'\n")
    refused(*run(capsys, "list"), "versions: samconfig.toml: cannot read its stack_name")


# --- AWS errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "hint"),
    [
        ("AccessDenied", 403, "these credentials may not do this"),
        ("Throttling", 400, "throttling"),
        ("ExpiredToken", 403, "sign in again"),
        ("InternalFailure", 500, ""),
    ],
)
def test_an_aws_error_is_one_line_with_its_code(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: str,
    status: int,
    hint: str,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    cfn = boto3.client("cloudformation", region_name=REGION)
    stubber = Stubber(cfn)
    stubber.add_client_error(
        "describe_stack_resource",
        service_error_code=code,
        service_message="User: arn:aws:iam::123456789012:user/x is not\nauthorized",
        http_status_code=status,
    )
    stubber.activate()
    lam = boto3.client("lambda", region_name=REGION)
    monkeypatch.setattr(versions, "clients", lambda region: (cfn, lam))
    err = refused(
        *run(capsys, "rollback", "--version", "1"),
        f"rollback: AWS error {code} (DescribeStackResource): User: arn:aws:iam::123456789012:"
        "user/x is not authorized",
        hint,
    )
    assert "\n" not in err.strip()


def test_no_region_is_one_line_saying_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    refused(*run(capsys, "list"), "versions: AWS error NoRegionError", "AWS_REGION=")


def test_missing_credentials_are_one_line_from_the_module(tmp_path: Path) -> None:
    # Given no credentials anywhere (and no instance metadata to ask), run as make runs it
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    done = subprocess.run(
        [sys.executable, "-m", "sklambda_tools.versions", "list", "--region", REGION],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    refused(
        done.returncode,
        done.stdout,
        done.stderr,
        "versions: AWS error NoCredentialsError",
        "aws configure",
    )


# --- make -----------------------------------------------------------------------------------------


def make(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"AWS_REGION", "STACK", "VERSION"}}
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        env=clean | env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def planned(run: subprocess.CompletedProcess[str], command: str) -> str:
    assert run.returncode == 0, run.stderr
    return next(
        line for line in run.stdout.splitlines() if f"sklambda_tools.versions {command}" in line
    )


def test_make_versions_plans_the_list_with_the_stack_and_region_given() -> None:
    plain = planned(make("-n", "versions"), "list")
    assert "--stack" not in plain
    assert "--region" not in plain  # boto3's default chain, not the Makefile's build default
    given = planned(make("-n", "versions", "STACK=penguins-prod", "AWS_REGION=eu-west-1"), "list")
    assert '--stack "penguins-prod"' in given
    assert '--region "eu-west-1"' in given
    from_env = planned(make("-n", "versions", AWS_REGION="eu-central-1"), "list")
    assert '--region "eu-central-1"' in from_env


def test_make_rollback_plans_the_rollback_of_the_version_given() -> None:
    line = planned(make("-n", "rollback", "VERSION=7", "STACK=s"), "rollback")
    assert '--version "7"' in line
    assert '--stack "s"' in line


@pytest.mark.parametrize("args", [("-n", "rollback"), ("-n", "rollback", "STACK=s")])
def test_make_rollback_without_a_version_gives_its_usage(args: tuple[str, ...]) -> None:
    done = make(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "usage: make rollback VERSION=<n> [STACK=...]" in done.stderr
    assert "sklambda_tools.versions" not in done.stdout


def test_make_help_lists_both() -> None:
    out = make("help").stdout
    assert re.search(r"make versions\s+\S", out)
    assert re.search(r"make rollback\s+\S", out)


def test_a_version_of_more_digits_than_any_lambda_publishes_is_refused(
    stack: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a VERSION of 5000 digits (more than Python converts to an integer)
    err = refused(
        *run(capsys, "rollback", "--version", "9" * 5000),
        "VERSION must be a published version's number, not a number of 5000 digits",
    )
    assert len(err) < 200
    assert aliases(stack) == {"PredictFunction": "4", "BatchFunction": "3", "DriftFunction": "3"}


def test_a_stack_with_the_split_function_rolls_it_back_with_the_batch_function(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    names = create_stack(functions=(*FUNCTIONS, "SplitFunction"))
    for logical_id in (*FUNCTIONS, "SplitFunction"):
        publish(names[logical_id], [built("1.0.0", A), built("1.1.0", B)], live="2")
    code, out, err = run(capsys, "rollback", "--version", "1")
    assert (code, err) == (0, "")
    assert aliases(names) == dict.fromkeys((*FUNCTIONS, "SplitFunction"), "1")
    assert f"  SplitFunction: live 2 -> 1, penguins 1.0.0, release {A}" in out
    _, rows = table(run(capsys, "list")[1], "SplitFunction")
    assert " live " in rows["1"]
