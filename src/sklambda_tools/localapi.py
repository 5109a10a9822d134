"""A local API Gateway for `make serve` and `make demo`: HTTP in, the proxy event the deployed
REST API would send, the function's handler called in-process, its answer back as HTTP.

Routes and the auth mode come from ``template.yaml`` (the API's OpenAPI definition and the
``AuthMode`` parameter); the handler module is loaded again when its source or the ``sklambda``
package changes, so an edit needs no rebuild. Built on Werkzeug's WSGI server.

Where the deployed service would fail, so does this one, the same way: a handler that raises,
returns no status or an answer over Lambda's 6 MB response limit makes a 502 with API Gateway's
``Internal server error`` body (so tests over HTTP see what a client would).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from sklambda_tools.local import (
    LambdaContext,
    TemplateResolver,
    load_handler,
    load_template,
    model_parameters,
)

TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")
MISSING_TOKEN = {"message": "Missing Authentication Token"}
FORBIDDEN = {"message": "Forbidden"}
INTERNAL_ERROR = {"message": "Internal server error"}  # API Gateway's, when the function fails
LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024  # bytes of a synchronous invocation's response
log = logging.getLogger(__name__)


# A route's Lambda integration: the function's alias (what the template names) or its ARN.
INTEGRATION = re.compile(r"/functions/\$\{(\w+)\.(?:Alias|Arn)\}/invocations$")


@dataclass
class Route:
    path: str
    method: str
    function: str

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters of ``path`` when it is this route's (``{name}`` matches one
        segment, as in API Gateway), else ``None``."""
        template, actual = self.path.split("/"), path.split("/")
        if len(template) != len(actual):
            return None
        found: dict[str, str] = {}
        for part, value in zip(template, actual, strict=True):
            if part.startswith("{") and part.endswith("}"):
                if not value:
                    return None
                found[part[1:-1]] = value
            elif part != value:
                return None
        return found


def api_routes(template: dict[str, Any], api: str = "PredictApi") -> list[Route]:
    """The routes of a REST API whose paths are an OpenAPI ``DefinitionBody``."""
    body = template["Resources"][api]["Properties"]["DefinitionBody"]
    routes = []
    for path, operations in body["paths"].items():
        for method, operation in operations.items():
            uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
            found = INTEGRATION.search(uri)
            if found is None:
                raise ValueError(f"{method.upper()} {path}: no function in the integration {uri}")
            routes.append(Route(path, method.upper(), found.group(1)))
    return routes


@dataclass
class Function:
    """A function's handler, reloaded when its sources change."""

    source: Path
    watched: list[Path]
    environment: dict[str, str]
    timeout: float
    module: ModuleType | None = None
    stamp: tuple[float, ...] = ()
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
        stamp = tuple(p.stat().st_mtime for p in self.watched)
        with self.lock:
            if self.module is None or stamp != self.stamp:
                import os

                os.environ.update(self.environment)
                self.module = load_handler(self.source)
                self.stamp = stamp
        handler: Callable[[dict[str, Any], Any], dict[str, Any]] = self.module.lambda_handler
        return handler


