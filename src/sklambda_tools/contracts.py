"""The prediction API's contract: its routes, and request and response models generated from the
manifest, for the OpenAPI document (``sklambda_tools.openapi`` renders it).

The request model documents every feature (kind, nullability, categories, observed range) in the
OpenAPI document, but validates only the envelope (a non-empty list of at most N instances): the
instances themselves are checked by ``sklambda.schema``, the one validation that online and batch
share, so both give the same error text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model

from sklambda.manifest import Feature, Label, Manifest
from sklambda.schema import number_limit

MAX_ERRORS = 100  # as functions/predict/app.py lists at most
MAX_NOTES = 100  # likewise


def feature_json_schema(feature: Feature, limit: float = math.inf) -> dict[str, Any]:
    """The JSON Schema of one feature's value; numbers of magnitude ``limit`` or more are out
    of range (what the serving runtime cannot represent)."""
    kind_type = {
        "numeric": "number",
        "integer": "integer",
        "categorical": "string",
        "boolean": "boolean",
    }[feature.kind]
    schema: dict[str, Any] = {"type": kind_type}
    if feature.kind == "categorical" and feature.categories is not None:
        if feature.unseen == "reject":
            schema["enum"] = feature.categories
        else:
            schema["examples"] = feature.categories
            schema["description"] = (
                f"Seen in training: {', '.join(feature.categories)}. Other values are scored "
                f"({feature.unseen_handling or 'as the pipeline handles them'}) and noted in the "
                "response."
            )
    elif feature.min is not None and feature.max is not None:
        schema["description"] = (
            f"Observed in training from {feature.min:g} to {feature.max:g}. Other values are "
            "scored and noted in the response."
        )
    if feature.kind == "numeric" and math.isfinite(limit):
        schema["exclusiveMinimum"], schema["exclusiveMaximum"] = -limit, limit
    if feature.nullable:
        return {"anyOf": [schema, {"type": "null"}], "description": "Missing values are allowed."}
    return schema


def instance_json_schema(features: list[Feature], limit: float = math.inf) -> dict[str, Any]:
    return {
        "type": "object",
        "title": "Instance",
        "properties": {f.name: feature_json_schema(f, limit) for f in features},
        "required": [f.name for f in features],
        "additionalProperties": False,
    }


GENERIC_INSTANCE = {"type": "object", "title": "Instance"}


def request_model(manifest: Manifest | None, max_instances: int) -> type[BaseModel]:
    """``{"instances": [...]}`` with the manifest's instance schema (a generic object when the
    manifest could not be read, so that the API still starts and answers 503)."""
    instance = (
        GENERIC_INSTANCE
        if manifest is None
        else instance_json_schema(manifest.features, number_limit(manifest))
    )
    instances: Any = Annotated[
        list[Annotated[Any, WithJsonSchema(instance)]],
        Field(
            min_length=1,
            max_length=max_instances,
            description=f"One to {max_instances} instances to score.",
        ),
    ]
    return create_model("PredictRequest", instances=(instances, ...))


class _Documented(BaseModel):
    """Response models exist for the OpenAPI document; the handler writes its JSON directly,
    so their validators are built only if something asks (not during a cold start)."""

    model_config = ConfigDict(defer_build=True)


class ModelRef(_Documented):
    name: str
    version: str


class Note(_Documented):
    path: str = Field(examples=["instances[0].island"])
    reason: str


class ClassPrediction(_Documented):
    label: Label
    probabilities: dict[str, float] | None = Field(
        default=None, description="Probability of every class (when the model gives them)."
    )


class ValuePrediction(_Documented):
    value: float


class PredictResponse(_Documented):
    model: ModelRef
    predictions: list[ClassPrediction] | list[ValuePrediction]
    notes: list[Note] = Field(
        default_factory=list,
        description="Remarks on scored instances (a category not seen in training, a number "
        f"outside the training range), in instance order; the first {MAX_NOTES} at most.",
    )
    notes_omitted: int = Field(
        default=0,
        ge=0,
        description="How many notes were left out of notes (present when any were).",
    )


class ErrorBody(_Documented):
    message: str
    errors: list[Note] = Field(
        default_factory=list, description=f"The first {MAX_ERRORS} field errors at most."
    )
    errors_omitted: int = Field(
        default=0,
        ge=0,
        description="How many field errors were left out of errors (present when any were).",
    )
    request_id: str | None = None


class Health(_Documented):
    status: str
    model: ModelRef
    runtime: str


ERROR = {"content": {"application/json": {"model": ErrorBody}}}


# --- the Open Inference Protocol (V2): the shapes of kserve/open-inference-protocol's REST
# document; the handler checks the tensors themselves (sklambda.oip), so these models document.

Parameters = dict[str, str | float | bool]


class V2Error(_Documented):
    error: str = Field(description="What is wrong; field reasons name their place.")


class V2Tensor(_Documented):
    name: str
    datatype: str = Field(examples=["BYTES", "FP64", "INT64", "BOOL"])
    shape: list[int]


class V2RequestInput(BaseModel):
    name: str = Field(description="A feature's name, or any name for the single 2-D input.")
    shape: list[Annotated[int, Field(ge=0)]] = Field(
        description="[N] or [N, 1] for a feature's column; [N, features] for the 2-D input."
    )
    datatype: str = Field(
        description="BYTES for a categorical feature, BOOL for a boolean, a numeric datatype "
        "(INT*, UINT*, FP*) for a number."
    )
    data: list[Any] = Field(description="Row-major, flat or in the shape's natural nesting.")
    parameters: Parameters | None = None


class V2RequestOutput(BaseModel):
    name: str = Field(examples=["predict", "predict_proba"])
    parameters: Parameters | None = None


def infer_request_model(manifest: Manifest | None) -> type[BaseModel]:
    """The V2 inference request, with the model's inputs named in its description."""
    names = ", ".join(f.name for f in manifest.features) if manifest else "the model's features"
    return create_model(
        "V2InferenceRequest",
        __base__=BaseModel,
        id=(str | None, None),
        parameters=(Parameters | None, None),
        inputs=(
            list[V2RequestInput],
            Field(min_length=1, description=f"One input per feature ({names})."),
        ),
        outputs=(list[V2RequestOutput] | None, None),
    )


