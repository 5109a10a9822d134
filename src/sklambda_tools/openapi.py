"""The prediction API's OpenAPI document, from ``sklambda_tools.contracts`` and a model's manifest.

Powertools' resolver renders it: each documented route is registered on a resolver with
validation on, so that the request model becomes the request body's schema. The deployed
handler does not use this resolver (it validates once, with the core's schema).
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Annotated, Any

from sklambda.manifest import Manifest, read_manifest
from sklambda_tools.contracts import ROUTES, RouteDoc, infer_request_model, request_model


def _endpoint(route: RouteDoc, body: type | None) -> Any:
    """A stand-in for the route's function, whose signature is what the document shows."""

    def endpoint(*args: Any, **kwargs: Any) -> Any:  # never called: only its signature is read
        raise NotImplementedError

    endpoint.__name__ = route.name
    parameters = []
    annotations: dict[str, Any] = {}
    for name in route.parameters:
        annotations[name] = str
        parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=str))
    if body is not None:
        from aws_lambda_powertools.event_handler.openapi.params import Body

        annotations["request"] = Annotated[body, Body()]
        parameters.append(
            inspect.Parameter(
                "request", inspect.Parameter.KEYWORD_ONLY, annotation=annotations["request"]
            )
        )
    endpoint.__annotations__ = annotations
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return endpoint


def document(manifest: Manifest, max_instances: int = 1000) -> dict[str, Any]:
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver

    app = APIGatewayRestResolver(enable_validation=True)
    bodies = {
        "predict": request_model(manifest, max_instances),
        "infer": infer_request_model(manifest),
    }
    for route in ROUTES:
        register = app.route(
            re.sub(r"\{(\w+)\}", r"<\1>", route.path),  # the resolver's form of a parameter
            method=route.method,
            summary=route.summary,
            description=route.description,
            responses=route.responses,  # type: ignore[arg-type]
        )
        register(_endpoint(route, bodies[route.body] if route.body else None))
    doc: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(
            title=f"sklambda prediction API: {manifest.name}",
            version=manifest.version,
            description=manifest.description,
        )
    )
    return doc


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def write(model_dir: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(document(read_manifest(model_dir))))
