"""The edge: the bundle `make edge` writes, the graph the edge runtimes read, and the module's
answers in Node against Python's, row for row and reason for reason.

The corpus of ordinary pipelines is checked the same way in test_corpus.py; the page in a real
browser in test_edge_browser.py; the module's own rules with Node's test runner (edge/test/).
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from sklambda.manifest import MANIFEST_FILE, Feature, read_manifest, sha256_bytes
from sklambda.model import load
from sklambda_tools import edge
from sklambda_tools.errors import PackagingError
from sklambda_tools.local import invoke_function
from sklambda_tools.package import Packaged

from support import (
    BIRD,
    PENGUINS_DIR,
    REPO,
    assert_same_answers,
    edge_score,
    event,
    python_score,
)


@pytest.fixture(scope="module")
def penguins_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return edge.bundle(PENGUINS_DIR, tmp_path_factory.mktemp("edge")).path


# --- the bundle ------------------------------------------------------------------------------


def test_the_bundle_holds_the_graph_manifest_module_page_and_onnxruntime_web(
    tmp_path: Path,
) -> None:
    made = edge.bundle(PENGUINS_DIR, tmp_path)
    manifest = read_manifest(PENGUINS_DIR)
    assert made.path == tmp_path / "penguins"
    assert set(made.files) == {
        "model.onnx",
        "manifest.json",
        "sklambda-edge.js",
        *edge.PAGE_FILES,
        *(f"ort/{name}" for name in edge.ORT_FILES),
    }
    # Then the graph is the packaged one, ends in tensors, and is what the manifest names
    graph = (made.path / "model.onnx").read_bytes()
    assert sha256_bytes(graph) == manifest.artifacts["model.onnx"].sha256
    model = onnx.load_from_string(graph)
    assert "ZipMap" not in {n.op_type for n in model.graph.node}
    assert all(o.type.HasField("tensor_type") for o in model.graph.output)
    shown = json.loads((made.path / "manifest.json").read_text())
    assert {k: shown[k] for k in manifest.public()} == json.loads(json.dumps(manifest.public()))
    assert [f["condition"] for f in shown["known_faults"]] == [
        f.condition for f in manifest.known_faults
    ]
    assert shown["edge"]["sha256"] == sha256_bytes(graph)
    assert shown["edge"]["outputs"] == ["label", "probabilities"]
    assert shown["edge"]["parity"]["passed"] is True
    # and the goal: under 100 KB without onnxruntime's files
    assert made.own_bytes < 100 * 1024
    assert made.ort_bytes > 1024 * 1024  # the WebAssembly runtime is really there
    assert (made.path / "sklambda-edge.js").read_bytes() == (
        REPO / "edge" / "src" / "sklambda-edge.js"
    ).read_bytes()


def test_a_second_bundle_replaces_the_first_whole(tmp_path: Path) -> None:
    first = edge.bundle(PENGUINS_DIR, tmp_path)
    (first.path / "stale.txt").write_text("left over")
    again = edge.bundle(PENGUINS_DIR, tmp_path)
    assert not (again.path / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["penguins"]


def _served_by_sklearn(directory: Path, reason: str) -> None:
    """Make the artifact in ``directory`` one with no ONNX graph, as the packager writes it
    when no export agreed with the pipeline."""
    data = json.loads((directory / MANIFEST_FILE).read_text())
    data["runtime"] = {"serving": "sklearn", "reason": reason}
    del data["artifacts"]["model.onnx"]
    (directory / MANIFEST_FILE).write_text(json.dumps(data))
    (directory / "model.onnx").unlink()


def test_a_model_with_no_onnx_graph_is_refused_naming_why(
    penguins_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _served_by_sklearn(penguins_copy, "the ONNX export was not used: conversion failed")
    out = tmp_path / "out"
    with pytest.raises(PackagingError) as refused:
        edge.bundle(penguins_copy, out)
    message = str(refused.value)
    assert "is served by the sklearn runtime and has no ONNX graph" in message
    assert "the ONNX export was not used: conversion failed" in message
    assert not out.exists()
    # and `make edge` says so and fails
    assert edge.main(["--model", str(penguins_copy), "--out", str(out)]) == 2
    assert (
        "make edge: refused: model 'penguins' is served by the sklearn" in capsys.readouterr().err
    )


def test_a_pipeline_skl2onnx_cannot_convert_gets_no_edge_graph(
    packaged: dict[str, Packaged], tmp_path: Path
) -> None:
    manifest = packaged["unconvertible"].manifest
    assert manifest.runtime.onnx is None and manifest.runtime.edge is None
    with pytest.raises(PackagingError, match="sklearn runtime and has no ONNX graph"):
        edge.bundle(packaged["unconvertible"].path, tmp_path)


def test_a_model_packaged_before_edge_graphs_is_told_to_package_again(
    penguins_copy: Path, tmp_path: Path
) -> None:
    data = json.loads((penguins_copy / MANIFEST_FILE).read_text())
    del data["runtime"]["edge"]
    (penguins_copy / MANIFEST_FILE).write_text(json.dumps(data))
    assert read_manifest(penguins_copy).runtime.onnx is not None
    with pytest.raises(PackagingError, match=r"has no edge graph.*package it again"):
        edge.bundle(penguins_copy, tmp_path)


def test_a_tampered_graph_is_not_bundled(penguins_copy: Path, tmp_path: Path) -> None:
    graph = bytearray((penguins_copy / "model.onnx").read_bytes())
    graph[-1] ^= 0xFF
    (penguins_copy / "model.onnx").write_bytes(bytes(graph))
    with pytest.raises(PackagingError, match=r"model\.onnx does not match model\.json"):
        edge.bundle(penguins_copy, tmp_path)


def test_without_onnxruntime_web_installed_the_refusal_says_how_to_install_it(
    tmp_path: Path,
) -> None:
    bare = tmp_path / "edge"
    (bare / "src").mkdir(parents=True)
    with pytest.raises(PackagingError, match=r"onnxruntime-web is not installed.*npm ci"):
        edge.bundle(PENGUINS_DIR, tmp_path / "out", edge_dir=bare)


# --- the graph the edge runtimes read --------------------------------------------------------


def _zipmap_classifier() -> tuple[bytes, np.ndarray]:
    """A classifier exported as skl2onnx does by default: ending in a ZipMap."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    model = LogisticRegression().fit(x, y)
    graph = to_onnx(model, x[:1].astype(np.float32), target_opset={"": 21, "ai.onnx.ml": 3})
    return graph.SerializeToString(), x[:20].astype(np.float32)


