"""The split path in the deployed template, read from SAM's transform: least privilege for the
state machine and the functions, the definition's retries and catches, and the wiring."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support import REPO, transformed

DEFINITION = json.loads((REPO / "statemachines" / "split.asl.json").read_text())
DATA = "arn:${AWS::Partition}:s3:::${BucketPrefix}-data-${AWS::AccountId}-${AWS::Region}"
MACHINE = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:"
RETRIED = {"RetryableError", "Lambda.TooManyRequestsException", "Lambda.ServiceException"}


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return transformed({"template": (REPO / "template.yaml", {})})["template"]


def statements(cfn: dict[str, Any], role: str) -> list[dict[str, Any]]:
    properties = cfn["Resources"][role]["Properties"]
    found: list[dict[str, Any]] = []
    for policy in properties.get("Policies", []):
        found += policy["PolicyDocument"]["Statement"]
    return found


def actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def resources(statement: dict[str, Any]) -> list[Any]:
    resource = statement["Resource"]
    return resource if isinstance(resource, list) else [resource]


def subs(statement: dict[str, Any]) -> list[str]:
    return [r["Fn::Sub"] for r in resources(statement) if isinstance(r, dict) and "Fn::Sub" in r]


def tasks(states: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every Task state, the map's item processor's included."""
    found = {}
    for name, state in states.items():
        if state["Type"] == "Task":
            found[name] = state
        if state["Type"] == "Map":
            found.update(tasks(state["ItemProcessor"]["States"]))
    return found


def test_the_state_machine_may_invoke_its_alias_read_plans_and_run_its_own_children(
    cfn: dict[str, Any],
) -> None:
    machine = cfn["Resources"]["SplitStateMachine"]["Properties"]
    name = machine["StateMachineName"]["Fn::Sub"]
    granted = {frozenset(actions(s)): s for s in statements(cfn, "SplitStateMachineRole")}
    assert set(granted) == {
        frozenset({"lambda:InvokeFunction"}),
        frozenset({"s3:GetObject"}),
        frozenset({"states:StartExecution"}),
        frozenset({"states:DescribeExecution", "states:StopExecution"}),
    }
    assert resources(granted[frozenset({"lambda:InvokeFunction"})]) == [
        {"Ref": "SplitFunctionAliaslive"}
    ]
    assert subs(granted[frozenset({"s3:GetObject"})]) == [f"{DATA}/shares/*"]
    assert subs(granted[frozenset({"states:StartExecution"})]) == [MACHINE + name]
    watch = subs(granted[frozenset({"states:DescribeExecution", "states:StopExecution"})])
    assert watch == [MACHINE.replace("stateMachine:", "execution:") + name + "/*"]
    role = cfn["Resources"]["SplitStateMachineRole"]["Properties"]
    assert role["ManagedPolicyArns"] == ["arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"]
    for statement in statements(cfn, "SplitStateMachineRole"):
        assert statement["Effect"] == "Allow" and "*" not in resources(statement)


def test_the_definition_calls_the_alias_it_is_given(cfn: dict[str, Any]) -> None:
    machine = cfn["Resources"]["SplitStateMachine"]["Properties"]
    assert machine["DefinitionSubstitutions"] == {
        "SplitFunctionArn": {"Ref": "SplitFunctionAliaslive"}
    }
    assert machine["StateMachineType"] == "STANDARD"
    for name, task in tasks(DEFINITION["States"]).items():
        assert task["Resource"] == "arn:aws:states:::lambda:invoke", name
        assert task["Parameters"]["FunctionName"] == "${SplitFunctionArn}", name


def test_every_step_is_retried_with_backoff_and_a_failure_is_caught(cfn: dict[str, Any]) -> None:
    states = DEFINITION["States"]
    for name, task in tasks(states).items():
        (retry,) = task["Retry"]
        assert set(retry["ErrorEquals"]) >= RETRIED, name
        assert "States.ALL" not in retry["ErrorEquals"], name  # a file's fault is not retried
        assert retry["BackoffRate"] > 1 and retry["MaxAttempts"] >= 3, name
    for name in ("Plan", "Score", "Finish"):
        (catch,) = states[name]["Catch"]
        assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Abort"}
    assert states["Abort"]["Next"] == "FileFailed" and states["FileFailed"]["Type"] == "Fail"
    assert "Catch" not in states["Abort"]  # its own failure fails the execution


