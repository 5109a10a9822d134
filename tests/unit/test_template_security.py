"""template.yaml's hardening: data over TLS only, an API throttled and logged in every AuthMode,
bounded concurrency, failures that land in a queue and raise an alarm, a topic the alarms can
publish to. (tests/integration/test_template_tools.py runs checkov and SAM's transform.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sklambda_tools.local import load_template

from support import REPO

NO_VALUE = object()


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(REPO / "template.yaml")


def parameter_values(template: dict[str, Any], **overrides: str) -> dict[str, str]:
    values = {k: str(v.get("Default", "")) for k, v in template["Parameters"].items()}
    unknown = set(overrides) - set(values)
    assert not unknown, unknown
    return {**values, **overrides}


def deployed(template: dict[str, Any], **overrides: str) -> dict[str, Any]:
    """The resources CloudFormation would create with these parameters (the others at their
    defaults): conditions evaluated, ``Fn::If`` chosen, parameters resolved, NoValue dropped."""
    values = parameter_values(template, **overrides)

    def holds(node: Any) -> bool:
        ((key, arg),) = node.items()
        if key == "Fn::Equals":
            left, right = (values[a["Ref"]] if isinstance(a, dict) else str(a) for a in arg)
            return left == right
        if key == "Fn::Not":
            return not holds(arg[0])
        if key == "Fn::And":
            return all(holds(a) for a in arg)
        if key == "Fn::Or":
            return any(holds(a) for a in arg)
        if key == "Condition":
            return holds(template["Conditions"][arg])
        raise AssertionError(f"unexpected condition {node}")

    conditions = {name: holds(node) for name, node in template["Conditions"].items()}

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [r for r in map(resolve, node) if r is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Fn::If":
                name, then, otherwise = arg
                return resolve(then if conditions[name] else otherwise)
            if key == "Ref" and arg == "AWS::NoValue":
                return NO_VALUE
            if key == "Ref" and arg in values:
                return values[arg]
        resolved = {k: resolve(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    return {
        name: resolve(resource)
        for name, resource in template["Resources"].items()
        if conditions.get(resource.get("Condition", ""), True)
    }


AUTH_MODES = ("IAM", "API_KEY", "NONE")


def test_auth_modes_are_the_ones_tested(template: dict[str, Any]) -> None:
    assert set(template["Parameters"]["AuthMode"]["AllowedValues"]) == set(AUTH_MODES)


# --- the data bucket ----------------------------------------------------------------------------


def test_the_data_bucket_refuses_requests_without_tls(template: dict[str, Any]) -> None:
    policy = template["Resources"]["DataBucketPolicy"]
    assert policy["Type"] == "AWS::S3::BucketPolicy" and "Condition" not in policy
    assert policy["Properties"]["Bucket"] == {"Ref": "DataBucket"}
    (deny,) = [
        s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
    ]
    assert deny["Principal"] == "*"
    assert deny["Action"] in ("s3:*", ["s3:*"])
    assert deny["Resource"] == [
        {"Fn::GetAtt": ["DataBucket", "Arn"]},
        {"Fn::Sub": "${DataBucket.Arn}/*"},
    ]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_a_missing_job_record_is_a_404_for_the_batch_function(template: dict[str, Any]) -> None:
    """S3 answers a GetObject of a missing key with 404 only to a caller that may ListBucket, and
    a ListBucket conditioned on s3:prefix never applies to a GetObject (which has no prefix)."""
    statements = template["Resources"]["BatchFunction"]["Properties"]["Policies"][0]["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    bucket = "arn:${AWS::Partition}:s3:::${BucketPrefix}-data-${AWS::AccountId}-${AWS::Region}"
    listing = by_sid["ListForMissingKeys"]
    assert listing["Effect"] == "Allow" and listing["Action"] == "s3:ListBucket"
    assert listing["Resource"] == {"Fn::Sub": bucket}
    assert "Condition" not in listing
    # ...and what it makes a 404: reading a job record that may not exist yet
    assert by_sid["ReadManifests"]["Resource"] == {"Fn::Sub": bucket + "/manifests/*"}
    lists = [s for s in statements if "s3:ListBucket" in json.dumps(s["Action"])]
    assert lists == [listing]


# --- the API ------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth_mode", AUTH_MODES)
def test_the_api_stage_is_throttled_in_every_auth_mode(
    template: dict[str, Any], auth_mode: str
) -> None:
    resources = deployed(template, AuthMode=auth_mode)
    values = parameter_values(template, AuthMode=auth_mode)
    settings = resources["PredictApi"]["Properties"]["MethodSettings"]
    (every_method,) = [s for s in settings if (s["ResourcePath"], s["HttpMethod"]) == ("/*", "*")]
    assert every_method["ThrottlingRateLimit"] == values["ApiRateLimit"]
    assert every_method["ThrottlingBurstLimit"] == values["ApiBurstLimit"]
    assert float(values["ApiRateLimit"]) >= 1 and int(values["ApiBurstLimit"]) >= 1
    assert ("PredictUsagePlan" in resources) == (auth_mode == "API_KEY")


@pytest.mark.parametrize("auth_mode", AUTH_MODES)
def test_predict_has_a_reserved_concurrency_in_every_auth_mode(
    template: dict[str, Any], auth_mode: str
) -> None:
    predict = deployed(template, AuthMode=auth_mode)["PredictFunction"]["Properties"]
    assert predict["ReservedConcurrentExecutions"] == "50"
    parameter = template["Parameters"]["PredictReservedConcurrency"]
    assert parameter["Default"] == 50 and parameter["MinValue"] == 1
    assert template["Resources"]["PredictFunction"]["Properties"][
        "ReservedConcurrentExecutions"
    ] == {"Ref": "PredictReservedConcurrency"}


def test_the_api_writes_an_access_log_with_a_retention(template: dict[str, Any]) -> None:
    setting = template["Resources"]["PredictApi"]["Properties"]["AccessLogSetting"]
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    group = template["Resources"]["ApiAccessLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # one JSON object a request, with the request ids API Gateway requires one of
    line = json.loads(setting["Format"].replace("$context.error.messageString", '"x"'))
    assert line["requestId"] == "$context.requestId"
    assert line["extendedRequestId"] == "$context.extendedRequestId"
    assert {"status", "ip", "caller", "httpMethod", "resourcePath"} <= set(line)


@pytest.mark.parametrize("role", ["create", "existing"])
def test_the_log_group_waits_for_the_logging_role_the_stack_sets(
    template: dict[str, Any], role: str
) -> None:
    """API Gateway refuses an access log until the region has its CloudWatch Logs role: when the
    stack sets it, the stage (through the log group it names) is created after it."""
    resources = deployed(template, ApiGatewayLoggingRole=role)
    tags = resources["ApiAccessLogGroup"]["Properties"].get("Tags", [])
    if role == "create":
        account = resources["ApiGatewayAccount"]
        assert account["Properties"]["CloudWatchRoleArn"] == {
            "Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]
        }
        assert {"Ref": "ApiGatewayAccount"} in [t["Value"] for t in tags]
        for name in ("ApiGatewayAccount", "ApiGatewayCloudWatchRole"):  # other APIs use them
            assert resources[name]["DeletionPolicy"] == "Retain"
    else:
        assert "ApiGatewayAccount" not in resources
        assert "ApiGatewayCloudWatchRole" not in resources
        assert tags == []


# --- the drift job ------------------------------------------------------------------------------


def test_the_drift_job_has_a_failure_destination_and_an_errors_alarm(
    template: dict[str, Any],
) -> None:
    props = template["Resources"]["DriftFunction"]["Properties"]
    config = props["EventInvokeConfig"]
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["DriftDeadLetterQueue", "Arn"]},
    }
    assert 0 <= config["MaximumRetryAttempts"] <= 2
    queue = template["Resources"]["DriftDeadLetterQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    assert props["ReservedConcurrentExecutions"] == 1
    alarms = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and r["Properties"]["MetricName"] == "Errors"
        and r["Properties"].get("Dimensions")
        == [{"Name": "FunctionName", "Value": {"Ref": "DriftFunction"}}]
    ]
    (alarm,) = alarms
    assert alarm["Namespace"] == "AWS/Lambda" and alarm["Statistic"] == "Sum"
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


# --- the alarm topic ----------------------------------------------------------------------------


def test_cloudwatch_may_use_the_alarm_topic_key(template: dict[str, Any]) -> None:
    """CloudWatch alarms cannot publish to a topic under alias/aws/sns (its key policy is AWS's
    and grants them nothing): the topic has a key whose policy lets CloudWatch use it."""
    topic = template["Resources"]["AlarmTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Ref": "AlarmTopicKey"}
    key = template["Resources"]["AlarmTopicKey"]
    assert key["Type"] == "AWS::KMS::Key" and "Condition" not in key
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]

    def actions(statement: dict[str, Any]) -> set[str]:
        action = statement["Action"]
        return {action} if isinstance(action, str) else set(action)

    needed = {"kms:Decrypt", "kms:GenerateDataKey*"}
    (cloudwatch,) = [
        s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert cloudwatch["Effect"] == "Allow" and actions(cloudwatch) == needed
    (root,) = [s for s in statements if "AWS" in s["Principal"]]
    assert root["Principal"]["AWS"] == {
        "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"
    }
    assert root["Effect"] == "Allow" and ("kms:*" in actions(root) or needed <= actions(root))
    assert all(s["Effect"] == "Allow" for s in statements)


# --- batch limits the code reads ----------------------------------------------------------------


def test_the_batch_limits_reach_the_function(template: dict[str, Any]) -> None:
    env = template["Resources"]["BatchFunction"]["Properties"]["Environment"]["Variables"]
    expected = {
        "SKLAMBDA_PASSTHROUGH_COLUMNS": ("BatchPassthroughColumns", ""),
        "SKLAMBDA_UNKNOWN_COLUMNS": ("BatchUnknownColumns", "ignore"),
        "SKLAMBDA_MAX_LINE_BYTES": ("BatchMaxLineBytes", 1_048_576),
        "SKLAMBDA_MAX_COLUMNS": ("BatchMaxColumns", 1000),
        "SKLAMBDA_MAX_EXPANSION": ("BatchMaxExpansion", 100),
    }
    for variable, (parameter, default) in expected.items():
        assert env[variable] == {"Ref": parameter}, variable
        assert template["Parameters"][parameter]["Default"] == default, parameter
    assert "SKLAMBDA_ID_COLUMN" not in env and "BatchIdColumn" not in template["Parameters"]


# --- checkov ------------------------------------------------------------------------------------


def test_every_checkov_skip_gives_its_reason(template: dict[str, Any]) -> None:
    skips = [
        (name, skip)
        for name, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert skip["id"].startswith("CKV_"), name
        assert len(skip.get("comment", "")) > 60, (name, skip["id"])
    # no check is skipped for the whole run
    recipe = (REPO / "Makefile").read_text().split("\nlint-template:")[1].split("\n\n")[0]
    assert "checkov" in recipe and "--skip-check" not in recipe and "soft-fail" not in recipe