class V2ResponseOutput(_Documented):
    name: str
    datatype: str
    shape: list[int]
    data: list[Any]


class V2InferenceResponse(_Documented):
    model_name: str
    model_version: str
    id: str | None = Field(default=None, description="The request's id, when it had one.")
    outputs: list[V2ResponseOutput]


class V2ModelMetadata(_Documented):
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2Tensor]
    outputs: list[V2Tensor]
    parameters: dict[str, str] = Field(
        default_factory=dict, description="content_type, and classes: the columns of predict_proba."
    )


class V2ServerMetadata(_Documented):
    name: str
    version: str
    extensions: list[str]


class V2Live(_Documented):
    live: bool


class V2Ready(_Documented):
    ready: bool


class V2ModelReady(_Documented):
    name: str
    ready: bool


@dataclass(frozen=True)
class RouteDoc:
    """One route as the OpenAPI document describes it (the handler serves the same ones)."""

    method: str
    path: str
    name: str
    summary: str
    responses: dict[int, dict[str, Any]]
    description: str | None = None
    body: str | None = None  # the request body it takes: "predict" or "infer"

    @property
    def parameters(self) -> list[str]:
        """The path's parameters, ``{model_name}`` and the like."""
        return re.findall(r"\{(\w+)\}", self.path)


_UNAVAILABLE = {503: {"description": "The model could not be loaded.", **ERROR}}


def _v2_ok(description: str, model: type[BaseModel]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"model": model}}}


def _v2_error(description: str) -> dict[str, Any]:
    return _v2_ok(description, V2Error)


