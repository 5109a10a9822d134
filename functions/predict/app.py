"""Online inference behind API Gateway (REST): POST /predict, GET /model, GET /health, and the
Open Inference Protocol (KServe's V2: /v2/health/*, /v2/models/{model_name}[/versions/{v}]...).

The handler translates the proxy event into a call of the scoring core (``sklambda.scoring``)
and typed errors back into HTTP; this module is the one place that chooses status codes. The
body is parsed once and validated once, by the core's schema: the route table is a dict, not a
framework with its own request validation. Clients get fixed messages with field paths and
reasons, never internals (the V2 routes as the protocol's ``{"error": "..."}``, with the same
statuses), and at most ``MAX_ERRORS`` of them (``errors_omitted`` counts the
rest), so that an answer stays far below Lambda's 6 MB response limit; the notes of a scored
request (unseen categories, numbers outside the training range) likewise at most
``MAX_NOTES`` (``notes_omitted``). No exception escapes the handler. The model is loaded once,
during the init phase; a function whose settings are wrong fails its init naming the variable.
"""

import base64
import binascii
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from functools import partial
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from sklambda import __version__, oip, snapstart
from sklambda.capture import Capture
from sklambda.errors import FieldError, InvalidInput, ModelLoadError, Note, SklambdaError
from sklambda.metrics import Dimension, MetricName, MetricSet, Unit
from sklambda.model import Model, get_model
from sklambda.probes import REQUEST_ID_PREFIX
from sklambda.schema import loads
from sklambda.scoring import Scored, predict_all
from sklambda.settings import PredictSettings, get_settings

logger = Logger()
settings = get_settings(PredictSettings)
MAX_LOGGED_ERRORS = 10
MAX_ERRORS = 100  # field errors listed in one answer; errors_omitted counts the others
MAX_NOTES = 100  # notes listed in one answer; notes_omitted counts the others