def test_a_zipmap_is_cut_off_and_its_probabilities_become_the_output() -> None:
    graph, rows = _zipmap_classifier()
    assert "ZipMap" in {n.op_type for n in onnx.load_from_string(graph).graph.node}
    cut, outputs = edge.edge_graph(graph)
    model = onnx.load_from_string(cut)
    assert "ZipMap" not in {n.op_type for n in model.graph.node}
    assert all(o.type.HasField("tensor_type") for o in model.graph.output)
    assert len(outputs) == 2
    # Then it gives the labels and, as one tensor, the probabilities the ZipMap mapped
    before = ort.InferenceSession(graph).run(None, {"X": rows})
    after = ort.InferenceSession(cut).run(None, {"X": rows})
    assert (after[0] == before[0]).all()
    mapped = np.array([[row[c] for c in ("no", "yes")] for row in before[1]])
    np.testing.assert_array_equal(after[1], mapped)
    # and onnxruntime-node reads it, where it cannot read the ZipMap's sequence of maps
    script = (
        "const ort = require('onnxruntime-node');"
        "ort.InferenceSession.create(require('fs').readFileSync(process.argv[1]))"
        ".then(s => s.run({X: new ort.Tensor('float32', new Float32Array(6), [2, 3])}))"
        ".then(r => console.log(JSON.stringify(Object.values(r).map(t => t.type))))"
        ".catch(e => { console.log(JSON.stringify(String(e))); process.exit(1); });"
    )
    for candidate, readable in ((cut, True), (graph, False)):
        path = REPO / "out" / "edge-zipmap-test.onnx"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(candidate)
        done = subprocess.run(
            ["node", "-e", script, str(path)],
            cwd=REPO / "edge",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        path.unlink()
        assert (done.returncode == 0) is readable, done.stdout + done.stderr
        if readable:
            assert json.loads(done.stdout) == ["string", "float32"]


def test_a_graph_with_a_sequence_input_is_not_edge_ready() -> None:
    seq = onnx.helper.make_value_info(
        "rows",
        onnx.helper.make_sequence_type_proto(
            onnx.helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, None)
        ),
    )
    out = onnx.helper.make_tensor_value_info("n", onnx.TensorProto.INT64, [])
    node = onnx.helper.make_node("SequenceLength", ["rows"], ["n"])
    graph = onnx.helper.make_model(
        onnx.helper.make_graph([node], "g", [seq], [out]),
        opset_imports=[onnx.helper.make_opsetid("", 21)],
    )
    with pytest.raises(edge.NotEdgeReady, match="input 'rows' is not a tensor"):
        edge.edge_graph(graph.SerializeToString())


