"""The pre-traffic check of a newly deployed version (CodeDeploy's ``BeforeAllowTraffic`` hook).

Before any request reaches a new version of the predict function, the hook asks it
``GET /health`` (it must answer 200 and serve the model being deployed, by name and version),
then sends it the rows of the packaged model's probe file (``sklambda.probes``) with
``POST /predict``, in requests of at most ``max_instances`` instances, and compares every
prediction with what the packaged pipeline answered at packaging. The outcome is a
``Verdict``: ``Succeeded``, or ``Failed`` with a one-line reason that names what was wrong (the
status and message of an answer, the first disagreeing row of the probe file, the time that
ran out). ``check`` never raises for a bad version: every way the new version can be wrong is
a ``Failed`` verdict.

The check talks to the version through an ``Invoker``: a callable that takes an API Gateway
REST proxy event and a timeout in seconds and returns the proxy result. ``lambda_invoker``
invokes a published version with Lambda's ``Invoke`` API; ``sklambda_tools.rollout`` has one
that runs the predict handler in this process.

Examples
--------
>>> def version(event, timeout):  # serves "penguins" 1, and no prediction
...     return {"statusCode": 200, "body": '{"model": {"name": "penguins", "version": "1"}}'}
>>> verdict = check(version, "models/penguins", max_instances=1000, deadline_seconds=10)
>>> verdict.status, verdict.reason[:61]
('Failed', 'the new version serves model "penguins" 1 where the packaged ')
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sklambda import aws, probes
from sklambda.errors import ModelLoadError, SklambdaError
from sklambda.manifest import Manifest, read_manifest

Status = Literal["Succeeded", "Failed"]
SUCCEEDED: Status = "Succeeded"
FAILED: Status = "Failed"

MAX_REASON = 400
"""The most characters a verdict's reason has (one line)."""
MAX_QUOTED = 120
"""The most characters of an answer's message, a name or a version quoted in a reason."""
MAX_INSTANCE = 160
"""The most characters of a disagreeing instance quoted in a reason."""
DEFAULT_MAX_BODY_BYTES = 1_048_576
"""The predict function's default request body limit (``SKLAMBDA_MAX_BODY_BYTES``)."""
REQUEST_ID_PREFIX = probes.REQUEST_ID_PREFIX

THROTTLE_ATTEMPTS = 4
"""Invokes of one request when Lambda throttles or the version is not ready yet (``PASSING``)."""
PASSING = frozenset(
    {
        "TooManyRequestsException",  # throttled
        "ResourceConflictException",  # the new version is still Pending
        "SnapStartNotReadyException",  # its snapshot is still being made
    }
)
"""What a short wait can mend: an invoke refused with one of these is tried again."""
THROTTLE_BACKOFF_SECONDS = 0.25
"""The pause after the first throttled invoke; it doubles after each."""


class InvokeError(SklambdaError):
    """The version gave no proxy result for a request; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvokeTimeout(InvokeError):
    """No answer came within the time the request was given."""

    def __init__(self, reason: str = "no answer in time") -> None:
        super().__init__(reason)


class InvokeFailed(InvokeError):
    """The function errored (Lambda's ``FunctionError``: a crash, an init failure, its own
    timeout) or the invoke API refused the request."""


Invoker = Callable[[dict[str, Any], float], Any]
"""``invoke(event, timeout_seconds) -> proxy result``; raises ``InvokeTimeout`` or
``InvokeFailed``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    status: Status
    reason: str
    """One line, at most ``MAX_REASON`` characters."""
    rows: int
    """Probe rows whose answers were compared (the disagreeing one included)."""
    seconds: float
    """From the start of the check to the verdict."""

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
        }


def failed(reason: str, *, rows: int = 0, seconds: float = 0.0) -> Verdict:
    """A ``Failed`` verdict, its reason made one bounded line."""
    return Verdict(status=FAILED, reason=_line(reason, MAX_REASON), rows=rows, seconds=seconds)