class HttpError(SklambdaError):
    """A request refused with a status, a fixed message and the field errors behind it."""

    def __init__(self, status: int, message: str, errors: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors or []


def _load_at_init() -> tuple[Model | None, ModelLoadError | None]:
    try:
        return get_model(settings), None
    except ModelLoadError as exc:
        logger.error("model failed to load: every request answers 503", extra={"reason": str(exc)})
        return None, exc


_model, _load_error = _load_at_init()
_cold_start = True
_dimensions = {
    Dimension.MODEL_NAME: _model.name if _model else "unavailable",
    Dimension.MODEL_VERSION: _model.version if _model else "unavailable",
    Dimension.SERVICE: settings.service,
}
_model_info = json.dumps(_model.manifest.public()) if _model else ""
_v2_metadata = json.dumps(oip.metadata(_model), separators=(",", ":")) if _model else ""
capture = Capture(settings.capture_stream, settings.capture_rate)
# SnapStart: the model scored once before the snapshot (one that does not load fails the
# publish); clients, randomness and log sampling renewed after each restore. Without SnapStart
# Lambda never calls the hooks.
snapstart.register(
    lambda: get_model(settings), after_restore=logger.refresh_sample_rate_calculation
)


def _the_model() -> Model:
    if _model is None:
        assert _load_error is not None
        raise _load_error
    return _model


# --- the request ----------------------------------------------------------------------------


def _header(event: dict[str, Any], name: str) -> str | None:
    headers = event.get("headers")
    if not isinstance(headers, dict):
        return None
    for key, value in headers.items():
        if str(key).lower() == name:
            return str(value)
    return None


def _body(event: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    """The request body as text: 415 unless it is declared JSON, 413 when too large, 400 when
    it is not text (or base64 of UTF-8 text). ``headers``: the event's, names in lower case,
    when the caller has them."""
    content_type = (
        _header(event, "content-type") if headers is None else headers.get("content-type")
    )
    if content_type is not None and content_type.split(";")[0].strip().lower() != (
        "application/json"
    ):
        raise HttpError(415, "the request body must be application/json")
    raw = event.get("body")
    if raw is None:
        raw = ""
    encoded = event.get("isBase64Encoded") or False
    if not isinstance(raw, str) or not isinstance(encoded, bool):
        raise HttpError(400, "the request body is not valid JSON")
    limit = settings.max_body_bytes
    too_large = HttpError(413, f"the request body may be at most {limit} bytes")
    if encoded:
        if len(raw) > limit * 4 // 3 + 4:
            raise too_large
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise HttpError(400, "the request body is not valid base64") from None
        if len(data) > limit:
            raise too_large
        try:
            return data.decode("utf-8")  # JSON is UTF-8 (RFC 8259): no guessing from the bytes
        except UnicodeDecodeError:
            raise HttpError(400, "the request body is not valid UTF-8") from None
    # UTF-8 takes one to four bytes a character (three for a lone surrogate)
    if len(raw) > limit or (len(raw) * 4 > limit and _utf8_length(raw) > limit):
        raise too_large
    return raw


def _utf8_length(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _instances(event: dict[str, Any]) -> list[Any]:
    """The ``instances`` of a prediction request: 400 for a body that is not JSON, 422 for a
    JSON document that is not ``{"instances": [...]}``, 413 for too many instances."""
    try:
        document = loads(_body(event))  # integers of any length are numbers, out of range
    except (ValueError, RecursionError):  # not JSON, or nested too deep
        raise HttpError(400, "the request body is not valid JSON") from None
    if not isinstance(document, dict):
        reason = "required" if document is None else "expected a JSON object"
        raise HttpError(422, "the request does not match the API", [_at("body", reason)])
    if "instances" not in document:
        raise HttpError(422, "the request does not match the API", [_at("instances", "required")])
    instances = document["instances"]
    if not isinstance(instances, list):
        reason = "expected an array"
        raise HttpError(422, "the request does not match the API", [_at("instances", reason)])
    if not instances:
        reason = "must hold at least one instance"
        raise HttpError(422, "the request does not match the API", [_at("instances", reason)])
    if len(instances) > settings.max_instances:
        raise HttpError(413, f"a request may carry at most {settings.max_instances} instances")
    return instances


def _at(path: str, reason: str) -> dict[str, str]:
    return {"path": path, "reason": reason}


def _remarks(items: list[FieldError] | list[Note]) -> list[dict[str, str]]:
    return [{"path": n.path(), "reason": n.reason} for n in items]


def _note_counts(notes: list[Note]) -> dict[str, dict[str, int]]:
    """Notes counted by kind and feature: bounded by the model's features, whatever the
    request."""
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for note in notes:
        counts[note.kind][str(note.field)] += 1
    return {kind: dict(sorted(by_field.items())) for kind, by_field in sorted(counts.items())}


# --- routes ---------------------------------------------------------------------------------


def _scored(
    model: Model,
    event: dict[str, Any],
    metrics: MetricSet,
    instances: list[Any],
    scored: Scored,
    predictions: list[dict[str, Any]] | None = None,
) -> list[dict[str, str]]:
    """What every scoring route does with a scored request: its metrics, its capture, its
    notes logged; returns the notes to answer (at most ``MAX_NOTES``)."""
    metrics.add(MetricName.INSTANCES_PREDICTED, len(scored.rows))
    labels = scored.scores.labels
    if model.task == "classification" and labels is not None:
        counts = Counter(map(str, labels.tolist()))
        metrics.add_per(MetricName.PREDICTED_CLASS, Dimension.CLASS, counts, Unit.COUNT)
    notes = _remarks(scored.notes[:MAX_NOTES])
    request_id = _request_id(event)
    probe = request_id is not None and request_id.startswith(REQUEST_ID_PREFIX)
    if not probe and capture.sampled():  # the pre-traffic check's rows are not traffic
        answers = scored.predictions() if predictions is None else predictions
        sent = capture.send(request_id, instances, scored, answers)
        metrics.add(MetricName.CAPTURED_REQUESTS if sent else MetricName.CAPTURE_FAILURES, 1)
    if notes:
        logger.info(
            "scored instances with notes",
            extra={
                "count": len(scored.notes),
                "by_kind": _note_counts(scored.notes),
                "notes": notes[:MAX_LOGGED_ERRORS],
            },
        )
    return notes


def predict(event: dict[str, Any], metrics: MetricSet) -> tuple[int, str]:
    model = _the_model()
    instances = _instances(event)
    scored = predict_all(model, instances)
    predictions = scored.predictions()
    notes = _scored(model, event, metrics, instances, scored, predictions)
    omitted = len(scored.notes) - len(notes)
    payload: dict[str, Any] = {
        "model": {"name": model.name, "version": model.version},
        "predictions": predictions,
        "notes": notes,
    }
    if omitted:
        payload["notes_omitted"] = omitted
    return 200, json.dumps(payload, separators=(",", ":"), allow_nan=False)


def model_info(event: dict[str, Any], metrics: MetricSet) -> tuple[int, str]:
    _the_model()
    return 200, _model_info


def health(event: dict[str, Any], metrics: MetricSet) -> tuple[int, str]:
    model = _the_model()
    body = {
        "status": "ok",
        "model": {"name": model.name, "version": model.version},
        "runtime": model.runtime,
    }
    return 200, json.dumps(body, separators=(",", ":"))


# --- the Open Inference Protocol (sklambda.oip translates; the statuses are chosen below) -----

BINARY_HEADER = "inference-header-content-length"  # the binary tensor extension's header


def _path_parameter(event: dict[str, Any], name: str) -> str | None:
    """A path parameter as API Gateway passes it (URL-decoded), or read from the path when an
    event has none (``make invoke``'s hand-written events)."""
    found = event.get("pathParameters")
    if isinstance(found, dict) and isinstance(found.get(name), str):
        return str(found[name])
    resource, path = event.get("resource"), event.get("path")
    if not isinstance(resource, str) or not isinstance(path, str):
        return None
    template, actual = resource.split("/"), path.split("/")
    if len(template) != len(actual):
        return None
    return next((a for t, a in zip(template, actual, strict=True) if t == f"{{{name}}}"), None)


def _the_v2_model(event: dict[str, Any]) -> Model:
    model = _the_model()
    name = _path_parameter(event, "model_name")
    oip.check_model(model, name, _path_parameter(event, "model_version"))
    return model


def _compact(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), allow_nan=False)


def v2_server(event: dict[str, Any], metrics: MetricSet) -> tuple[int, str]:
    return 200, _compact({"name": "sklambda", "version": __version__, "extensions": []})


def v2_live(event: dict[str, Any], metrics: MetricSet) -> tuple[int, str]:
    return 200, '{"live":true}'  # the function answers: live, whether or not the model loaded


def v2_ready(event: dict[str, Any], metrics: MetricSet) -> tuple[int, str]:
    _the_model()  # 503 while the model failed to load
    return 200, '{"ready":true}'


def v2_model(event: dict[str, Any], metrics: MetricSet) -> tuple[int, str]:
    _the_v2_model(event)
    return 200, _v2_metadata


def v2_model_ready(event: dict[str, Any], metrics: MetricSet) -> tuple[int, str]:
    model = _the_v2_model(event)
    return 200, _compact({"name": model.name, "ready": True})


def v2_infer(event: dict[str, Any], metrics: MetricSet) -> tuple[int, str]:
    model = _the_v2_model(event)
    headers: dict[str, str] = {}
    found = event.get("headers")
    for key, value in found.items() if isinstance(found, dict) else ():
        name = str(key).lower()
        if name in ("content-type", BINARY_HEADER):
            headers[name] = str(value)
    if BINARY_HEADER in headers:
        raise HttpError(
            415,
            "the binary tensor extension (header Inference-Header-Content-Length) is not "
            "supported: send JSON tensors (tritonclient: binary_data=False)",
        )
    try:
        document = loads(_body(event, headers))
    except (ValueError, RecursionError):  # not JSON, or nested too deep
        raise HttpError(400, "the request body is not valid JSON") from None
    request = oip.parse(model, document, settings.max_instances)
    try:
        scored = predict_all(model, request.rows)
    except InvalidInput as exc:
        raise request.row_reasons(exc.errors) from exc
    _scored(model, event, metrics, request.rows, scored)
    return 200, _compact(oip.response(model, request, scored))


Route = Callable[[dict[str, Any], MetricSet], tuple[int, str]]
# The routes; sklambda_tools.contracts documents the same ones (a test checks), and template.yaml
# names them.
V2_MODEL = "/v2/models/{model_name}"
V2_VERSION = "/v2/models/{model_name}/versions/{model_version}"
ROUTES: dict[tuple[str, str], Route] = {
    ("POST", "/predict"): predict,
    ("GET", "/model"): model_info,
    ("GET", "/health"): health,
    ("GET", "/v2"): v2_server,
    ("GET", "/v2/health/live"): v2_live,
    ("GET", "/v2/health/ready"): v2_ready,
    ("GET", V2_MODEL): v2_model,
    ("GET", f"{V2_MODEL}/ready"): v2_model_ready,
    ("POST", f"{V2_MODEL}/infer"): v2_infer,
    ("GET", V2_VERSION): v2_model,
    ("GET", f"{V2_VERSION}/ready"): v2_model_ready,
    ("POST", f"{V2_VERSION}/infer"): v2_infer,
}


# --- errors: the one place that maps them to HTTP --------------------------------------------


def _request_id(event: dict[str, Any]) -> str | None:
    context = event.get("requestContext")
    found = context.get("requestId") if isinstance(context, dict) else None
    return found[:100] if isinstance(found, str) and found.isascii() else None


def _error(
    status: int, message: str, errors: list[dict[str, str]], request_id: str | None = None
) -> tuple[int, str]:
    """An error answer: the fixed message and at most ``MAX_ERRORS`` field errors, with the
    number left out in the message and in ``errors_omitted``."""
    omitted = max(0, len(errors) - MAX_ERRORS)
    payload: dict[str, Any] = {
        "message": f"{message} ({omitted} more not shown)" if omitted else message
    }
    if errors:
        payload["errors"] = errors[:MAX_ERRORS]
    if omitted:
        payload["errors_omitted"] = omitted
    payload["request_id"] = request_id
    return status, json.dumps(payload, separators=(",", ":"))


def _v2_error(status: int, message: str, errors: list[dict[str, str]]) -> tuple[int, str]:
    """The protocol's error body, ``{"error": "..."}``: the message, then its field reasons."""
    if errors:
        listed = "; ".join(f"{e['path']}: {e['reason']}" for e in errors[:MAX_ERRORS])
        message = f"{message}: {listed}"
    return status, json.dumps({"error": message}, separators=(",", ":"))


def _answer(event: dict[str, Any], metrics: MetricSet) -> tuple[int, str]:
    request_id = _request_id(event)
    path = event.get("resource") or event.get("path")
    route = ROUTES.get((str(event.get("httpMethod")), str(path)))
    error = _v2_error if str(path).startswith("/v2") else partial(_error, request_id=request_id)
    try:
        if route is None:
            raise HttpError(404, "no such route")
        return route(event, metrics)
    except HttpError as exc:
        logger.info("request refused", extra={"status": exc.status, "reason": exc.message})
        return error(exc.status, exc.message, exc.errors)
    except InvalidInput as exc:
        details = _remarks(exc.errors)
        logger.info(
            "invalid instances",
            extra={"count": len(details), "errors": details[:MAX_LOGGED_ERRORS]},
        )
        message = "some instances do not match the model's input schema"
        return error(422, message, details)
    except oip.TensorRefused as exc:
        logger.info(
            "invalid tensors",
            extra={"count": len(exc.reasons) + exc.omitted, "errors": exc.reasons[:10]},
        )
        return 422, json.dumps({"error": exc.text()}, separators=(",", ":"))
    except oip.TooManyRows as exc:
        logger.info("request refused", extra={"status": 413, "reason": str(exc)})
        return error(413, str(exc), [])
    except oip.UnknownModel as exc:
        logger.info("request refused", extra={"status": 404, "reason": str(exc)})
        return error(404, str(exc), [])
    except ModelLoadError as exc:
        logger.error("model unavailable", extra={"reason": str(exc)})
        metrics.add(MetricName.MODEL_UNAVAILABLE, 1)
        return error(503, "the model is unavailable", [])
    except Exception:
        logger.exception("unexpected error")
        return error(500, "internal error", [])


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    global _cold_start
    started = time.perf_counter()
    metrics = MetricSet(settings.metrics_namespace, _dimensions, settings.function_version)
    try:
        status, body = _answer(event if isinstance(event, dict) else {}, metrics)
    except Exception:  # _answer maps every error of a route; this is the last line of defence
        logger.exception("unexpected error outside a route")
        status, body = _error(500, "internal error", [], None)
    if 400 <= status < 500:
        metrics.add(MetricName.INVALID_REQUESTS, 1)
    elif status >= 500:  # 500, or 503 when the model is unavailable: rolls a deployment back
        metrics.add_versioned(MetricName.SERVER_ERRORS, 1)
    if _cold_start:
        metrics.add(MetricName.COLD_START, 1)
        _cold_start = False
    elapsed_ms = (time.perf_counter() - started) * 1000
    metrics.add(MetricName.REQUEST_LATENCY, elapsed_ms, Unit.MILLISECONDS)
    metrics.flush()
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": body,
        "isBase64Encoded": False,
    }
