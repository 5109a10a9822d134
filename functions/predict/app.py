"""Online inference behind API Gateway (REST): POST /predict, GET /model, GET /health.

The handler translates HTTP into calls of the core (``sklambda.predict``) and typed errors back
into HTTP; this module is the one place that chooses status codes. Clients get fixed messages
with field paths and reasons, never internals. The model is loaded once, during the init phase.
"""

import json
import time
from collections import Counter
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda.capture import Capture
from sklambda.contracts import ErrorBody, Health, PredictResponse, request_model
from sklambda.errors import FieldError, InvalidInput, ModelLoadError
from sklambda.model import Model, get_model
from sklambda.monitor import Dimension, Metric, class_count_records
from sklambda.predict import predict_all
from sklambda.settings import get_settings

logger = Logger()
metrics = Metrics()
settings = get_settings()
app = APIGatewayRestResolver(enable_validation=True)

MAX_LOGGED_ERRORS = 10
_JSON_TYPES = ("application/json",)


def _load_at_init() -> Model | None:
    try:
        return get_model()
    except ModelLoadError as exc:
        logger.error("model failed to load: every request answers 503", extra={"reason": str(exc)})
        return None


_model = _load_at_init()
_cold_start = True
PredictRequest = request_model(_model.manifest if _model else None, settings.max_instances)
_dimensions = {
    Dimension.MODEL_NAME: _model.name if _model else "unavailable",
    Dimension.MODEL_VERSION: _model.version if _model else "unavailable",
}
metrics.set_default_dimensions(**_dimensions)
_model_info = json.dumps(_model.manifest.public()) if _model else ""
capture = Capture(settings.capture_stream, settings.capture_rate)


# --- responses ------------------------------------------------------------------------------


def _json(status: int, payload: Any) -> Response:
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def _error_body(message: str, errors: list[dict[str, str]], request_id: str | None) -> str:
    payload: dict[str, Any] = {"message": message}
    if errors:
        payload["errors"] = errors
    payload["request_id"] = request_id
    return json.dumps(payload, separators=(",", ":"))


def _error(status: int, message: str, errors: list[dict[str, str]] | None = None) -> Response:
    request_id = app.current_event.request_context.request_id
    body = _error_body(message, errors or [], request_id)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


def _notes(items: list[FieldError]) -> list[dict[str, str]]:
    return [{"path": n.path(), "reason": n.reason} for n in items]


ERRORS = {
    400: {
        "description": "The body is not JSON.",
        "content": {"application/json": {"model": ErrorBody}},
    },
    413: {
        "description": "Too many instances, or the body is too large.",
        "content": {"application/json": {"model": ErrorBody}},
    },
    415: {
        "description": "The body is not declared as JSON.",
        "content": {"application/json": {"model": ErrorBody}},
    },
    422: {
        "description": "Instances that do not match the model's input schema; every field "
        "error is listed.",
        "content": {"application/json": {"model": ErrorBody}},
    },
    503: {
        "description": "The model could not be loaded.",
        "content": {"application/json": {"model": ErrorBody}},
    },
}


# --- routes ---------------------------------------------------------------------------------


@app.post(
    "/predict",
    summary="Score instances",
    description="Every instance is validated against the model's input schema; any invalid "
    "instance rejects the request with one error per field.",
    responses={
        200: {
            "description": "One prediction per instance, in order.",
            "content": {"application/json": {"model": PredictResponse}},
        },
        **ERRORS,
    },
)
def predict(request: Annotated[PredictRequest, Body()]):  # type: ignore[valid-type]
    model = get_model()
    predictions, notes = predict_all(model, request.instances)  # type: ignore[attr-defined]
    metrics.add_metric(
        name=Metric.INSTANCES_PREDICTED, unit=MetricUnit.Count, value=len(predictions)
    )
    if model.task == "classification":
        _count_classes(predictions)
    payload: dict[str, Any] = {
        "model": {"name": model.name, "version": model.version},
        "predictions": predictions,
    }
    if capture.sampled():
        request_id = app.current_event.request_context.request_id
        sent = capture.send(request_id, payload["model"], request.instances, predictions)  # type: ignore[attr-defined]
        name = Metric.CAPTURED_REQUESTS if sent else Metric.CAPTURE_FAILURES
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    if notes:
        payload["notes"] = _notes(notes)
        logger.info(
            "scored unseen categories", extra={"notes": payload["notes"][:MAX_LOGGED_ERRORS]}
        )
    return _json(200, payload)


