"""One model choice for every command: the runtime follows the model's manifest in the local
tools and in the built template, an explicit override wins, and an unknown model is an error
that lists the models there are."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sklambda_tools.local import invoke_function, load_template, model_parameters
from sklambda_tools.localapi import LocalApi
from sklambda_tools.localbatch import run_batch
from sklambda_tools.package import build

from support import REPO, event

SCRIPTS = REPO / "scripts"


@pytest.fixture(autouse=True)
def _restored_env(restore_env: None) -> None:
    """Each test's invocations leave the process environment as they found it."""


@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model packaged for the sklearn runtime (so the template's onnx default is wrong)."""
    frame = pd.DataFrame(
        {"x one": [float(i % 7) for i in range(60)], "x-two": [float(i % 5) for i in range(60)]}
    )
    frame["y"] = (frame["x one"] + frame["x-two"] > 5).astype(int)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(
        frame[["x one", "x-two"]], frame["y"]
    )
    out = tmp_path_factory.mktemp("models") / "toy"
    return build(pipeline, frame, "y", out, name="toy", runtime="sklearn").path


def _predict_event(instances: list[dict[str, object]]) -> dict[str, object]:
    request = copy.deepcopy(event("predict-multi.json"))
    request["body"] = json.dumps({"instances": instances})
    return request


def test_the_local_tools_take_the_runtime_the_manifest_names(sklearn_model: Path) -> None:
    # Given a model whose manifest names the sklearn runtime (the template defaults to onnx)
    assert load_template(REPO / "template.yaml")["Parameters"]["ServingRuntime"]["Default"] == (
        "onnx"
    )
    assert model_parameters(sklearn_model) == {"ServingRuntime": "sklearn"}
    # When it is invoked the way `make invoke` and `make serve` run it, with no runtime given
    answer = invoke_function(
        REPO,
        "PredictFunction",
        _predict_event([{"x one": 1.0, "x-two": 2.0}]),
        model_dir=sklearn_model,
    )
    # Then it answers (the onnx runtime would answer 503: there is no ONNX export)
    assert answer["statusCode"] == 200, answer["body"]
    api = LocalApi(REPO, model_dir=sklearn_model)
    assert api.resolver.values["ServingRuntime"] == "sklearn"


def test_an_explicit_runtime_overrides_the_manifest(sklearn_model: Path) -> None:
    assert model_parameters(sklearn_model, {"ServingRuntime": "onnx"}) == {"ServingRuntime": "onnx"}
    answer = invoke_function(
        REPO,
        "PredictFunction",
        _predict_event([{"x one": 1.0, "x-two": 2.0}]),
        model_dir=sklearn_model,
        parameters={"ServingRuntime": "onnx"},
    )
    # (the model keeps its ONNX export, which --runtime sklearn chose not to serve)
    assert answer["statusCode"] == 200
    assert os.environ["SKLAMBDA_RUNTIME"] == "onnx"


def test_make_batch_scores_with_the_manifest_runtime(sklearn_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("x one,x-two\n1,2\n3,4\n")
    done = run_batch(REPO, data, tmp_path / "out", model_dir=sklearn_model)
    assert done.manifest is not None and done.manifest["status"] == "succeeded"
    assert done.manifest["rows"]["scored"] == 2


def _stamp(built: Path, model: Path, runtime: str) -> subprocess.CompletedProcess[str]:
    """What `make build` runs after `sam build`: scripts/stamp_build.py."""
    return subprocess.run(
        [
            str(REPO / ".venv/bin/python"),
            str(SCRIPTS / "stamp_build.py"),
            str(built),
            "--model",
            str(model),
            "--runtime",
            runtime,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_built_template_defaults_to_the_models_runtime(
    sklearn_model: Path, tmp_path: Path
) -> None:
    # Given a built template as sam build writes it (defaults unchanged)
    built = tmp_path / "build"
    built.mkdir()
    shutil.copy(REPO / "template.yaml", built / "template.yaml")
    before = load_template(built / "template.yaml")
    # When the model's runtime is stamped on it
    run = _stamp(built, sklearn_model, "sklearn")
    assert run.returncode == 0, run.stderr
    # Then the ServingRuntime default changed, and of the parameters only it
    after = load_template(built / "template.yaml")
    assert after["Parameters"]["ServingRuntime"]["Default"] == "sklearn"
    changed = [
        name for name, spec in after["Parameters"].items() if spec != before["Parameters"][name]
    ]
    assert changed == ["ServingRuntime"]
    assert after["Resources"].keys() == before["Resources"].keys()
    # and a runtime the template does not allow is refused
    bad = _stamp(built, sklearn_model, "tensorflow")
    assert bad.returncode == 2 and "must be one of onnx, sklearn" in bad.stderr


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    "target", ["serve", "batch", "invoke", "drift", "openapi", "build", "demo"]
)
def test_an_unknown_model_name_lists_the_models_and_trains_nothing(target: str) -> None:
    before = (REPO / "models" / "penguins" / "model.json").read_bytes()
    run = _make(target, "MODEL_NAME=no-such-model", "FN=PredictFunction", "EVENT=x", "DATA=x")
    assert run.returncode != 0
    assert "no model 'no-such-model'" in run.stderr
    assert "penguins" in run.stderr.split("the models are:")[1]
    assert (REPO / "models" / "penguins" / "model.json").read_bytes() == before


def test_every_command_takes_the_model_and_its_runtime(sklearn_model: Path) -> None:
    # Given a model directory named by path, When each command is planned (make -n)
    plans = {
        t: _make(
            "-n",
            t,
            f"MODEL_NAME={sklearn_model}",
            "FN=PredictFunction",
            "EVENT=e.json",
            "DATA=d.csv",
        ).stdout
        for t in ("serve", "batch", "invoke", "drift", "openapi", "build", "build-host")
    }
    # Then each works on that model
    for target, plan in plans.items():
        assert str(sklearn_model) in plan, target
    # and the build passes the manifest's runtime and stamps it as the built default
    assert "ServingRuntime=sklearn" in plans["build"]
    assert (
        f"stamp_build.py .aws-sam/build --model {sklearn_model} --runtime sklearn"
        in (plans["build"])
    )
    assert (
        f"stamp_build.py .aws-sam/build-host --model {sklearn_model} --runtime sklearn"
        in (plans["build-host"])
    )
    # and another model's OpenAPI document does not replace the example's
    assert "--out out/toy/openapi.json" in plans["openapi"]
    # and SERVING_RUNTIME overrides the manifest everywhere
    override = _make(
        "-n", "serve", "build", f"MODEL_NAME={sklearn_model}", "SERVING_RUNTIME=onnx"
    ).stdout
    assert "--runtime onnx" in override and "ServingRuntime=onnx" in override
