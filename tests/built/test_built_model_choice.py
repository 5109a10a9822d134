"""`make build-host MODEL_NAME=<a model served by the sklearn runtime>`: the built template's
``ServingRuntime`` defaults to that runtime, the model layer holds that model, and the built
predict function answers with the template's defaults (with the onnx default it would answer 503).

It runs its own `sam build` into a temporary directory (about a minute); it needs the SAM CLI
that `make test-built` names in ``$SKLAMBDA_SAM``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from sklambda.manifest import read_manifest
from sklambda_tools.local import TemplateResolver, invoke_built, load_template
from sklambda_tools.package import build

from support import EVENTS, REPO

pytestmark = pytest.mark.skipif(
    not os.environ.get("SKLAMBDA_SAM"), reason="needs the SAM CLI: make test-built"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    # Given a model whose export falls back to the sklearn runtime (a histogram gradient
    # boosting classifier: its graph's float32 thresholds disagree with scikit-learn)
    root = tmp_path_factory.mktemp("other-model")
    frame = pd.DataFrame(
        {"a b": [i * 0.37 % 5 for i in range(300)], "c.d": [i * 0.11 % 3 for i in range(300)]}
    )
    frame["y"] = ((frame["a b"] * 1.3 + frame["c.d"]) % 2 > 1).astype(int)
    model = HistGradientBoostingClassifier(random_state=0).fit(frame[["a b", "c.d"]], frame["y"])
    model_dir = build(model, frame, "y", root / "hgb", name="hgb", runtime="sklearn").path
    # When it is built for this machine
    out = root / "build"
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "build-host",
            f"MODEL_NAME={model_dir}",
            f"HOST_BUILD_DIR={out}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return model_dir, out


def test_the_built_template_and_layer_carry_the_model_and_its_runtime(
    built: tuple[Path, Path],
) -> None:
    model_dir, out = built
    template = load_template(out / "template.yaml")
    assert template["Parameters"]["ServingRuntime"]["Default"] == "sklearn"
    shipped = read_manifest(out / "ModelLayer" / "model")
    assert (shipped.name, shipped.version) == ("hgb", read_manifest(model_dir).version)


def test_the_built_function_answers_with_the_templates_defaults(
    built: tuple[Path, Path], python: str, runtime_paths: list[str]
) -> None:
    _, out = built
    resolver = TemplateResolver(load_template(out / "template.yaml"))  # no parameter given
    request = copy.deepcopy(json.loads((EVENTS / "predict-multi.json").read_text()))
    request["body"] = json.dumps(
        {"instances": [{"a b": 1.5, "c.d": 0.5}, {"a b": 4.0, "c.d": 2.5}]}
    )
    run = invoke_built(
        out, "PredictFunction", request, resolver, python=python, runtime_paths=runtime_paths
    )
    body = json.loads(run.result["body"])
    assert run.result["statusCode"] == 200, body
    assert body["model"]["name"] == "hgb" and len(body["predictions"]) == 2