@app.get(
    "/model",
    summary="The model's public manifest",
    responses={
        200: {"description": "Name, version, input schema, classes, holdout metrics."},
        503: ERRORS[503],
    },
)
def model_info():
    get_model()
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=_model_info)


@app.get(
    "/health",
    summary="Liveness and the loaded model's version",
    responses={
        200: {
            "description": "Up, with a model.",
            "content": {"application/json": {"model": Health}},
        },
        503: ERRORS[503],
    },
)
def health():
    model = get_model()
    return _json(
        200,
        {
            "status": "ok",
            "model": {"name": model.name, "version": model.version},
            "runtime": model.runtime,
        },
    )


def _count_classes(predictions: list[dict[str, Any]]) -> None:
    counts = Counter(str(p["label"]) for p in predictions)
    service = {"service": metrics.service} if metrics.service else {}
    for line in class_count_records(metrics.namespace or "", {**_dimensions, **service}, counts):
        print(line)


# --- errors: the one place that maps them to HTTP --------------------------------------------

_REASONS = {
    "missing": "required",
    "too_short": "must hold at least one instance",
    "list_type": "expected an array",
    "model_attributes_type": "expected a JSON object",
    "model_type": "expected a JSON object",
    "dict_type": "expected a JSON object",
}


def _path(loc: tuple[Any, ...]) -> str:
    parts = [p for p in loc if p != "body"]
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return text or "body"


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> Response:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return _error(400, "the request body is not valid JSON")
    if any(e.get("type") == "too_long" for e in errors):
        return _error(413, f"a request may carry at most {settings.max_instances} instances")
    details = [
        {
            "path": _path(tuple(e.get("loc", ()))),
            "reason": _REASONS.get(str(e.get("type")), f"invalid ({e.get('type')})"),
        }
        for e in errors
    ]
    logger.info("invalid request", extra={"errors": details[:MAX_LOGGED_ERRORS]})
    return _error(422, "the request does not match the API", details)


@app.exception_handler(InvalidInput)
def _invalid_instances(exc: InvalidInput) -> Response:
    details = _notes(exc.errors)
    logger.info(
        "invalid instances", extra={"count": len(details), "errors": details[:MAX_LOGGED_ERRORS]}
    )
    return _error(422, "some instances do not match the model's input schema", details)


@app.exception_handler(ModelLoadError)
def _model_unavailable(exc: ModelLoadError) -> Response:
    logger.error("model unavailable", extra={"reason": str(exc)})
    metrics.add_metric(name=Metric.MODEL_UNAVAILABLE, unit=MetricUnit.Count, value=1)
    return _error(503, "the model is unavailable")


@app.not_found
def _no_route(exc: Exception) -> Response:
    return _error(404, "no such route")


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.exception("unexpected error")
    return _error(500, "internal error")


# --- the HTTP checks that come before routing ------------------------------------------------


def _header(event: dict[str, Any], name: str) -> str | None:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def _precheck(event: dict[str, Any]) -> dict[str, Any] | None:
    """415 and 413 for a prediction request, before its body is parsed."""
    if event.get("httpMethod") != "POST" or event.get("resource", event.get("path")) != "/predict":
        return None
    status, message = 0, ""
    content_type = _header(event, "content-type")
    if content_type is not None and content_type.split(";")[0].strip().lower() not in _JSON_TYPES:
        status, message = 415, "the request body must be application/json"
    else:
        body = event.get("body") or ""
        size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body)
        if size > settings.max_body_bytes:
            status, message = (
                413,
                f"the request body may be at most {settings.max_body_bytes} bytes",
            )
    if not status:
        return None
    request_id = (event.get("requestContext") or {}).get("requestId")
    logger.info("request refused before parsing", extra={"status": status})
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": _error_body(message, [], request_id),
        "isBase64Encoded": False,
    }


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _cold_start
    started = time.perf_counter()
    response = _precheck(event) or app.resolve(event, context)
    status = int(response["statusCode"])
    if 400 <= status < 500:
        metrics.add_metric(name=Metric.INVALID_REQUESTS, unit=MetricUnit.Count, value=1)
    if _cold_start:
        metrics.add_metric(name=Metric.COLD_START, unit=MetricUnit.Count, value=1)
        _cold_start = False
    elapsed_ms = (time.perf_counter() - started) * 1000
    metrics.add_metric(name=Metric.REQUEST_LATENCY, unit=MetricUnit.Milliseconds, value=elapsed_ms)
    return response
