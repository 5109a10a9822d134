"""The model manifest (``model.json``): the contract every other part of sklambda reads.

The manifest is a pydantic model, so reading it validates it: a manifest with a missing field, a
wrong type or an unknown key is refused with the path of the offending field. ``python -m
sklambda.manifest`` prints its JSON Schema.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sklambda.errors import ManifestError

FORMAT_VERSION: Literal[1] = 1
MANIFEST_FILE = "model.json"
CARD_FILE = "MODEL_CARD.md"
JOBLIB_FILE = "model.joblib"
ONNX_FILE = "model.onnx"

FeatureKind = Literal["numeric", "integer", "categorical", "boolean"]
Label = str | int | bool
Task = Literal["classification", "regression"]
Runtime = Literal["onnx", "sklearn"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    """One input column, as the model expects it."""

    name: str
    kind: FeatureKind
    nullable: bool
    categories: list[str] | None = None
    """Categories seen in training (categorical features only)."""
    unseen: Literal["score", "reject"] = "score"
    """What an unseen category does: scored as the pipeline handles it, or rejected."""
    unseen_handling: str | None = None
    """How the pipeline treats an unseen category, for people (``None``: not known)."""
    min: float | None = None
    max: float | None = None


class Output(_Strict):
    task: Task
    target: str
    classes: list[Label] | None = None
    probabilities: bool


class DataFingerprint(_Strict):
    rows: int
    columns: list[str]
    sha256: str


class DataInfo(_Strict):
    training: DataFingerprint | None
    holdout: DataFingerprint


class GateCheck(_Strict):
    metric: str
    value: float
    op: Literal["min", "max"]
    threshold: float
    passed: bool


class Gate(_Strict):
    source: str
    """Where the thresholds came from (a file name, or the built-in default)."""
    checks: list[GateCheck]
    passed: bool


class HoldoutMetrics(_Strict):
    """Metrics of the model on its holdout split."""

    split: str
    rows: int
    values: dict[str, float]
    per_class_recall: dict[str, float] | None = None


class NumericBaseline(_Strict):
    kind: Literal["numeric"] = "numeric"
    edges: list[float]
    """Inner bin edges: bin i holds edges[i-1] < x <= edges[i] (open-ended at both ends)."""
    proportions: list[float]
    missing_rate: float


class CategoricalBaseline(_Strict):
    kind: Literal["categorical"] = "categorical"
    frequencies: dict[str, float]
    missing_rate: float


Baseline = Annotated[NumericBaseline | CategoricalBaseline, Field(discriminator="kind")]


class Baselines(_Strict):
    source: Literal["training", "holdout"]
    rows: int
    features: dict[str, Baseline]
    prediction: Baseline


class Fault(_Strict):
    """A slice of the holdout where the model does worse than overall."""

    feature: str
    condition: str
    rows: int
    metric: str
    value: float
    overall: float
    accuracy: float | None = None


class Parity(_Strict):
    rows: int
    """Rows compared: the holdout plus ``probes``."""
    probes: int
    """Edge rows added to the holdout: each nullable feature missing, each category unseen."""
    label_agreement: float | None
    max_abs_proba_diff: float | None
    max_rel_value_diff: float | None
    tolerance: float
    passed: bool


class OnnxInfo(_Strict):
    file: str
    opset: int
    input_dtype: Literal["float32", "float64"]
    missing_category: str
    """The string fed to the graph for a missing categorical value."""
    parity: Parity


class RuntimeInfo(_Strict):
    serving: Runtime
    reason: str
    onnx: OnnxInfo | None = None


class ArtifactFile(_Strict):
    sha256: str
    bytes: int


class Manifest(_Strict):
    format_version: Literal[1] = FORMAT_VERSION
    name: str
    version: str
    created: str
    description: str = ""
    libraries: dict[str, str]
    artifacts: dict[str, ArtifactFile]
    data: DataInfo
    features: list[Feature]
    output: Output
    metrics: HoldoutMetrics
    gate: Gate
    baselines: Baselines
    known_faults: list[Fault]
    runtime: RuntimeInfo

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def public(self) -> dict[str, Any]:
        """The part of the manifest that may be shown to API clients."""
        return {
            "name": self.name,
            "version": self.version,
            "created": self.created,
            "description": self.description,
            "features": [f.model_dump(exclude_none=True) for f in self.features],
            "output": self.output.model_dump(),
            "metrics": self.metrics.model_dump(exclude_none=True),
            "runtime": self.runtime.serving,
        }


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(model_dir: str | Path) -> Manifest:
    """Read and validate ``model.json`` from an artifact directory.

    Raises
    ------
    ManifestError
        When the file is missing, not JSON, or does not match the schema; the message names
        the first offending field.
    """
    path = Path(model_dir) / MANIFEST_FILE
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read {MANIFEST_FILE} in {model_dir}: {exc.strerror}") from exc
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(root)"
        raise ManifestError(
            f"{MANIFEST_FILE} does not match the manifest schema: {where}: {first['msg']}"
        ) from exc


def dump_manifest(manifest: Manifest) -> str:
    return json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    print(json.dumps(Manifest.model_json_schema(), indent=2))
