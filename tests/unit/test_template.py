"""template.yaml says what the code expects: routes, triggers, prefixes, limits and permissions."""

from __future__ import annotations

from typing import Any

import pytest

from sklambda.batch import INCOMING, output_keys
from sklambda_tools.local import load_template

from support import REPO, V2_PATHS


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(REPO / "template.yaml")


def resources(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_functions_run_python_313_on_the_chosen_architecture(template: dict[str, Any]) -> None:
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    assert globals_["Architectures"] == [{"Ref": "Architecture"}]
    assert template["Parameters"]["Architecture"]["Default"] == "arm64"
    assert globals_["Tracing"] == "Active"


def test_the_api_routes_are_the_handlers_routes(template: dict[str, Any]) -> None:
    import json

    body = template["Resources"]["PredictApi"]["Properties"]["DefinitionBody"]
    in_template = {(path, method) for path, ops in body["paths"].items() for method in ops}
    # docs/openapi.json is generated from the handler's routes (test_openapi keeps it current)
    generated = json.loads((REPO / "docs" / "openapi.json").read_text())
    in_handler = {(path, method) for path, ops in generated["paths"].items() for method in ops}
    native = {("/predict", "post"), ("/model", "get"), ("/health", "get")}
    v2 = {(path, "post" if path.endswith("/infer") else "get") for path in V2_PATHS}
    assert in_template == in_handler == native | v2


def test_every_route_is_secured_by_the_auth_mode(template: dict[str, Any]) -> None:
    body = template["Resources"]["PredictApi"]["Properties"]["DefinitionBody"]
    expected = {
        "Fn::If": ["UseIam", [{"sigv4": []}], {"Fn::If": ["UseApiKey", [{"api_key": []}], []]}]
    }
    for ops in body["paths"].values():
        for op in ops.values():
            assert op["security"] == expected
    assert template["Parameters"]["AuthMode"]["Default"] == "IAM"
    assert set(template["Parameters"]["AuthMode"]["AllowedValues"]) == {"IAM", "API_KEY", "NONE"}
    plan = template["Resources"]["PredictUsagePlan"]
    assert plan["Condition"] == "UseApiKey"
    assert plan["Properties"]["Throttle"] == {
        "RateLimit": {"Ref": "ApiRateLimit"},
        "BurstLimit": {"Ref": "ApiBurstLimit"},
    }


def test_batch_triggers_watch_incoming_for_the_four_formats(template: dict[str, Any]) -> None:
    events = template["Resources"]["BatchFunction"]["Properties"]["Events"].values()
    filters = set()
    for event in events:
        assert event["Type"] == "S3"
        assert event["Properties"]["Bucket"] == {"Ref": "DataBucket"}
        assert event["Properties"]["Events"] == "s3:ObjectCreated:*"
        rules = {r["Name"]: r["Value"] for r in event["Properties"]["Filter"]["S3Key"]["Rules"]}
        filters.add((rules["prefix"], rules["suffix"]))
    assert filters == {(INCOMING, s) for s in (".csv", ".csv.gz", ".jsonl", ".jsonl.gz")}


def test_outputs_go_where_the_trigger_cannot_see(template: dict[str, Any]) -> None:
    keys = output_keys("incoming/a/b.csv")
    for key in (keys.predictions, keys.errors, keys.record):
        assert not key.startswith(INCOMING)
    statements = template["Resources"]["BatchFunction"]["Properties"]["Policies"][0]["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    read = by_sid["ReadIncoming"]["Resource"]["Fn::Sub"]
    assert read.endswith("/incoming/*")
    writes = [r["Fn::Sub"] for r in by_sid["WriteResults"]["Resource"]]
    assert sorted(w.rsplit("/", 2)[-2] for w in writes) == ["errors", "manifests", "predictions"]
    assert all("incoming" not in w for w in writes)


def test_the_bucket_is_named_with_sub_and_never_referenced_by_the_policies(
    template: dict[str, Any],
) -> None:
    name = template["Resources"]["DataBucket"]["Properties"]["BucketName"]
    assert "Fn::Sub" in name
    policies = str(template["Resources"]["BatchFunction"]["Properties"]["Policies"])
    assert "DataBucket" not in policies  # a !Ref here would make a circular dependency
    assert name["Fn::Sub"].split("-data-")[0] == "${BucketPrefix}"


def test_batch_failures_are_bounded_and_land_in_an_encrypted_queue(
    template: dict[str, Any],
) -> None:
    props = template["Resources"]["BatchFunction"]["Properties"]
    config = props["EventInvokeConfig"]
    assert config["MaximumRetryAttempts"] == {"Ref": "BatchMaxRetries"}
    assert set(template["Parameters"]["BatchMaxRetries"]["AllowedValues"]) <= {0, 1, 2}
    assert config["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["BatchDeadLetterQueue", "Arn"]},
    }
    assert (
        template["Resources"]["BatchDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True
    )
    assert props["Environment"]["Variables"]["SKLAMBDA_DEAD_LETTER_QUEUE_URL"] == {
        "Ref": "BatchDeadLetterQueue"
    }
    for setting in ("MemorySize", "Timeout", "ReservedConcurrentExecutions"):
        assert "Ref" in props[setting]


def test_log_groups_have_a_retention(template: dict[str, Any]) -> None:
    groups = resources(template, "AWS::Logs::LogGroup")
    assert set(groups) == {
        "PredictLogGroup",
        "BatchLogGroup",
        "DriftLogGroup",
        "PreTrafficLogGroup",
        "ApiAccessLogGroup",
        "SplitLogGroup",
    }
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    for fn in resources(template, "AWS::Serverless::Function").values():
        assert fn["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] in groups


def test_each_function_gets_the_settings_it_reads(template: dict[str, Any]) -> None:
    from sklambda.settings import (
        PREFIX,
        BatchSettings,
        DriftSettings,
        PredictSettings,
        PreTrafficSettings,
        field_names,
        read_settings,
        required,
        variable,
    )
    from sklambda_tools.local import TemplateResolver

    kinds = {
        "PredictFunction": PredictSettings,
        "BatchFunction": BatchSettings,
        "DriftFunction": DriftSettings,
        "PreTrafficCheckFunction": PreTrafficSettings,
        "SplitFunction": BatchSettings,
    }
    assert set(kinds) == set(resources(template, "AWS::Serverless::Function"))
    # (the hook is given the new version's ARN, which the stack makes)
    version = "arn:aws:lambda:us-east-1:000000000000:function:sklambda-predict:7"
    machine = "arn:aws:states:us-east-1:000000000000:stateMachine:sklambda-split"
    resolver = TemplateResolver(
        template, resources={"PredictFunction.Version": version, "SplitStateMachine": machine}
    )
    for function, kind in kinds.items():
        env = {k: v for k, v in resolver.function_environment(function).items() if v}
        known = {variable(name) for name in field_names(kind)}
        assert {n for n in env if n.startswith(PREFIX)} <= known, function
        assert {variable(n) for n in required(kind)} <= set(env), function
        read_settings(kind, env)  # and what it gets is valid


# --- monitoring: alarms and the dashboard speak the metrics vocabulary --------------------------


def custom_metric_names() -> set[str]:
    from sklambda.metrics import MetricName

    return {v for k, v in vars(MetricName).items() if k.isupper()}


def test_every_alarm_notifies_the_topic(template: dict[str, Any]) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    assert alarms
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
    assert template["Resources"]["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"
    # a key of the stack's own: alarms cannot publish to a topic under alias/aws/sns
    assert template["Resources"]["AlarmTopic"]["Properties"]["KmsMasterKeyId"] == {
        "Ref": "AlarmTopicKey"
    }


def test_the_alarms_cover_what_the_issue_asks(template: dict[str, Any]) -> None:
    watched = set()
    for alarm in resources(template, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        dims = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
        target = dims.get("FunctionName", {}).get("Ref") if "FunctionName" in dims else None
        watched.add((props["MetricName"], target))
    assert watched >= {
        ("5XXError", None),
        ("Duration", "PredictFunction"),
        ("Errors", "PredictFunction"),
        ("Errors", "BatchFunction"),
        ("Throttles", "PredictFunction"),
        ("Throttles", "BatchFunction"),
        ("ApproximateNumberOfMessagesVisible", None),
        ("FilesFailed", None),
        ("MaxFeatureDrift", None),
    }
    window = template["Resources"]["WindowDriftAlarm"]["Properties"]
    assert window["Dimensions"] == [{"Name": "service", "Value": "drift"}]
    drift = template["Resources"]["FeatureDriftAlarm"]["Properties"]
    assert drift["Threshold"] == {"Ref": "DriftThreshold"}
    assert template["Parameters"]["DriftThreshold"]["Default"] == 0.2
    assert template["Resources"]["PredictLatencyAlarm"]["Properties"]["ExtendedStatistic"] == "p99"


def test_custom_metric_alarms_use_names_and_dimensions_the_code_emits(
    template: dict[str, Any],
) -> None:
    from sklambda.metrics import Dimension, MetricName

    for alarm in resources(template, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        if props["Namespace"] != {"Ref": "MetricsNamespace"}:
            continue
        assert props["MetricName"] in custom_metric_names()
        # the batch function and the drift job publish these under the service alone; the
        # predict function its server errors under the service and the version that ran
        dimension, *rest = props["Dimensions"]
        assert dimension["Name"] == Dimension.SERVICE
        if rest:
            assert props["MetricName"] == MetricName.SERVER_ERRORS
            assert rest == [
                {
                    "Name": Dimension.FUNCTION_VERSION,
                    "Value": {"Fn::GetAtt": ["PredictFunction", "Version.Version"]},
                }
            ]
        function = {
            "batch": "BatchFunction",
            "drift": "DriftFunction",
            "predict": "PredictFunction",
        }[dimension["Value"]]
        env = template["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert env["POWERTOOLS_SERVICE_NAME"] == dimension["Value"]


def test_the_dashboard_is_json_and_names_only_known_metrics(template: dict[str, Any]) -> None:
    import json
    import re

    from sklambda_tools.local import TemplateResolver

    body = TemplateResolver(template).resolve(
        template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    )
    dashboard = json.loads(body)
    titles = {w["properties"]["title"] for w in dashboard["widgets"]}
    assert titles == {
        "Requests",
        "Predict latency (ms)",
        "Errors",
        "Predicted class mix",
        "Batch rows scored and rejected",
        "Drift per feature (PSI)",
    }
    searched = set(re.findall(r'MetricName="(\w+)"', body))
    plain = set(re.findall(r'"sklambda", "(\w+)"', body))
    assert searched | plain
    assert (searched | plain) <= custom_metric_names()


def test_capture_goes_through_firehose_to_the_capture_prefix(template: dict[str, Any]) -> None:
    stream = template["Resources"]["CaptureStream"]["Properties"]
    destination = stream["ExtendedS3DestinationConfiguration"]
    assert destination["Prefix"] == "capture/" and destination["CompressionFormat"] == "GZIP"
    predict = template["Resources"]["PredictFunction"]["Properties"]
    env = predict["Environment"]["Variables"]
    assert env["SKLAMBDA_CAPTURE_STREAM"] == {"Ref": "CaptureStream"}
    assert env["SKLAMBDA_CAPTURE_RATE"] == {"Ref": "CaptureRate"}
    assert template["Parameters"]["CaptureRate"]["Default"] == 0.1
    (statement,) = predict["Policies"][0]["Statement"]
    assert statement["Action"] == "firehose:PutRecord"


def test_the_drift_job_runs_on_a_schedule(template: dict[str, Any]) -> None:
    props = template["Resources"]["DriftFunction"]["Properties"]
    assert props["Events"]["Daily"]["Properties"]["Schedule"] == {"Ref": "DriftSchedule"}
    assert template["Parameters"]["DriftSchedule"]["Default"] == "rate(1 day)"
    env = props["Environment"]["Variables"]
    assert env["SKLAMBDA_DRIFT_THRESHOLD"] == {"Ref": "DriftThreshold"}
