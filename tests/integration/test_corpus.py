"""Every pipeline of the corpus of ordinary pipelines packages, serves, batch-scores and
drift-checks locally, whatever runtime it gets; at least 90% of them get the onnx runtime.

The corpus (sklambda_tools.examples.corpus) is made the way a user makes pipelines, on data sets
that ship with scikit-learn and palmerpenguins: awkward column names, bare estimators, column
transformers, imputers, one-hot and ordinal encoders, missing values.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from sklambda.manifest import read_manifest
from sklambda.model import load
from sklambda_tools import drift as drift_tool
from sklambda_tools import edge
from sklambda_tools.errors import PackagingError
from sklambda_tools.examples import corpus
from sklambda_tools.local import invoke_function
from sklambda_tools.localbatch import run_batch
from sklambda_tools.package import build

from support import REPO, assert_same_answers, edge_score, event, python_score

MIN_ONNX_SHARE = 0.9
# Each of these needed a change to the export; each must keep the onnx runtime.
MUST_EXPORT = {
    "logistic-scaled": "feature names with spaces",
    "logistic-bare": "a bare estimator on several numeric columns",
    "logistic-onehot": "names with dots, dashes and unicode; numeric and string imputers",
    "boosting-constant-imputer": "a string constant imputation",
    "forest-scaled": "a forest behind a scaler (double preprocessing, float32 trees)",
    "linear-svc-scaled": "a classifier with no probabilities inside a pipeline",
    "penguins-tree-ordinal": "a tree behind imputers and an ordinal encoder",
    "forest-bare": "a forest whose trees' votes tie (exact vote sums)",
    "forest-ordinal": "a forest whose trees' votes tie, behind double preprocessing",
    "penguins-forest-onehot": "a forest with string classes (the labels the vote graph gathers)",
}


@pytest.fixture(autouse=True)
def _restored_env(restore_env: None) -> None:
    """Each test's invocations leave the process environment as they found it."""


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, corpus.Fitted]]:
    root = tmp_path_factory.mktemp("corpus")
    out = {}
    for case in corpus.CASES:
        item = corpus.fit(case)
        path = build(
            item.pipeline,
            item.holdout,
            case.target,
            root / case.name,
            name=case.name,
            train=item.train,
        ).path
        out[case.name] = (path, item)
    return out


def test_the_corpus_is_broad() -> None:
    # Given the corpus, Then it has the pipelines the issue names, on several data sets
    assert len(corpus.CASES) >= 20
    assert len({c.name for c in corpus.CASES}) == len(corpus.CASES)
    assert {"breast_cancer", "iris", "wine", "diabetes", "mixed", "penguins"} <= {
        c.data for c in corpus.CASES
    }


def test_at_least_90_percent_get_the_onnx_runtime_with_parity(
    packaged: dict[str, tuple[Path, corpus.Fitted]],
) -> None:
    runtimes = {name: read_manifest(path).runtime for name, (path, _) in packaged.items()}
    onnx = [name for name, r in runtimes.items() if r.serving == "onnx"]
    # Then every onnx export passed its parity check, and the share is at least 90%
    for name in onnx:
        info = runtimes[name].onnx
        assert info is not None and info.parity.passed, name
    share = len(onnx) / len(runtimes)
    fallbacks = {n: r.reason for n, r in runtimes.items() if r.serving != "onnx"}
    assert share >= MIN_ONNX_SHARE, fallbacks
    for name, why in MUST_EXPORT.items():
        assert name in onnx, (why, runtimes[name].reason)
    # and every fallback says why in full (nothing cut at a fixed length), for each attempt
    for name, reason in fallbacks.items():
        assert reason.startswith("the ONNX export was not used: "), name
        assert "float64" in reason and "float32" in reason, name


def _records(item: corpus.Fitted, rows: int) -> list[dict[str, Any]]:
    frame = item.holdout.drop(columns=[item.case.target]).head(rows)
    records = json.loads(frame.to_json(orient="records"))
    return [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
        for r in records
    ]


@pytest.mark.parametrize("name", [c.name for c in corpus.CASES])
def test_every_pipeline_serves_batch_scores_and_drift_checks(
    name: str, packaged: dict[str, tuple[Path, corpus.Fitted]], tmp_path: Path
) -> None:
    path, item = packaged[name]
    manifest = read_manifest(path)
    instances = _records(item, 12)

    # When the packaged model answers POST /predict the way `make serve` runs it (the runtime
    # the manifest names, chosen without being told)
    request = copy.deepcopy(event("predict-multi.json"))
    request["body"] = json.dumps({"instances": instances})
    answer = invoke_function(REPO, "PredictFunction", request, model_dir=path)
    body = json.loads(answer["body"])
    # Then every instance is scored
    assert answer["statusCode"] == 200, body
    assert len(body["predictions"]) == len(instances)
    assert body["model"]["version"] == manifest.version

    # When the holdout is dropped into the local bucket, Then every row is scored
    csv = tmp_path / f"{name}.csv"
    item.holdout.drop(columns=[item.case.target]).to_csv(csv, index=False)
    done = run_batch(REPO, csv, tmp_path / "out", model_dir=path)
    assert done.manifest is not None and done.manifest["status"] == "succeeded", done.manifest
    assert done.manifest["rows"]["scored"] == len(item.holdout)
    assert done.manifest["rows"]["rejected"] == 0

    # When the training data is checked for drift against its own baselines, Then none is found
    train = tmp_path / "train.csv"
    item.train.drop(columns=[item.case.target]).to_csv(train, index=False)
    assert drift_tool.main(["--data", str(train), "--model", str(path)]) == 0


@pytest.mark.parametrize("name", [c.name for c in corpus.CASES])
def test_every_edge_graph_gives_the_python_answers_in_node(
    name: str, packaged: dict[str, tuple[Path, corpus.Fitted]], tmp_path: Path
) -> None:
    path, item = packaged[name]
    manifest = read_manifest(path)
    if manifest.runtime.edge is None:
        # Then only a model with no ONNX graph goes without one, and the bundle says why
        assert manifest.runtime.onnx is None, name
        with pytest.raises(PackagingError, match="has no ONNX graph"):
            edge.bundle(path, tmp_path)
        return
    # Given its edge bundle, and the holdout with the probe rows (missing values, unseen
    # categories, numbers between the holdout's)
    bundle = edge.bundle(path, tmp_path).path
    probes = json.loads((path / "probes.json").read_text())["rows"]
    instances = [*_records(item, len(item.holdout)), *(p["instance"] for p in probes)]
    # When Node scores them with the module and Python with the onnx runtime
    model = load(path, runtime="onnx")
    # Then the answers are the same: labels, probabilities within the parity tolerance, notes
    expected = python_score(model, instances)
    assert expected["rows"] == list(range(len(instances)))
    assert_same_answers(
        expected, edge_score(bundle, instances), manifest.runtime.edge.parity.tolerance
    )