def test_packaging_records_the_edge_graph_with_its_parity(packaged: dict[str, Packaged]) -> None:
    for name in ("binary", "multiclass_no_proba", "regressor", "forest_regressor"):
        runtime = packaged[name].manifest.runtime
        assert runtime.onnx is not None and runtime.edge is not None, name
        # the serving graph ends in tensors (exported with zipmap=False): it is the edge's
        assert runtime.edge.file == runtime.onnx.file
        assert runtime.edge.parity == runtime.onnx.parity and runtime.edge.parity.passed
        assert runtime.edge.parity.tolerance == 1e-5


# --- the same answers ------------------------------------------------------------------------


def test_the_holdout_and_the_probes_get_the_python_answers_in_node(
    packaged: dict[str, Packaged],
    tmp_path: Path,
    holdout_frame: Any,
    to_records: Any,
) -> None:
    # Given models with integer, boolean, numeric and categorical features (gaps included),
    # classifiers with and without probabilities and regressors
    for name in ("binary", "binary_no_proba", "multiclass", "regressor", "forest_regressor"):
        result = packaged[name]
        bundle = edge.bundle(result.path, tmp_path / name).path
        probes = json.loads((result.path / "probes.json").read_text())["rows"]
        instances = [*to_records(holdout_frame), *(p["instance"] for p in probes)]
        model = load(result.path, runtime="onnx")
        expected = python_score(model, instances)
        assert len(expected["rows"]) == len(instances), name
        assert result.manifest.runtime.edge is not None
        tolerance = result.manifest.runtime.edge.parity.tolerance
        assert_same_answers(expected, edge_score(bundle, instances), tolerance)


def test_a_float32_graph_gets_the_python_answers_in_node(
    float32_penguins: Path, tmp_path: Path
) -> None:
    bundle = edge.bundle(float32_penguins, tmp_path).path
    assert json.loads((bundle / "manifest.json").read_text())["edge"]["number_limit"] is not None
    rows = [
        BIRD,
        {**BIRD, "bill_length_mm": 3.5e38},  # float32 holds it
        {**BIRD, "bill_length_mm": 3.5e38 * 10},  # out of range for float32
        {**BIRD, "body_mass_g": 1 / 3},
    ]
    model = load(float32_penguins, runtime="onnx")
    assert_same_answers(python_score(model, rows), edge_score(bundle, rows), 1e-5)


def test_predict_answers_as_the_api_does(penguins_bundle: Path) -> None:
    # Given requests the API scores, and requests it refuses with 422
    requests = [
        [BIRD],
        [BIRD, {**BIRD, "island": "Atlantis", "bill_length_mm": 99.0}],
        [BIRD, {**BIRD, "bill_depth_mm": "deep", "wings": 2}, {"island": None}],
        [{**BIRD, "flipper_length_mm": math.inf}, 7, []],
    ]
    for instances in requests:
        request = copy.deepcopy(event("predict-multi.json"))
        request["body"] = json.dumps({"instances": instances})
        answer = invoke_function(REPO, "PredictFunction", request, model_dir=PENGUINS_DIR)
        api = json.loads(answer["body"])
        ours = edge_score(penguins_bundle, instances, predict=True)
        if answer["statusCode"] == 200:
            # Then the same prediction objects and notes
            assert ours.keys() == {"model", "predictions", "notes"}
            assert ours["model"] == api["model"] and ours["notes"] == api["notes"]
            for got, want in zip(ours["predictions"], api["predictions"], strict=True):
                assert got["label"] == want["label"]
                gaps = [abs(got["probabilities"][c] - p) for c, p in want["probabilities"].items()]
                assert max(gaps) <= 1e-5
        else:
            # or the same refusal, reason for reason
            assert answer["statusCode"] == 422
            assert ours == {"message": api["message"], "errors": api["errors"]}