# --- the check --------------------------------------------------------------------------------


class _Fail(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check(
    invoke: Invoker,
    model_dir: str | Path,
    *,
    max_instances: int,
    deadline_seconds: float,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    clock: Callable[[], float] = time.monotonic,
) -> Verdict:
    """Check the version behind ``invoke`` against the packaged model in ``model_dir``.

    Reads ``model.json`` and the probe file (verified against its SHA-256), asks ``GET
    /health``, then sends the probe rows in requests of at most ``max_instances`` instances
    and ``max_body_bytes`` bytes of body; each request is given the time left of
    ``deadline_seconds`` (measured with ``clock``). Never raises for a bad version or a bad
    probe file: they are a ``Failed`` verdict.
    """
    run = _Check(invoke, deadline_seconds, clock)
    try:
        manifest = read_manifest(model_dir)
        probe_set = probes.read(model_dir, manifest)
    except ModelLoadError as exc:
        return run.verdict(FAILED, f"the probes of the packaged model cannot be used: {exc}")
    try:
        run.health(manifest)
        run.predictions(manifest, probe_set, max_instances, max_body_bytes)
    except _Fail as exc:
        return run.verdict(FAILED, exc.reason)
    return run.verdict(
        SUCCEEDED,
        f"all {run.rows} probe rows agree with the packaged pipeline (model "
        f"{_quoted(manifest.name)} {_cut(manifest.version)}, {run.requests} requests)",
    )


class _Check:
    def __init__(self, invoke: Invoker, deadline: float, clock: Callable[[], float]) -> None:
        self.invoke, self.deadline, self.clock = invoke, deadline, clock
        self.started = clock()
        self.rows = 0
        self.requests = 0
        self.total = 0

    def verdict(self, status: Status, reason: str) -> Verdict:
        seconds = self.clock() - self.started
        return Verdict(
            status=status, reason=_line(reason, MAX_REASON), rows=self.rows, seconds=seconds
        )

    def ask(self, what: str, event: dict[str, Any], first_row: int | None = None) -> Any:
        """The body of a 200 answer to ``event``, parsed; anything else fails the check (a
        refusal of probe rows from ``first_row`` on names the first row it found wrong)."""
        left = self.deadline - (self.clock() - self.started)
        if left <= 0:
            done = f", after {self.rows} of {self.total} probe rows" if self.total else ""
            raise _Fail(
                f"the check ran out of time ({self.deadline:g} seconds) before {what}{done}"
            )
        self.requests += 1
        try:
            result = self.invoke(event, left)
        except InvokeTimeout:
            raise _Fail(
                f"the new version did not answer {what} within {left:.1f} seconds"
            ) from None
        except InvokeFailed as exc:
            raise _Fail(f"{what} failed: {exc.reason}") from None
        status = result.get("statusCode") if isinstance(result, dict) else None
        body = result.get("body") if isinstance(result, dict) else None
        if not isinstance(status, int) or isinstance(status, bool) or not isinstance(body, str):
            raise _Fail(f"the new version answered {what} with no API Gateway proxy result")
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            document = None
        if status != 200:
            rows = "" if first_row is None else _first_error(document, first_row)
            raise _Fail(f"{what} answered {status}: {_message(document)}{rows}")
        if not isinstance(document, dict):
            raise _Fail(f"{what} answered 200 with a body that is not a JSON object")
        return document

    def health(self, manifest: Manifest) -> None:
        document = self.ask("GET /health", proxy_event("GET", "/health", None, self._id()))
        self.same_model("GET /health", manifest, document.get("model"))

    def same_model(self, what: str, manifest: Manifest, served: Any) -> None:
        name = served.get("name") if isinstance(served, dict) else None
        version = served.get("version") if isinstance(served, dict) else None
        if not isinstance(name, str) or not isinstance(version, str):
            raise _Fail(f"{what} answered 200 without the model's name and version")
        if (name, version) != (manifest.name, manifest.version):
            raise _Fail(
                f"the new version serves model {_quoted(name)} {_cut(version)} where the packaged "
                f"model is {_quoted(manifest.name)} {_cut(manifest.version)}"
            )

    def predictions(
        self, manifest: Manifest, probe_set: probes.ProbeSet, max_instances: int, max_bytes: int
    ) -> None:
        rows = probe_set.rows
        self.total = len(rows)
        instances = []
        for index, row in enumerate(rows):
            try:
                instances.append(_compact(row.instance))
            except ValueError:  # NaN or infinity: parse took them, a request cannot carry them
                raise _Fail(f"row {index} of {probes.PROBES_FILE} is not plain JSON") from None
        for start, texts in _batches(instances, max_instances, max_bytes):
            end = start + len(texts) - 1
            what = f"POST /predict (probe rows {start}-{end})"
            body = '{"instances":[' + ",".join(texts) + "]}"
            document = self.ask(what, proxy_event("POST", "/predict", body, self._id()), start)
            self.same_model(what, manifest, document.get("model"))
            answers = document.get("predictions")
            if not isinstance(answers, list) or len(answers) != len(texts):
                count = len(answers) if isinstance(answers, list) else "no"
                raise _Fail(f"{what} answered {count} predictions for {len(texts)} instances")
            for offset, got in enumerate(answers):
                index = start + offset
                self.rows += 1
                why = probes.disagreement(probe_set, rows[index].expected, got)
                if why is not None:
                    raise _Fail(
                        f"row {index} of {probes.PROBES_FILE} disagrees: {why}; instance "
                        f"{_line(texts[offset], MAX_INSTANCE)}"
                    )

    def _id(self) -> str:
        return f"{REQUEST_ID_PREFIX}{self.requests + 1}"


_ENVELOPE = len('{"instances":[]}')


def _batches(texts: list[str], max_instances: int, max_bytes: int) -> list[tuple[int, list[str]]]:
    """``(first row, instances as JSON)`` of each request: at most ``max_instances`` instances
    and, unless a single instance is larger, ``max_bytes`` bytes of body (the JSON is ASCII:
    a character is a byte)."""
    out: list[tuple[int, list[str]]] = []
    batch: list[str] = []
    start, size = 0, _ENVELOPE
    for index, text in enumerate(texts):
        if batch and (len(batch) >= max_instances or size + 1 + len(text) > max_bytes):
            out.append((start, batch))
            batch, start, size = [], index, _ENVELOPE
        size += len(text) + (1 if batch else 0)
        batch.append(text)
    if batch:
        out.append((start, batch))
    return out


_INSTANCE_PATH = re.compile(r"instances\[(\d{1,9})\](?:\.(.*))?")
"""An error's path in a request of at most ``max_instances`` (100000) instances: an index of
more digits names no row (and would not convert to an integer past 4300 digits)."""


def _first_error(document: Any, start: int) -> str:
    """The first field error of a refused request, as a row of the probe file and a field."""
    errors = document.get("errors") if isinstance(document, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    if not isinstance(first, dict):
        return ""
    path, reason = first.get("path"), first.get("reason")
    found = _INSTANCE_PATH.fullmatch(path) if isinstance(path, str) else None
    if found is None or not isinstance(reason, str):
        return ""
    where = f"row {start + int(found.group(1))} of {probes.PROBES_FILE}"
    if found.group(2):
        where += f", {_quoted(found.group(2))}"
    return f"; first error: {where}: {_quoted(reason)}"


def _message(document: Any) -> str:
    message = document.get("message") if isinstance(document, dict) else None
    return _quoted(message) if isinstance(message, str) else "(no message)"


def proxy_event(method: str, path: str, body: str | None, request_id: str) -> dict[str, Any]:
    """An API Gateway REST proxy event, as the deployed API would send it to the function."""
    headers = {"Accept": "application/json", "User-Agent": "sklambda-pretraffic"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": path,
            "requestId": request_id,
            "identity": {"sourceIp": "127.0.0.1", "userAgent": "sklambda-pretraffic"},
        },
        "body": body,
        "isBase64Encoded": False,
    }


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _line(text: str, limit: int) -> str:
    """``text`` on one line of UTF-8 text (a lone surrogate made "?"), cut to ``limit``
    characters (the cut marked with "…")."""
    one = " ".join(text.encode("utf-8", "replace").decode("utf-8").split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


def _cut(text: str) -> str:
    return _line(text, MAX_QUOTED)


def _quoted(text: str) -> str:
    return json.dumps(_cut(text), ensure_ascii=False)


# --- invoking a published version -------------------------------------------------------------


def lambda_invoker(
    function_arn: str,
    *,
    client_for: Callable[[float], Any] | None = None,
    attempts: int = THROTTLE_ATTEMPTS,
    backoff_seconds: float = THROTTLE_BACKOFF_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Invoker:
    """An ``Invoker`` for the published version ``function_arn`` (a qualified ARN), through
    Lambda's ``Invoke`` API (``RequestResponse``, the event as a JSON payload).

    ``client_for(seconds)`` gives the Lambda client to use when ``seconds`` are left (by default
    ``sklambda.aws.client("lambda", ...)`` with that read timeout, in whole seconds, and no
    retries of its own). An invoke refused for what a short wait mends (``PASSING``: throttled,
    or the version not ready yet) is tried again, at most ``attempts`` times in all and only
    while the time given lasts, after a pause of ``backoff_seconds`` that doubles each time.
    """
    clients = client_for or _lambda_client
    payload_of = _compact

    def invoke(event: dict[str, Any], timeout: float) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

        deadline = clock() + timeout
        payload = payload_of(event).encode()
        for attempt in range(1, attempts + 1):
            left = deadline - clock()
            if left <= 0:
                raise InvokeTimeout()
            try:
                response = clients(left).invoke(
                    FunctionName=function_arn, InvocationType="RequestResponse", Payload=payload
                )
                data = response["Payload"].read()
            except ReadTimeoutError:
                raise InvokeTimeout() from None
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code") or "an unknown error")
                if code not in PASSING:
                    raise InvokeFailed(f"the invoke API refused it: {_cut(code)}") from None
                pause = backoff_seconds * 2 ** (attempt - 1)
                if attempt == attempts or clock() + pause >= deadline:
                    raise InvokeFailed(
                        f"the invoke API refused it: {code} ({attempt} times)"
                    ) from None
                sleep(pause)
                continue
            except BotoCoreError as exc:
                raise InvokeFailed(
                    f"the invoke API could not be reached: {type(exc).__name__}"
                ) from None
            return _result(response, data)
        raise AssertionError("unreachable")  # pragma: no cover

    return invoke


def _lambda_client(seconds_left: float) -> Any:
    # whole seconds, so that a few clients serve every request; never more than the time left
    return aws.client("lambda", timeout=float(max(1, int(seconds_left))), attempts=1)


def _result(response: dict[str, Any], data: bytes) -> Any:
    """The function's answer, or ``InvokeFailed`` when it errored."""
    try:
        answer = json.loads(data) if data else None
    except (ValueError, RecursionError):  # not JSON, or nested too deep
        answer = None
    kind = response.get("FunctionError")
    if kind:
        error = answer if isinstance(answer, dict) else {}
        error_type = error.get("errorType")
        message = error.get("errorMessage")
        detail = f": {_cut(str(error_type))}" if error_type else ""
        if message:
            detail += f": {_cut(str(message))}"
        raise InvokeFailed(f"the function failed ({_cut(str(kind))}){detail}")
    if answer is None:
        raise InvokeFailed("the function's answer is not JSON")
    return answer