class LocalApi:
    """A WSGI application standing in for API Gateway in front of the template's functions."""

    def __init__(
        self,
        root: Path,
        *,
        model_dir: Path,
        parameters: dict[str, str] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.template = load_template(root / "template.yaml")
        self.resolver = TemplateResolver(self.template, model_parameters(model_dir, parameters))
        self.auth_mode = self.resolver.values["AuthMode"]
        self.stage = self.resolver.values.get("StageName", "v1")
        self.api_key = api_key or secrets.token_urlsafe(24)
        self.routes = {(r.path, r.method): r for r in api_routes(self.template)}
        package = sorted((root / "src" / "sklambda").glob("*.py"))
        self.functions: dict[str, Function] = {}
        for route in self.routes.values():
            if route.function in self.functions:
                continue
            code_uri, handler = self.resolver.function_handler(route.function)
            source = root / code_uri / f"{handler.split('.')[0]}.py"
            env = self.resolver.function_environment(route.function)
            env["SKLAMBDA_MODEL_DIR"] = str(model_dir)
            timeout = self.resolver.function_timeout(route.function)
            self.functions[route.function] = Function(source, [source, *package], env, timeout)

    # --- HTTP to event and back -----------------------------------------------------------

    def find(self, path: str, method: str) -> tuple[Route, dict[str, str]] | None:
        """The route of a request and its path parameters: a literal path first, as API
        Gateway prefers one to a parameter."""
        route = self.routes.get((path, method))
        if route is not None:
            return route, {}
        for candidate in self.routes.values():
            if candidate.method == method and "{" in candidate.path:
                found = candidate.match(path)
                if found is not None:
                    return candidate, found
        return None

    def event(
        self,
        environ: dict[str, Any],
        route: Route,
        body: bytes,
        parameters: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        from werkzeug.wrappers import Request

        request = Request(environ)
        headers = {k: v for k, v in request.headers.items()}
        multi_headers: dict[str, list[str]] = {}
        for k, v in request.headers.items():
            multi_headers.setdefault(k, []).append(v)
        query = {k: v[-1] for k, v in request.args.lists()} or None
        multi_query = {k: v for k, v in request.args.lists()} or None
        content_type = (request.content_type or "").split(";")[0].strip().lower()
        is_text = not body or content_type.startswith(TEXT_TYPES) or content_type.endswith("+json")
        now = datetime.now(UTC)
        request_id = str(uuid.uuid4())
        path = environ.get("PATH_INFO") or route.path
        if path.startswith(f"/{self.stage}/"):
            path = path[len(self.stage) + 1 :]
        return {
            "resource": route.path,
            "path": path,
            "httpMethod": route.method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": query,
            "multiValueQueryStringParameters": multi_query,
            "pathParameters": parameters or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": "000000000000",
                "apiId": "local",
                "resourceId": "local",
                "resourcePath": route.path,
                "httpMethod": route.method,
                "path": f"/{self.stage}{path}",
                "stage": self.stage,
                "protocol": environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "requestId": request_id,
                "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "requestTimeEpoch": int(now.timestamp() * 1000),
                "identity": {
                    "sourceIp": environ.get("REMOTE_ADDR", "127.0.0.1"),
                    "userAgent": request.headers.get("User-Agent"),
                },
            },
            "body": (
                body.decode("utf-8", "replace") if is_text else base64.b64encode(body).decode()
            )
            if body
            else None,
            "isBase64Encoded": bool(body) and not is_text,
        }

    def denied(self, environ: dict[str, Any]) -> dict[str, str] | None:
        """What API Gateway answers before the function, by the auth mode."""
        if self.auth_mode == "API_KEY" and environ.get("HTTP_X_API_KEY") != self.api_key:
            return FORBIDDEN
        if self.auth_mode == "IAM" and not environ.get("HTTP_AUTHORIZATION", "").startswith(
            "AWS4-HMAC-SHA256 "
        ):
            return MISSING_TOKEN  # a local server cannot verify a signature, only ask for one
        return None

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        prefix = f"/{self.stage}/"
        if path.startswith(prefix):  # accept the deployed URL's stage prefix too
            path = path[len(prefix) - 1 :]
        found = self.find(path, environ["REQUEST_METHOD"])
        if found is None:
            return self._reply(
                start_response,
                403,
                {"Content-Type": "application/json"},
                json.dumps(MISSING_TOKEN).encode(),
            )
        route, parameters = found
        refusal = self.denied(environ)
        if refusal is not None:
            return self._reply(
                start_response,
                403,
                {"Content-Type": "application/json"},
                json.dumps(refusal).encode(),
            )
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        event = self.event(environ, route, body, parameters)
        function = self.functions[route.function]
        context = LambdaContext(function_name=route.function, timeout_seconds=function.timeout)
        try:
            result = function.handler()(event, context)
            size = len(json.dumps(result).encode())
            if size > LAMBDA_RESPONSE_LIMIT:
                raise ValueError(f"a response of {size} bytes is over Lambda's limit")
            status = int(result["statusCode"])
            headers = dict(result.get("headers") or {})
            for name, values in (result.get("multiValueHeaders") or {}).items():
                headers[name] = values[-1]
            data = result.get("body") or ""
            payload = base64.b64decode(data) if result.get("isBase64Encoded") else data.encode()
        except Exception:
            log.exception("%s failed: API Gateway answers 502", route.function)
            return self._reply(
                start_response,
                502,
                {"Content-Type": "application/json"},
                json.dumps(INTERNAL_ERROR).encode(),
            )
        return self._reply(start_response, status, headers, payload)

    @staticmethod
    def _reply(
        start_response: Callable[..., Any], status: int, headers: dict[str, str], payload: bytes
    ) -> list[bytes]:
        from werkzeug.http import HTTP_STATUS_CODES

        headers = {**headers, "Content-Length": str(len(payload))}
        start_response(f"{status} {HTTP_STATUS_CODES.get(status, '')}", list(headers.items()))
        return [payload]


class Server:
    """The local API on a loopback port, in a background thread (``with Server(...) as s``)."""

    def __init__(self, app: LocalApi, host: str = "127.0.0.1", port: int = 3000) -> None:
        from werkzeug.serving import make_server

        self.app = app
        self.server = make_server(host, port, app, threaded=True)
        self.url = f"http://{host}:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self._thread.join(timeout=10)
