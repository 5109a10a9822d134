"""The prediction API's contract: its routes, and request and response models generated from the
manifest, for the OpenAPI document (``sklambda_tools.openapi`` renders it).

The request model documents every feature (kind, nullability, categories, observed range) in the
OpenAPI document, but validates only the envelope (a non-empty list of at most N instances): the
instances themselves are checked by ``sklambda.schema``, the one validation that online and batch
share, so both give the same error text.
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class RouteDoc:
    """One route as the OpenAPI document describes it (the handler serves the same ones)."""

    method: str
    path: str
    name: str
    summary: str
    responses: dict[int, dict[str, Any]]
    description: str | None = None
    body: bool = False  # takes the PredictRequest body


_UNAVAILABLE = {503: {"description": "The model could not be loaded.", **ERROR}}
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
        body=True,
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
)
