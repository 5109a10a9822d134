"""The edge: the packaged model scored on the device, with no server (``make edge``).

Two halves:

- at packaging, ``edge_graph`` turns the serving ONNX graph into the one the edge runtimes read
  (onnxruntime-web in a browser, onnxruntime-node, the mobile runtimes): only plain tensors out.
  skl2onnx ends a classifier in a ZipMap (a sequence of maps) unless told ``zipmap=False``;
  those runtimes cannot read one, so a ZipMap is cut off and its probability tensor becomes the
  output. The package step checks that graph against the pipeline on the parity rows, with the
  serving graph's tolerance, and records it in ``model.json`` (``runtime.edge``);
- ``bundle`` writes ``dist/edge/<name>/``: the edge graph (its SHA-256 checked on the way), the
  public manifest with what the JavaScript module needs to validate and feed the graph, the
  module (``edge/src/sklambda-edge.js``), the static page (``edge/page/``) and, under ``ort/``,
  the onnxruntime-web files the page loads (from ``edge/node_modules``, ``npm ci``).

A model with no edge graph (served by the ``sklearn`` runtime because no ONNX export agreed with
the pipeline) is refused, naming why.

Usage::

    python -m sklambda_tools.edge --model models/penguins --out dist/edge
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sklambda.errors import ModelLoadError
from sklambda.manifest import Manifest, OnnxInfo, read_manifest, sha256_bytes
from sklambda.model import UNSEEN, verify_artifact
from sklambda.schema import number_limit
from sklambda.typed import as_dict
from sklambda_tools.errors import PackagingError

ROOT = Path(__file__).resolve().parents[2]
EDGE_DIR = ROOT / "edge"
EDGE_FILE = "model.edge.onnx"
"""The edge graph's artifact name when it differs from the serving graph."""
BUNDLE_FORMAT = 1
MODULE = "sklambda-edge.js"
PAGE_FILES = ("index.html", "page.js", "page.css")
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
"""What the page's onnxruntime-web needs: the WebAssembly build's module, its loader and the
binary (one build for every browser with WebAssembly SIMD; run single-threaded)."""

# The tensor element types onnxruntime-web and onnxruntime-node take and give (onnx.TensorProto).
_FLOAT, _INT32, _STRING, _BOOL, _DOUBLE, _INT64 = 1, 6, 8, 9, 11, 7
_EDGE_TYPES = frozenset({_FLOAT, _INT32, _STRING, _BOOL, _DOUBLE, _INT64})


class NotEdgeReady(Exception):
    """A graph the edge runtimes cannot read; the message says why."""


def edge_graph(graph: bytes) -> tuple[bytes, list[str]]:
    """The graph the edge runtimes read, and its output names.

    Every ZipMap is removed and the probability tensor it read becomes the output in its place;
    the inputs are kept. The bytes are ``graph`` itself when there is nothing to change.

    Raises
    ------
    NotEdgeReady
        An input or output that is no tensor of a type those runtimes have, or a ZipMap whose
        input's type cannot be inferred.
    """
    import onnx

    model = onnx.load_from_string(graph)
    zipmaps = [node for node in model.graph.node if node.op_type == "ZipMap"]
    if zipmaps:
        inferred = onnx.shape_inference.infer_shapes(model)
        types = {v.name: v.type for v in inferred.graph.value_info}
        for node in zipmaps:
            source, target = node.input[0], node.output[0]
            if source not in types:
                raise NotEdgeReady(f"the type of {source!r}, which a ZipMap reads, is unknown")
            for position, out in enumerate(model.graph.output):
                if out.name == target:
                    replacement = onnx.ValueInfoProto()
                    replacement.name = source
                    replacement.type.CopyFrom(types[source])
                    model.graph.output.remove(out)
                    model.graph.output.insert(position, replacement)
            model.graph.node.remove(node)
        graph = bytes(model.SerializeToString())
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for value in values:
            if not value.type.HasField("tensor_type"):
                raise NotEdgeReady(f"the graph's {kind} {value.name!r} is not a tensor")
            if value.type.tensor_type.elem_type not in _EDGE_TYPES:
                raise NotEdgeReady(
                    f"the graph's {kind} {value.name!r} has a tensor type the edge runtimes lack"
                )
    return graph, [o.name for o in model.graph.output]


def refusal(manifest: Manifest) -> str | None:
    """Why ``manifest``'s model has no edge bundle, or ``None`` when it has one."""
    runtime = manifest.runtime
    if runtime.edge is not None and runtime.onnx is not None:
        return None
    if runtime.onnx is None:
        return (
            f"model {manifest.name!r} is served by the {runtime.serving} runtime and has no "
            f"ONNX graph ({runtime.reason}); the edge runs ONNX graphs only"
        )
    return (
        f"model {manifest.name!r} has no edge graph: it was packaged before edge graphs were "
        "made, or its graph is one the edge runtimes cannot read; package it again"
    )