# --- messy rows: the same reasons, word for word ---------------------------------------------

# Text of every assigned character (no Cn: Python's and Node's Unicode versions differ there),
# lone surrogates, quotes, controls and long strings that are cut when echoed.
_MESSY = ["\ud800", "a\udfffb", "it's", 'say "x"', "tab\tline\n", "C:\\x", "Ärger", "😀" * 45]
_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=["Cn"]), max_size=50), st.sampled_from(_MESSY)
)
_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([3.5e38, 1e300, -1e-300, 2.0**63, 0.37]),
    _TEXT,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _rows(features: list[Feature]) -> st.SearchStrategy[Any]:
    """Rows near the schema: a valid row with up to three features dropped or given a messy
    value (a category of the schema, an unseen or messy one, a number outside the training
    range, a value of another type), now and then with unknown keys; and now and then no object
    at all."""

    def valid(f: Feature) -> st.SearchStrategy[Any]:
        if f.categories:
            return st.sampled_from(f.categories)
        if f.kind == "boolean":
            return st.booleans()
        low, high = (f.min, f.max) if f.min is not None and f.max is not None else (-5.0, 5.0)
        if f.kind == "integer":
            return st.integers(math.ceil(low), math.floor(high))
        return st.floats(low, high)

    def messy(f: Feature) -> st.SearchStrategy[Any]:
        near: list[st.SearchStrategy[Any]] = [_VALUE, st.sampled_from(_MESSY)]
        if f.min is not None and f.max is not None:
            span = abs(f.max - f.min) + 1
            near.append(st.floats(f.min - 3 * span, f.max + 3 * span))
            near.append(st.integers(int(f.min) - 5, int(f.max) + 5))
        return st.one_of(near)

    def noteworthy(f: Feature) -> st.SearchStrategy[Any]:
        """A value scored with a note, or refused naming the schema's values: an unseen or
        messy category, a number outside the training range."""
        if f.kind == "categorical":
            return st.one_of(st.sampled_from(_MESSY), _TEXT)
        return messy(f)

    @st.composite
    def row(draw: st.DrawFn) -> Any:
        record = {f.name: draw(valid(f)) for f in features}
        mode = draw(st.integers(0, 3))
        if mode == 1:  # one or two values the model scores with a note (or refuses)
            for f in draw(st.lists(st.sampled_from(features), min_size=1, max_size=2)):
                record[f.name] = draw(noteworthy(f))
        elif mode >= 2:  # up to three features dropped or messy
            for f in draw(st.lists(st.sampled_from(features), min_size=1, max_size=3)):
                if draw(st.integers(0, 4)) == 0:
                    record.pop(f.name, None)
                else:
                    record[f.name] = draw(messy(f))
        if draw(st.integers(0, 4)) == 0:
            record.update(draw(st.dictionaries(_TEXT, _VALUE, min_size=1, max_size=2)))
        return record

    @st.composite
    def instance(draw: st.DrawFn) -> Any:
        return draw(_VALUE) if draw(st.integers(0, 9)) == 9 else draw(row())  # mostly objects

    return instance()


@pytest.mark.parametrize("name", ["penguins", "binary"])
def test_messy_rows_get_the_same_reasons_and_notes_in_node(
    name: str, packaged: dict[str, Packaged], penguins_bundle: Path, tmp_path_factory: Any
) -> None:
    path = PENGUINS_DIR if name == "penguins" else packaged[name].path
    bundle = (
        penguins_bundle
        if name == "penguins"
        else edge.bundle(path, tmp_path_factory.mktemp("messy")).path
    )
    model = load(path, runtime="onnx")

    @settings(
        max_examples=20,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the message names the row
    )
    @given(st.lists(_rows(model.manifest.features), min_size=20, max_size=80))
    def same(instances: list[Any]) -> None:
        # the values the API would read from the same JSON text
        sent = json.loads(json.dumps(instances, allow_nan=True))
        assert_same_answers(python_score(model, sent), edge_score(bundle, sent), 1e-5)

    same()
