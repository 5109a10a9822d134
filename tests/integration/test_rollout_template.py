"""Safe rollout on what SAM makes of the template: a new model or new code always publishes new
versions and an unchanged one never does; traffic (the routes, the S3 trigger, the schedule)
reaches the functions only through their alias `live`; the predict alias moves by CodeDeploy,
after the pre-traffic hook, rolled back by alarms on the new version alone; SnapStart builds
delete replaced versions."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from sklambda_tools import release
from sklambda_tools.local import load_template

from support import PENGUINS_DIR, REPO, V2_PATHS, float32_copy, transformed

FUNCTIONS = ("PredictFunction", "BatchFunction", "DriftFunction")


def built(
    tmp: Path, model: Path, runtime: str = "onnx", snapstart: str = "None", arch: str | None = None
) -> Path:
    """template.yaml stamped as `make build` stamps the built one (scripts/stamp_build.py)."""
    made = release.release(REPO, model, runtime)
    stamped = release.stamp(load_template(REPO / "template.yaml"), made, runtime, snapstart, arch)
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "template.yaml"
    path.write_text(release.stamped_text(stamped))
    return path


def of_type(cfn: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == kind}


def versions(cfn: dict[str, Any]) -> dict[str, str]:
    """Each function's version resource (logical id), read through its alias."""
    out = {}
    for function in FUNCTIONS:
        alias = cfn["Resources"][f"{function}Aliaslive"]["Properties"]
        assert alias["FunctionName"] == {"Ref": function}
        logical_id, attribute = alias["FunctionVersion"]["Fn::GetAtt"]
        assert attribute == "Version"
        assert cfn["Resources"][logical_id]["Type"] == "AWS::Lambda::Version"
        out[function] = logical_id
    return out