_V2_UNAVAILABLE = {503: _v2_error("The model could not be loaded.")}
_V2_MODEL_ERRORS = {
    404: _v2_error("Another model name or version than the one this API serves."),
    **_V2_UNAVAILABLE,
}
ROUTES = (
    RouteDoc(
        "POST",
        "/predict",
        "predict",
        "Score instances",
        {
            200: {
                "description": "One prediction per instance, in order.",
                "content": {"application/json": {"model": PredictResponse}},
            },
            400: {"description": "The body is not JSON.", **ERROR},
            413: {"description": "Too many instances, or the body is too large.", **ERROR},
            415: {"description": "The body is not declared as JSON.", **ERROR},
            422: {
                "description": "Instances that do not match the model's input schema, or that "
                f"the model gives no finite prediction for; up to {MAX_ERRORS} field errors are "
                "listed, errors_omitted counts the others.",
                **ERROR,
            },
            **_UNAVAILABLE,
        },
        description="Every instance is validated against the model's input schema; any "
        "invalid instance rejects the request with one error per field.",
        body="predict",
    ),
    RouteDoc(
        "GET",
        "/model",
        "model_info",
        "The model's public manifest",
        {200: {"description": "Name, version, input schema, classes, holdout metrics."}}
        | _UNAVAILABLE,
    ),
    RouteDoc(
        "GET",
        "/health",
        "health",
        "Liveness and the loaded model's version",
        {
            200: {
                "description": "Up, with a model.",
                "content": {"application/json": {"model": Health}},
            },
            **_UNAVAILABLE,
        },
    ),
    *(
        RouteDoc(
            "GET",
            "/v2",
            "v2_server",
            "Open Inference Protocol: server metadata",
            {200: _v2_ok("The server's name and version.", V2ServerMetadata)},
        ),
        RouteDoc(
            "GET",
            "/v2/health/live",
            "v2_live",
            "Open Inference Protocol: server live",
            {200: _v2_ok("The function answers (whether or not the model loaded).", V2Live)},
        ),
        RouteDoc(
            "GET",
            "/v2/health/ready",
            "v2_ready",
            "Open Inference Protocol: server ready",
            {200: _v2_ok("The model is loaded.", V2Ready), **_V2_UNAVAILABLE},
        ),
    ),
    *(
        route
        for prefix, tag in (
            ("/v2/models/{model_name}", ""),
            ("/v2/models/{model_name}/versions/{model_version}", " (a version)"),
        )
        for route in (
            RouteDoc(
                "GET",
                prefix,
                "v2_model" + ("_version" if tag else ""),
                f"Open Inference Protocol: model metadata{tag}",
                {200: _v2_ok("Inputs, outputs, datatypes and shapes.", V2ModelMetadata)}
                | _V2_MODEL_ERRORS,
            ),
            RouteDoc(
                "GET",
                f"{prefix}/ready",
                "v2_model_ready" + ("_version" if tag else ""),
                f"Open Inference Protocol: model ready{tag}",
                {200: _v2_ok("The model is ready.", V2ModelReady)} | _V2_MODEL_ERRORS,
            ),
            RouteDoc(
                "POST",
                f"{prefix}/infer",
                "v2_infer" + ("_version" if tag else ""),
                f"Open Inference Protocol: inference{tag}",
                {
                    200: _v2_ok("The requested outputs of every row.", V2InferenceResponse),
                    400: _v2_error("The body is not JSON."),
                    413: _v2_error("Too many rows, or the body is too large."),
                    415: _v2_error(
                        "The body is not declared as JSON, or uses the binary tensor extension."
                    ),
                    422: _v2_error(
                        "Malformed tensors, or rows that do not match the model's input schema "
                        f"(the core's reasons, each naming its row and input; {MAX_ERRORS} at "
                        "most)."
                    ),
                }
                | _V2_MODEL_ERRORS,
                description="Tensors as MLServer's pandas codec sends them (one input per "
                "feature, [N, 1] or [N]) or, for an all-numeric model, one [N, features] "
                "input; JSON tensors only.",
                body="infer",
            ),
        )
    ),
)
