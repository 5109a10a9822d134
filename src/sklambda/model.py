"""Load a packaged model, verified, and score rows with it.

``load`` reads ``model.json``, checks the SHA-256 of every artifact file before anything is
deserialised, and builds one of two runtimes behind one interface:

- ``onnx``: onnxruntime and numpy only (small and fast to start; no scikit-learn, scipy or pandas);
- ``sklearn``: the fitted pipeline itself, unpickled only with the scikit-learn that made it.

Examples
--------
>>> model = load("models/penguins")
>>> bird = {"island": "Biscoe", "bill_length_mm": 48.6, "bill_depth_mm": 16.0,
...         "flipper_length_mm": 230.0, "body_mass_g": 5800.0, "sex": "male"}
>>> model.runtime, model.predict([bird]).tolist()
('onnx', ['Gentoo'])
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sklambda.errors import (
    IntegrityError,
    ModelLoadError,
    NotSupportedError,
    RuntimeUnavailableError,
    VersionMismatchError,
)
from sklambda.manifest import (
    JOBLIB_FILE,
    Feature,
    Manifest,
    Output,
    read_manifest,
    sha256_bytes,
)
from sklambda.schema import Columns, InputSchema

if TYPE_CHECKING:
    from sklambda.settings import Settings

Records = Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Scores:
    """What a model says about a batch of valid rows.

    Classifiers fill ``labels`` (and ``probabilities`` when the pipeline has
    ``predict_proba``; columns follow ``Model.classes``); regressors fill ``values``.
    """

    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    values: np.ndarray | None = None


class Backend(Protocol):
    def score(self, columns: Columns, probabilities: bool) -> Scores: ...


class SklearnBackend:
    """Scores with the fitted pipeline (the reference runtime)."""

    def __init__(self, pipeline: Any, output: Output) -> None:
        import pandas as pd  # the pipeline was fitted on a DataFrame and selects columns by name

        self._pd = pd
        self.pipeline = pipeline
        self.output = output

    def score(self, columns: Columns, probabilities: bool) -> Scores:
        frame = self._pd.DataFrame(
            {name: _missing_as_nan(col) for name, col in columns.items()},
            columns=list(columns),
        )
        out = self.output
        # Transform once and ask the final estimator for both answers: what Pipeline.predict
        # and Pipeline.predict_proba would each do, without running the preprocessing twice.
        model, features = self.pipeline, frame
        if hasattr(model, "steps") and len(model.steps) > 1:
            model, features = model[-1], model[:-1].transform(frame)
        if out.task == "regression":
            return Scores(values=np.asarray(model.predict(features), dtype=np.float64))
        labels = np.asarray(model.predict(features))
        proba = None
        if probabilities and out.probabilities:
            proba = np.asarray(model.predict_proba(features), dtype=np.float64)
        return Scores(labels=labels, probabilities=proba)


UNSEEN = "__sklambda_unseen__"
"""What the graph is fed for a category not seen in training (the packaging parity check
probes it)."""


class OnnxBackend:
    """Scores with the exported ONNX graph through onnxruntime: one input per feature, or one
    matrix of every feature when the graph takes its inputs that way (all numeric)."""

    def __init__(
        self,
        graph: bytes,
        features: Sequence[Feature],
        output: Output,
        input_dtype: str,
        missing_category: str,
        inputs: Sequence[str] | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeUnavailableError("the onnx runtime needs onnxruntime installed") from exc
        options = ort.SessionOptions()
        # One request is small: thread start-up costs more than it saves, and Lambda gives
        # a function about one vCPU per 1,769 MB anyway.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: warnings would go to stderr per request
        self.session = ort.InferenceSession(
            graph, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.features = list(features)
        self.output = output
        self.dtype = np.dtype(input_dtype)
        self.missing = missing_category
        # Graph input names are not always the feature names: the exporter makes identifiers
        # of names with spaces, dots or dashes.
        self.inputs = list(inputs) if inputs is not None else [f.name for f in self.features]
        self.matrix = len(self.inputs) == 1 and len(self.features) > 1
        counted = self.matrix or len(self.inputs) == len(self.features)
        if not counted or sorted(self.inputs) != sorted(i.name for i in self.session.get_inputs()):
            raise ModelLoadError("the ONNX graph's inputs do not match the manifest's features")
        names = [o.name for o in self.session.get_outputs()]
        # A classifier without predict_proba exports decision scores as its second output;
        # they are not probabilities, so they are never fetched.
        self.outputs = (
            names if output.task == "classification" and output.probabilities else names[:1]
        )
        self._classes = np.asarray(output.classes) if output.classes is not None else None
        self._known = {f.name: frozenset(f.categories or ()) for f in self.features}

    def _feed(self, columns: Columns) -> dict[str, np.ndarray]:
        if self.matrix:
            matrix = np.empty((len(columns[self.features[0].name]), len(self.features)), self.dtype)
            for j, feature in enumerate(self.features):
                matrix[:, j] = np.asarray(_missing_as_nan(columns[feature.name]), dtype=self.dtype)
            return {self.inputs[0]: matrix}
        feed = {}
        for feature, name in zip(self.features, self.inputs, strict=True):
            col = columns[feature.name]
            if feature.kind == "categorical":
                known = self._known[feature.name]
                # Every category the pipeline never saw is one to its encoders; a fixed one
                # keeps a client's "nan" from reading as the graph's missing category.
                arr = np.array(
                    [self.missing if v is None else v if v in known else UNSEEN for v in col],
                    dtype=object,
                )
            else:
                arr = np.asarray(_missing_as_nan(col), dtype=self.dtype)
            feed[name] = arr.reshape(-1, 1)
        return feed

    def score(self, columns: Columns, probabilities: bool) -> Scores:
        results = self.session.run(self.outputs, self._feed(columns))
        out = self.output
        if out.task == "regression":
            return Scores(values=np.asarray(results[0], dtype=np.float64).ravel())
        labels = np.asarray(results[0]).ravel()
        if self._classes is not None and labels.dtype != self._classes.dtype:
            labels = labels.astype(self._classes.dtype)
        proba = None
        if probabilities and out.probabilities:
            proba = np.asarray(results[1], dtype=np.float64)
        return Scores(labels=labels, probabilities=proba)


def _missing_as_nan(col: np.ndarray) -> np.ndarray:
    if col.dtype == object:
        return np.array([np.nan if v is None else v for v in col], dtype=object)
    return col


class Model:
    """A verified model with its input schema and one runtime."""

    def __init__(self, manifest: Manifest, backend: Backend, runtime: str, path: Path) -> None:
        self.manifest = manifest
        self.backend = backend
        self.runtime = runtime
        self.path = path
        self.schema = InputSchema(manifest.features, number_limit=InputSchema.limit_for(manifest))

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def task(self) -> str:
        return self.manifest.output.task

    @property
    def classes(self) -> list[Any] | None:
        return self.manifest.output.classes

    def score_columns(self, columns: Columns, *, probabilities: bool = True) -> Scores:
        """Score columns that already passed validation (``sklambda.scoring`` validates)."""
        if len(next(iter(columns.values()), ())) == 0:
            return _empty_scores(self.manifest, probabilities)
        return self.backend.score(columns, probabilities)

    def predict(self, records: Records) -> np.ndarray:
        """Labels for a classifier, values for a regressor; any invalid row raises
        ``InvalidInput`` (a convenience over ``sklambda.scoring.predict_all``)."""
        from sklambda.scoring import predict_all

        scores = predict_all(self, records).scores
        result = scores.values if scores.labels is None else scores.labels
        assert result is not None
        return result

    def predict_proba(self, records: Records) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes``."""
        if not self.manifest.output.probabilities:
            raise NotSupportedError(f"model {self.name!r} does not give class probabilities")
        from sklambda.scoring import predict_all

        proba = predict_all(self, records).scores.probabilities
        assert proba is not None
        return proba