@pytest.fixture(scope="module")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another artifact of the same model (its graph takes float32)."""
    return float32_copy(tmp_path_factory.mktemp("other") / "penguins")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, other_model: Path) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("built")
    return transformed(
        {
            "penguins": (built(tmp / "a", PENGUINS_DIR), {}),
            "penguins again": (built(tmp / "b", PENGUINS_DIR), {}),
            "other model": (built(tmp / "c", other_model), {}),
            "other runtime": (built(tmp / "d", PENGUINS_DIR, "sklearn"), {}),
            "all at once": (built(tmp / "e", PENGUINS_DIR), {"DeploymentType": "AllAtOnce"}),
            "snapstart": (
                built(tmp / "f", PENGUINS_DIR, snapstart="PublishedVersions"),
                {"SnapStart": "PublishedVersions"},
            ),
        }
    )


def test_a_new_model_publishes_new_versions_and_the_same_one_none(made: dict[str, Any]) -> None:
    first, again = versions(made["penguins"]), versions(made["penguins again"])
    # The same artifact, built twice, gives the same version resources: nothing to deploy
    assert first == again
    # Another artifact, or the same one for another runtime layer, gives new ones for every
    # function (the function's own code did not change)
    for other in ("other model", "other runtime"):
        moved = versions(made[other])
        assert all(moved[f] != first[f] for f in FUNCTIONS), other


def test_each_version_names_its_model_and_release(made: dict[str, Any]) -> None:
    made_for = release.release(REPO, PENGUINS_DIR, "onnx")
    cfn = made["penguins"]
    for function, logical_id in versions(cfn).items():
        version = cfn["Resources"][logical_id]
        assert version["Properties"]["Description"] == (
            f"sklambda model=penguins version={made_for.model_version} release={made_for.id}"
        )
        assert version["Properties"]["FunctionName"] == {"Ref": function}
        env = cfn["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert env["SKLAMBDA_RELEASE"] == made_for.id
        # kept when replaced, for make rollback
        assert version["DeletionPolicy"] == "Retain"


def test_a_layer_change_alone_publishes_versions(tmp_path: Path) -> None:
    # Given one stamp, and the model layer's content URI as `sam package` writes it (the
    # S3 key is the content's hash): a layer whose content changed, under an unchanged release
    path = built(tmp_path, PENGUINS_DIR)
    template = load_template(path)
    runs = {}
    for key in ("1111", "2222"):
        template["Resources"]["ModelLayer"]["Properties"]["ContentUri"] = f"s3://b/{key}"
        (tmp_path / key).write_text(release.stamped_text(template))
        runs[key] = (tmp_path / key, {})
    cfn = transformed(runs)
    # Then every function that has the layer still publishes a new version
    one, two = versions(cfn["1111"]), versions(cfn["2222"])
    assert all(one[f] != two[f] for f in FUNCTIONS)


def test_the_release_follows_the_code_and_nothing_else(tmp_path: Path) -> None:
    # Given a copy of what a release is made of
    root = tmp_path / "repo"
    for part in ("src/sklambda", "functions", "layers/onnx", "layers/sklearn"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("layers/Makefile", "layers/platform.mk"):
        shutil.copy(REPO / part, root / part)
    original = release.release(REPO, PENGUINS_DIR, "onnx")
    assert release.release(root, PENGUINS_DIR, "onnx") == original
    # When a file of the runtime, of a function, or of the runtime layer's pins changes,
    # the release changes; a stray bytecode cache does not change it
    (root / "src/sklambda/__pycache__").mkdir(exist_ok=True)
    (root / "src/sklambda/__pycache__/x.pyc").write_bytes(b"cache")
    assert release.release(root, PENGUINS_DIR, "onnx") == original
    seen = {original.id}
    for changed in (
        "src/sklambda/scoring.py",
        "functions/batch/app.py",
        "layers/onnx/requirements.txt",
    ):
        path = root / changed
        text = path.read_text()
        path.write_text(text + "\n# changed\n")
        now = release.release(root, PENGUINS_DIR, "onnx").id
        assert now not in seen, changed
        seen.add(now)
        path.write_text(text)
    assert release.release(root, PENGUINS_DIR, "onnx") == original


def test_traffic_reaches_the_functions_only_through_their_alias(made: dict[str, Any]) -> None:
    cfn = made["penguins"]
    resources = cfn["Resources"]
    # every route of the API calls the predict alias
    paths = resources["PredictApi"]["Properties"]["Body"]["paths"]
    uris = [
        op["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
        for p in paths.values()
        for op in p.values()
    ]
    assert len(uris) == 3 + len(V2_PATHS)  # /predict, /model, /health and the V2 routes
    assert all("/functions/${PredictFunctionAliaslive}/invocations" in u for u in uris)
    # every permission is the alias's
    permissions = of_type(cfn, "AWS::Lambda::Permission")
    assert permissions
    for name, permission in permissions.items():
        target = permission["Properties"]["FunctionName"]
        assert target in ({"Ref": f"{f}Aliaslive"} for f in FUNCTIONS), name
    assert resources["PredictApiPermission"]["Properties"]["FunctionName"] == {
        "Ref": "PredictFunctionAliaslive"
    }
    # the S3 trigger and the schedule call the aliases, and asynchronous failures are those of
    # the alias's invocations
    notifications = resources["DataBucket"]["Properties"]["NotificationConfiguration"]
    configs = notifications["LambdaConfigurations"]
    assert len(configs) == 4
    assert all(c["Function"] == {"Ref": "BatchFunctionAliaslive"} for c in configs)
    (rule,) = of_type(cfn, "AWS::Events::Rule").values()
    assert [t["Arn"] for t in rule["Properties"]["Targets"]] == [{"Ref": "DriftFunctionAliaslive"}]
    for function in ("BatchFunction", "DriftFunction"):
        assert resources[f"{function}EventInvokeConfig"]["Properties"]["Qualifier"] == "live"


def test_the_predict_alias_moves_by_codedeploy_after_the_hook(made: dict[str, Any]) -> None:
    cfn = made["penguins"]
    resources = cfn["Resources"]
    policy = resources["PredictFunctionAliaslive"]["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    assert policy["BeforeAllowTrafficHook"] == {"Ref": "PreTrafficCheckFunction"}
    group = resources[policy["DeploymentGroupName"]["Ref"]]["Properties"]
    assert group["DeploymentConfigName"]["Fn::Sub"][1] == {"ConfigName": "Canary10Percent5Minutes"}
    assert "DEPLOYMENT_STOP_ON_ALARM" in group["AutoRollbackConfiguration"]["Events"]
    # development stacks move at once
    quick = made["all at once"]["Resources"]["PredictFunctionDeploymentGroup"]["Properties"]
    assert quick["DeploymentConfigName"]["Fn::Sub"][1] == {"ConfigName": "AllAtOnce"}
    # batch and drift move at once, without CodeDeploy, but still through their alias
    for function in ("BatchFunction", "DriftFunction"):
        assert "UpdatePolicy" not in resources[f"{function}Aliaslive"]
    assert len(of_type(cfn, "AWS::CodeDeploy::DeploymentGroup")) == 1


def test_only_the_new_versions_alarms_roll_it_back(made: dict[str, Any]) -> None:
    cfn = made["penguins"]
    resources = cfn["Resources"]
    new = versions(cfn)["PredictFunction"]
    group = resources["PredictFunctionDeploymentGroup"]["Properties"]["AlarmConfiguration"]
    assert group["Enabled"] is True
    names = [a["Name"]["Ref"] for a in group["Alarms"]]
    watched = set()
    for name in names:
        props = resources[name]["Properties"]
        dims = {d["Name"]: d["Value"] for d in props["Dimensions"]}
        # each names the new version: an older version's errors, or an alarm already in ALARM
        # before the deploy (its dimensions change with it), never roll the new one back
        version = dims.get("ExecutedVersion", dims.get("FunctionVersion"))
        assert version == {"Fn::GetAtt": [new, "Version"]}, name
        if "ExecutedVersion" in dims:
            assert dims["Resource"] == {"Fn::Sub": "${PredictFunction}:live"}
        assert props["TreatMissingData"] == "notBreaching"
        # and a name with that number: a new alarm each deployment, in no state left over
        assert "-predict-v${" + new + ".Version}-" in props["AlarmName"]["Fn::Sub"], name
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        watched.add(
            (
                props["Namespace"] if isinstance(props["Namespace"], str) else "custom",
                props["MetricName"],
            )
        )
    assert watched == {
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Duration"),
        ("custom", "ServerErrors"),
    }


def test_the_hook_may_invoke_the_predict_versions_and_report_and_nothing_else(
    made: dict[str, Any],
) -> None:
    cfn = made["penguins"]
    resources = cfn["Resources"]
    new = versions(cfn)["PredictFunction"]
    hook = resources["PreTrafficCheckFunction"]["Properties"]
    # SAM's CodeDeploy role may invoke only functions named CodeDeployHook_*
    assert hook["FunctionName"]["Fn::Sub"].startswith("CodeDeployHook_")
    env = hook["Environment"]["Variables"]
    assert env["SKLAMBDA_TARGET_FUNCTION"] == {"Ref": new}
    assert env["SKLAMBDA_MAX_INSTANCES"] == {"Ref": "MaxInstances"}
    role = resources[hook["Role"]["Fn::GetAtt"][0]]["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert {(s["Action"], str(s["Resource"])) for s in statements} == {
        ("lambda:InvokeFunction", str({"Fn::Sub": "${PredictFunction.Arn}:*"})),
        (
            "codedeploy:PutLifecycleEventHookExecutionStatus",
            str(
                {
                    "Fn::Sub": "arn:${AWS::Partition}:codedeploy:${AWS::Region}:"
                    "${AWS::AccountId}:deploymentgroup:${ServerlessDeploymentApplication}/*"
                }
            ),
        ),
    }
    # the hook itself is not rolled out (no alias of its own)
    assert "PreTrafficCheckFunctionAliaslive" not in resources


def test_snapstart_builds_delete_replaced_versions(made: dict[str, Any]) -> None:
    cfn = made["snapstart"]
    resources = cfn["Resources"]
    for function, logical_id in versions(cfn).items():
        expected = "Retain" if function == "DriftFunction" else "Delete"
        assert resources[logical_id]["DeletionPolicy"] == expected, function
    for function in ("PredictFunction", "BatchFunction"):
        assert resources[function]["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
        assert made["penguins"]["Resources"][function]["Properties"]["SnapStart"] == {
            "ApplyOn": "None"
        }
    # switching SnapStart publishes new versions of the two (the same release otherwise)
    plain, snapping = versions(made["penguins"]), versions(cfn)
    assert plain["PredictFunction"] != snapping["PredictFunction"]
    assert plain["BatchFunction"] != snapping["BatchFunction"]
    assert plain["DriftFunction"] == snapping["DriftFunction"]
    # and a deploy must ask for what the build chose
    (rule,) = cfn["Rules"]["SnapStartMatchesTheBuild"]["Assertions"]
    assert rule["Assert"] == {"Fn::Equals": [{"Ref": "SnapStart"}, "PublishedVersions"]}
    (default,) = made["penguins"]["Rules"]["SnapStartMatchesTheBuild"]["Assertions"]
    assert default["Assert"] == {"Fn::Equals": [{"Ref": "SnapStart"}, "None"]}


def test_stamping_refuses_a_template_without_its_places(tmp_path: Path) -> None:
    made_for = release.release(REPO, PENGUINS_DIR, "onnx")
    template = load_template(REPO / "template.yaml")
    del template["Resources"]["BatchFunction"]["Properties"]["AutoPublishAlias"]
    with pytest.raises(ValueError, match="BatchFunction publishes no versions"):
        release.stamp(template, made_for, "onnx")
    with pytest.raises(ValueError, match="SnapStart must be one of"):
        release.stamp(load_template(REPO / "template.yaml"), made_for, "onnx", "Always")
    with pytest.raises(ValueError, match="ServingRuntime must be one of"):
        release.release(REPO, PENGUINS_DIR, "tensorflow")
    with pytest.raises(ValueError, match="Architecture must be one of"):
        release.stamp(load_template(REPO / "template.yaml"), made_for, "onnx", "None", "riscv")


def test_a_deploy_must_ask_for_what_the_build_made(tmp_path: Path) -> None:
    # Given a build for the sklearn runtime on x86_64 with SnapStart
    path = built(tmp_path, PENGUINS_DIR, "sklearn", "PublishedVersions", "x86_64")
    template = load_template(path)
    chosen = {
        "ServingRuntime": "sklearn",
        "Architecture": "x86_64",
        "SnapStart": "PublishedVersions",
    }
    rules = template["Rules"]
    for name, value in chosen.items():
        # Then its defaults are the build's
        assert template["Parameters"][name]["Default"] == value
        # and the rule that CloudFormation checks before any change holds a deploy to them
        (assertion,) = rules[release.BUILD_RULES[name]]["Assertions"]
        assert assertion["Assert"] == {"Fn::Equals": [{"Ref": name}, value]}
        assert "build" in assertion["AssertDescription"]
    # and the rules are CloudFormation's, passed on by SAM's transform as they are
    cfn = transformed({"built": (path, {})})["built"]
    assert cfn["Rules"] == rules