@dataclass(frozen=True)
class Bundle:
    path: Path
    files: dict[str, int]
    """Every file of the bundle and its size in bytes (``ort/...`` for onnxruntime's)."""

    @property
    def own_bytes(self) -> int:
        """The bundle without the onnxruntime files."""
        return sum(n for name, n in self.files.items() if not name.startswith("ort/"))

    @property
    def ort_bytes(self) -> int:
        return sum(n for name, n in self.files.items() if name.startswith("ort/"))


def bundle_manifest(manifest: Manifest, graph: bytes) -> dict[str, Any]:
    """``manifest.json`` of a bundle: the public manifest, the known faults, and how the module
    validates and feeds the graph (the same rules as the API's)."""
    onnx, edge = manifest.runtime.onnx, manifest.runtime.edge
    assert onnx is not None and edge is not None
    limit = number_limit(manifest)
    return {
        "format": BUNDLE_FORMAT,
        **manifest.public(),
        "known_faults": [as_dict(f) for f in manifest.known_faults],
        "edge": {
            "graph": edge.file,
            "sha256": sha256_bytes(graph),
            "bytes": len(graph),
            "inputs": _graph_inputs(manifest, onnx),
            "input_dtype": onnx.input_dtype,
            "missing_category": onnx.missing_category,
            "unseen_category": UNSEEN,
            "number_limit": None if math.isinf(limit) else limit,
            "outputs": edge.outputs,
            "parity": as_dict(edge.parity),
        },
    }


def _graph_inputs(manifest: Manifest, onnx: OnnxInfo) -> list[str]:
    return list(onnx.inputs) if onnx.inputs is not None else [f.name for f in manifest.features]


def bundle(model_dir: Path, out: Path, *, edge_dir: Path = EDGE_DIR) -> Bundle:
    """Write the edge bundle of the model in ``model_dir`` to ``out/<name>/`` (replaced whole).

    Raises
    ------
    PackagingError
        The model has no edge graph (``refusal``), an artifact does not match its SHA-256, or
        onnxruntime-web is not installed in ``edge_dir`` (``npm ci`` there).
    """
    try:
        manifest = read_manifest(model_dir)
    except ModelLoadError as exc:
        raise PackagingError(str(exc)) from exc
    why = refusal(manifest)
    if why is not None:
        raise PackagingError(why)
    edge = manifest.runtime.edge
    assert edge is not None
    try:
        graph = verify_artifact(model_dir, manifest, edge.file)
    except ModelLoadError as exc:
        raise PackagingError(str(exc)) from exc
    ort = edge_dir / "node_modules" / "onnxruntime-web" / "dist"
    missing = [name for name in ORT_FILES if not (ort / name).is_file()]
    if missing:
        raise PackagingError(
            f"onnxruntime-web is not installed in {edge_dir}/node_modules (missing {missing[0]}); "
            f"run npm ci there (make edge does)"
        )
    target = out / manifest.name
    staging = out / f".{manifest.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "ort").mkdir(parents=True)
    (staging / edge.file).write_bytes(graph)
    text = json.dumps(bundle_manifest(manifest, graph), indent=2, allow_nan=False) + "\n"
    (staging / "manifest.json").write_text(text, encoding="utf-8")
    shutil.copyfile(edge_dir / "src" / MODULE, staging / MODULE)
    for name in PAGE_FILES:
        shutil.copyfile(edge_dir / "page" / name, staging / name)
    for name in ORT_FILES:
        shutil.copyfile(ort / name, staging / "ort" / name)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    files = {
        str(p.relative_to(target)): p.stat().st_size
        for p in sorted(target.rglob("*"))
        if p.is_file()
    }
    return Bundle(target, files)


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MB"


def describe(made: Bundle) -> str:
    """What ``make edge`` prints: where the bundle is and its sizes."""
    where = made.path.resolve()
    shown = where.relative_to(Path.cwd()) if where.is_relative_to(Path.cwd()) else where
    return (
        f"edge bundle {shown}: {_size(made.own_bytes)} "
        f"({len([f for f in made.files if not f.startswith('ort/')])} files: graph, manifest, "
        f"module, page), plus {_size(made.ort_bytes)} of onnxruntime-web under ort/"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sklambda_tools.edge", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--model", required=True, help="a packaged model's directory")
    parser.add_argument("--out", default="dist/edge", help="the bundle goes to OUT/<name>/")
    args = parser.parse_args(argv)
    try:
        made = bundle(Path(args.model), Path(args.out))
    except PackagingError as exc:
        print(f"make edge: refused: {exc}", file=sys.stderr)
        return 2
    print(describe(made))
    print(f"  open it: python -m http.server -d {made.path} 8000, then http://127.0.0.1:8000/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