def _empty_scores(manifest: Manifest, probabilities: bool) -> Scores:
    out = manifest.output
    if out.task == "regression":
        return Scores(values=np.empty(0))
    k = len(out.classes or ())
    proba = np.empty((0, k)) if probabilities and out.probabilities else None
    return Scores(labels=np.asarray(out.classes or [])[:0], probabilities=proba)


def verify_artifacts(model_dir: Path, manifest: Manifest, required: str) -> dict[str, bytes]:
    """Read every artifact file present and check its size and SHA-256; ``required`` must be
    present.

    Each file is opened without following a symbolic link and must be a regular file of the
    size the manifest records (read no further than that), so a tampered directory cannot make
    the loader read a device, a pipe or a file elsewhere. The bytes returned are the ones that
    were hashed, so what is deserialised is what was checked.
    """
    blobs: dict[str, bytes] = {}
    for name in manifest.artifacts:
        try:
            blobs[name] = _verified(model_dir, manifest, name)
        except FileNotFoundError:
            if name == required:
                raise IntegrityError(f"{name} is listed in model.json but missing") from None
    if required not in blobs:
        raise IntegrityError(f"{required} is not listed in model.json")
    return blobs


def verify_artifact(model_dir: Path, manifest: Manifest, name: str) -> bytes:
    """Read one artifact file and check it as ``verify_artifacts`` does (only that file)."""
    if name not in manifest.artifacts:
        raise IntegrityError(f"{name} is not listed in model.json")
    try:
        return _verified(model_dir, manifest, name)
    except FileNotFoundError:
        raise IntegrityError(f"{name} is listed in model.json but missing") from None