def test_the_map_is_distributed_over_the_plan_at_the_plans_concurrency() -> None:
    score = DEFINITION["States"]["Score"]
    assert score["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    reader = score["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:getObject"
    assert reader["ReaderConfig"] == {"InputType": "JSON"}
    assert reader["Parameters"] == {
        "Bucket.$": "$.plan.Payload.items.bucket",
        "Key.$": "$.plan.Payload.items.key",
    }
    assert score["MaxConcurrencyPath"] == "$.plan.Payload.max_concurrency"
    assert score["ToleratedFailureCount"] == 0 and score["ResultPath"] is None
    assert "ItemBatcher" not in score  # moto's interpreter does not parse it


def test_the_batch_function_may_start_the_split_and_nothing_else_there(
    cfn: dict[str, Any],
) -> None:
    started = [s for s in statements(cfn, "BatchFunctionRole") if actions(s) & {"states:*"}]
    assert started == []
    granted = [
        s
        for s in statements(cfn, "BatchFunctionRole")
        if any(a.startswith("states:") for a in actions(s))
    ]
    assert [actions(s) for s in granted] == [
        {"states:StartExecution"},
        {"states:DescribeExecution"},
    ]
    assert resources(granted[0]) == [{"Ref": "SplitStateMachine"}]
    name = cfn["Resources"]["SplitStateMachine"]["Properties"]["StateMachineName"]["Fn::Sub"]
    execution = MACHINE.replace("stateMachine:", "execution:") + name + ":*"
    assert subs(granted[1]) == [execution]  # its own executions, to find a file's
    env = cfn["Resources"]["BatchFunction"]["Properties"]["Environment"]["Variables"]
    assert env["SKLAMBDA_SPLIT_STATE_MACHINE_ARN"] == {"Ref": "SplitStateMachine"}
    assert env["SKLAMBDA_SPLIT_BYTES"] == {"Ref": "BatchSplitBytes"}


def test_the_split_function_reads_and_writes_its_prefixes_only(cfn: dict[str, Any]) -> None:
    allowed = {
        f"{DATA}/incoming/*": {"s3:GetObject", "s3:GetObjectVersion"},
        f"{DATA}/shares/*": {
            "s3:PutObject",
            "s3:GetObject",
            "s3:GetObjectVersion",
            "s3:DeleteObject",
            "s3:DeleteObjectVersion",
            "s3:AbortMultipartUpload",
        },
        f"{DATA}/predictions/*": {
            "s3:PutObject",
            "s3:AbortMultipartUpload",
            "s3:DeleteObject",
            "s3:DeleteObjectVersion",
        },
        f"{DATA}/errors/*": {
            "s3:PutObject",
            "s3:AbortMultipartUpload",
            "s3:DeleteObject",
            "s3:DeleteObjectVersion",
        },
        f"{DATA}/manifests/*": {"s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"},
        DATA: {"s3:ListBucket", "s3:ListBucketVersions"},
    }
    got: dict[str, set[str]] = {}
    for statement in statements(cfn, "SplitFunctionRole"):
        for action in actions(statement):
            assert action != "*" and not action.endswith(":*"), statement
        if not any(a.startswith("s3:") for a in actions(statement)):
            # SAM's SQSSendMessagePolicy: send to the dead-letter queue alone
            assert actions(statement) == {"sqs:SendMessage*"}, statement
            (queue,) = resources(statement)
            assert queue["Fn::Sub"][1]["queueName"]["Fn::GetAtt"][0] == "BatchDeadLetterQueue"
            continue
        for resource in subs(statement):
            got.setdefault(resource, set()).update(actions(statement))
        if "s3:ListBucketVersions" in actions(statement):
            assert statement["Condition"] == {"StringLike": {"s3:prefix": "shares/*"}}
    assert got == allowed


def test_the_state_machine_is_named_for_the_stack_and_its_failures_alarm(
    cfn: dict[str, Any],
) -> None:
    resources_ = cfn["Resources"]
    alarm = resources_["SplitExecutionsFailedAlarm"]["Properties"]
    assert alarm["Namespace"] == "AWS/States" and alarm["MetricName"] == "ExecutionsFailed"
    assert alarm["Dimensions"] == [
        {"Name": "StateMachineArn", "Value": {"Ref": "SplitStateMachine"}}
    ]
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    rules = resources_["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (shares,) = [r for r in rules if r.get("Prefix") == "shares/"]
    assert shares["Status"] == "Enabled" and shares["ExpirationInDays"] >= 1
    assert shares["NoncurrentVersionExpiration"]["NoncurrentDays"] >= 1
