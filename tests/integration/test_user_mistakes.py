"""What a new user's own pipeline and data do to the tools: a row the pipeline itself cannot
score is a 4xx naming the instance (never a 500), drift that cannot be checked is not reported
as drift, a TARGET that is not what the pipeline predicts is refused in one line, and the same
pipeline file always gets the same version."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from sklambda.errors import InvalidInput
from sklambda.model import load
from sklambda.scoring import predict_all
from sklambda_tools import drift as drift_tool
from sklambda_tools.local import invoke_function
from sklambda_tools.package import build
from sklambda_tools.package import main as package_main

from support import REPO, event


@pytest.fixture(autouse=True)
def _restored_env(restore_env: None) -> None:
    """The handler invocations leave the process environment as they found it."""


@pytest.fixture(scope="module")
def log_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pipeline (served by the sklearn runtime) that takes the log of its input: any number
    is valid to the schema, but below -1 the pipeline itself raises."""
    x = np.linspace(0, 10, 200)
    frame = pd.DataFrame({"x": x, "y": 3 * np.log1p(x) + 1})
    pipeline = make_pipeline(FunctionTransformer(np.log1p), LinearRegression()).fit(
        frame[["x"]], frame["y"]
    )
    out = tmp_path_factory.mktemp("models") / "log"
    return build(pipeline, frame, "y", out, name="log").path


def test_a_row_the_pipeline_raises_on_is_a_field_error_naming_the_instance(
    log_model: Path,
) -> None:
    model = load(log_model)
    assert model.runtime == "sklearn"
    with pytest.raises(InvalidInput) as caught:
        predict_all(model, [{"x": 1.0}, {"x": -2.0}, {"x": 3.0}, {"x": -5.0}])
    assert [(e.row, e.field) for e in caught.value.errors] == [(1, None), (3, None)]
    assert all("could not be scored" in e.reason for e in caught.value.errors)
    assert len(predict_all(model, [{"x": 1.0}]).predictions()) == 1


def test_the_api_answers_422_not_500(log_model: Path) -> None:
    request = copy.deepcopy(event("predict-multi.json"))
    request["body"] = json.dumps({"instances": [{"x": 2.0}, {"x": -3.0}]})
    answer = invoke_function(REPO, "PredictFunction", request, model_dir=log_model)
    body = json.loads(answer["body"])
    assert answer["statusCode"] == 422, body
    assert [e["path"] for e in body["errors"]] == ["instances[1]"]


def test_drift_that_cannot_be_checked_exits_2_not_1(log_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "rows.csv"
    data.write_text("x\n" + "\n".join(str(v) for v in [*range(300), -4]) + "\n")
    assert drift_tool.main(["--data", str(data), "--model", str(log_model)]) == 2


def _classifier(tmp_path: Path, forest: bool = False) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(0, 1, 200), "b": rng.normal(0, 1, 200)})
    frame["label"] = np.where(frame.a + frame.b > 0, "up", "down")
    # a forest's re-saved pickle changes from one save to the next
    estimator = RandomForestClassifier if forest else LogisticRegression
    pipeline = estimator().fit(frame[["a", "b"]], frame["label"])
    model, data = tmp_path / "pipe.joblib", tmp_path / "holdout.csv"
    joblib.dump(pipeline, model)
    frame.to_csv(data, index=False)
    return model, data


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("a", "the target 'a' is one of the pipeline's features"),
        ("b", "the target 'b' is one of the pipeline's features"),
    ],
)
def test_a_target_that_is_a_feature_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, message: str
) -> None:
    model, data = _classifier(tmp_path)
    argv = ["--model", str(model), "--data", str(data), "--target", target]
    assert package_main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err


def test_a_target_whose_values_are_not_the_classes_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, data = _classifier(tmp_path)
    frame = pd.read_csv(data)
    frame["other"] = np.where(frame.a > 0, "left", "right")
    frame.to_csv(data, index=False)
    argv = ["--model", str(model), "--data", str(data), "--target", "other"]
    assert package_main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "holds values that are not the pipeline's classes (left, right" in err
    assert "Traceback" not in err


def test_the_same_pipeline_file_gets_the_same_version(tmp_path: Path) -> None:
    model, data = _classifier(tmp_path, forest=True)
    versions = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        argv = ["--model", str(model), "--data", str(data), "--target", "label"]
        assert package_main([*argv, "--out", str(out)]) == 0
        versions.append(json.loads((out / "model.json").read_text())["version"])
    assert versions[0] == versions[1]