def _verified(model_dir: Path, manifest: Manifest, name: str) -> bytes:
    """The bytes of artifact ``name``, its size and SHA-256 checked (``FileNotFoundError``
    when it is absent)."""
    expected = manifest.artifacts[name]
    data = _read_regular(model_dir / name, expected.bytes)
    actual = sha256_bytes(data)
    if actual != expected.sha256:
        raise IntegrityError(
            f"{name} does not match model.json: SHA-256 {actual[:12]}… "
            f"where {expected.sha256[:12]}… is expected; refusing to load it"
        )
    return data


def _read_regular(path: Path, size: int) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise IntegrityError(
            f"{path.name} cannot be opened as a plain file: {exc.strerror}"
        ) from None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise IntegrityError(f"{path.name} is not a regular file; refusing to load it")
        if info.st_size != size:
            raise IntegrityError(
                f"{path.name} has {info.st_size} bytes where model.json records {size}; "
                "refusing to load it"
            )
        return file.read(size)


def _installed_version(dist: str) -> str | None:
    from importlib import metadata  # 30 ms of import: only the sklearn runtime pays for it

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


class _Slot:
    """The model of this execution environment, or why it could not be loaded."""

    model: Model | None = None
    error: ModelLoadError | None = None


def get_model(settings: Settings) -> Model:
    """The model the settings name, loaded once per execution environment.

    A load failure is remembered too: the artifact in a layer does not change, so every later
    call raises the same ``ModelLoadError`` at once. ``reset_model()`` forgets both.
    """
    if _Slot.model is not None:
        return _Slot.model
    if _Slot.error is not None:
        raise _Slot.error
    try:
        _Slot.model = load(settings.model_dir, settings.runtime)
    except ModelLoadError as exc:
        _Slot.error = exc
        raise
    except Exception as exc:  # a graph or pickle that passed its hash check but does not load
        _Slot.error = ModelLoadError(f"the model could not be loaded: {type(exc).__name__}: {exc}")
        raise _Slot.error from exc
    return _Slot.model


def reset_model() -> None:
    _Slot.model = None
    _Slot.error = None


def load(path: str | os.PathLike[str], runtime: str | None = None) -> Model:
    """Load and verify the model in ``path``.

    Parameters
    ----------
    path
        The artifact directory.
    runtime
        ``"onnx"`` or ``"sklearn"``; default: the manifest's choice.

    Raises
    ------
    ModelLoadError
        Its subclasses say why: manifest invalid, a file tampered with, a library version that
        differs from the one the model was made with, or a runtime the artifact does not have.
    """
    model_dir = Path(path)
    manifest = read_manifest(model_dir)
    chosen = runtime or manifest.runtime.serving
    backend: Backend
    if chosen == "onnx":
        info = manifest.runtime.onnx
        if info is None:
            raise RuntimeUnavailableError(
                f"model {manifest.name!r} has no ONNX export: {manifest.runtime.reason}"
            )
        blobs = verify_artifacts(model_dir, manifest, info.file)
        backend = OnnxBackend(
            blobs[info.file],
            manifest.features,
            manifest.output,
            info.input_dtype,
            info.missing_category,
            info.inputs,
        )
    elif chosen == "sklearn":
        blobs = verify_artifacts(model_dir, manifest, JOBLIB_FILE)
        wanted = manifest.libraries.get("scikit-learn")
        running = _installed_version("scikit-learn")
        if running is None:
            raise RuntimeUnavailableError(
                f"the sklearn runtime needs scikit-learn {wanted}, which is not installed"
            )
        if running != wanted:
            raise VersionMismatchError(
                f"{JOBLIB_FILE} was made with scikit-learn {wanted} but {running} is running; "
                f"serve it with scikit-learn {wanted} or package it again"
            )
        import joblib

        backend = SklearnBackend(joblib.load(io.BytesIO(blobs[JOBLIB_FILE])), manifest.output)
    else:
        raise RuntimeUnavailableError(f"unknown runtime {chosen!r}: expected 'onnx' or 'sklearn'")
    return Model(manifest, backend, chosen, model_dir)
