"""`make invoke FN=<LogicalId> EVENT=<file>`: what `sam local invoke` does, without a container.

The function's environment comes from template.yaml (Globals merged, parameters at their
defaults or ``--param Name=Value``), ``/opt/model`` is the model directory, the context's
remaining time runs down from the function's timeout, and the result is printed.

A mistake in what is asked is refused before the handler runs, with a message on stderr and
exit status 2 (no traceback):

- a logical id that is not a function of template.yaml (the functions there are listed);
- an event file that is missing, a directory, unreadable, not UTF-8, not JSON, or not a JSON
  object;
- an event of the wrong kind for the function: PredictFunction takes an API Gateway (REST)
  proxy event, BatchFunction an S3 notification event (``events/`` has both kinds);
- a ``--param`` that is not ``Name=Value`` or names no parameter of the template;
- a model directory without ``model.json``.

A bare request body, such as ``samples/request.json`` (``{"instances": [...]}``), is refused,
not wrapped: the handler never receives a body as it is, and wrapping it silently would hide
that. The message names the ``events/`` file to start from and how to wrap the body in it (or
``make serve``, whose local API takes the body as a client sends it).

An exception the handler raises is the function's own error and shows its traceback, as
``sam local invoke`` would. ``PreTrafficCheckFunction`` (the CodeDeploy hook) checks a deployed
version: here its check runs against ``PredictFunction`` in this process on the model, and
nothing is reported to CodeDeploy.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

from sklambda_tools.local import TemplateResolver, invoke_function, load_template
from sklambda_tools.rollout import check_in_process

ROOT = Path(__file__).resolve().parents[1]
PROG = "scripts/invoke.py"
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
HOOK = "PreTrafficCheckFunction"
KIND_WORDS = {
    "api": "an API Gateway proxy event",
    "s3": "an S3 notification event",
    "schedule": "a scheduled (EventBridge) event",
}


class Refused(Exception):
    """A mistake in what was asked: the message for stderr."""


def refuse(message: str) -> NoReturn:
    raise Refused(message)


# --- the function -----------------------------------------------------------------------------


def functions_of(template: dict[str, Any]) -> list[str]:
    return [
        name
        for name, resource in template.get("Resources", {}).items()
        if isinstance(resource, dict) and resource.get("Type") in FUNCTION_TYPES
    ]


def check_function(template: dict[str, Any], name: str) -> None:
    functions = functions_of(template)
    if name in functions:
        return
    listed = ", ".join(functions) or "none"
    resource = template.get("Resources", {}).get(name)
    if isinstance(resource, dict):
        refuse(
            f"{name} is an {resource.get('Type', 'untyped resource')} in template.yaml, "
            f"not a function; the functions are {listed}"
        )
    near = [f for f in functions if f.lower() == name.lower() or f.lower().startswith(name.lower())]
    near = near or difflib.get_close_matches(name, functions, n=1)
    hint = f" (did you mean {near[0]}?)" if near else ""
    refuse(f"no function {name} in template.yaml{hint}; the functions are {listed}")


def event_kind(template: dict[str, Any], name: str) -> str | None:
    """What invokes the function: "api", "s3", "schedule", or None (not known)."""
    resources = template.get("Resources", {})
    events = (resources[name].get("Properties") or {}).get("Events") or {}
    types = {e.get("Type") for e in events.values() if isinstance(e, dict)}
    if types & {"Api", "HttpApi"}:
        return "api"
    if "S3" in types:
        return "s3"
    if types & {"Schedule", "ScheduleV2"}:
        return "schedule"
    # A REST API defined apart from the function invokes it through a permission
    for resource in resources.values():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Lambda::Permission":
            continue
        props = resource.get("Properties") or {}
        target = props.get("FunctionName")
        # the function, its ARN, or its alias (``!Ref PredictFunction.Alias``)
        ours = target in (name, {"Ref": name}, {"Ref": f"{name}.Alias"}) or (
            isinstance(target, dict) and (target.get("Fn::GetAtt") or [None])[0] == name
        )
        if ours and "apigateway" in str(props.get("Principal", "")):
            return "api"
    return None


# --- the event --------------------------------------------------------------------------------


def read_event(path: Path, examples: str) -> dict[str, Any]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        refuse(f"{path}: no such file{examples}")
    except IsADirectoryError:
        refuse(f"{path} is a directory, not an event file{examples}")
    except PermissionError:
        refuse(f"cannot read {path}: permission denied")
    except OSError as exc:
        refuse(f"cannot read {path}: {exc.strerror or exc}")
    if not data.strip():
        refuse(f"{path} is empty, not JSON: an event file holds one JSON object")
    try:
        event = json.loads(data)
    except UnicodeDecodeError:
        refuse(f"{path} is not UTF-8 text, so not JSON")
    except json.JSONDecodeError as exc:
        refuse(f"{path} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    if not isinstance(event, dict):
        what = {list: "an array", str: "a string", bool: "a boolean"}.get(type(event), "a number")
        if event is None:
            what = "null"
        refuse(f"{path} holds {what}; an event is a JSON object")
    return event


def kind_of(event: dict[str, Any]) -> str | None:
    """What the event is, by its shape: "api", "api-v2", "s3", "schedule", "body" (a bare
    request body) or None."""
    if "httpMethod" in event:
        return "api"
    if "routeKey" in event or event.get("version") == "2.0":
        return "api-v2"
    if "Records" in event:
        return "s3"
    if event.get("detail-type") == "Scheduled Event" or event.get("source") == "aws.events":
        return "schedule"
    if "instances" in event:
        return "body"
    return None


def examples_of(kind: str | None) -> list[str]:
    """The event files in events/ of that kind (all of them when the kind is not known)."""
    found = []
    for file in sorted((ROOT / "events").glob("*.json")):
        try:
            event = json.loads(file.read_bytes())
        except (OSError, ValueError):
            continue
        if kind is None or (isinstance(event, dict) and kind_of(event) == kind):
            found.append(f"events/{file.name}")
    return found


def listing(files: list[str]) -> str:
    return "events/ has " + ", ".join(f.removeprefix("events/") for f in files)


def named(files: list[str], preferred: str) -> str:
    """One event file to name: the preferred one if it is there, else the first."""
    return preferred if preferred in files else (files[0] if files else preferred)


def check_event(template: dict[str, Any], event: dict[str, Any], function: str, path: Path) -> None:
    expected = event_kind(template, function)
    got = kind_of(event)
    # a scheduled function reads little of its event ({} will do); the others need theirs
    if expected is None or got == expected or (expected == "schedule" and got is None):
        if expected == "s3":
            check_s3_records(event, path)
        return
    examples = examples_of(expected)
    wanted = KIND_WORDS[expected]
    listed = f" ({listing(examples)})" if examples else ""
    if got == "body":
        lines = [f"{path} looks like a request body, but {function} receives {wanted}."]
        if expected == "api":
            start = named(examples, "events/predict-multi.json")
            lines += [
                f'Start from {start}: put the request, as one JSON string, in its "body", e.g.',
                f"  jq --rawfile body {path} '.body = $body' {start} > my-event.json",
                f"  make invoke FN={function} EVENT=my-event.json",
                f"or run `make serve` and send the body as it is: "
                f"curl -H 'Content-Type: application/json' -d @{path} "
                f"http://127.0.0.1:3000/predict",
            ]
        elif expected == "s3":
            start = named(examples, "events/s3-put-csv.json")
            lines += [
                f"Use {start} (the event the bucket sends when a file lands in incoming/); to "
                f"score instances use PredictFunction with an API event such as "
                f"events/predict-multi.json, and to score a file run `make batch FILE=<file>`."
            ]
        else:
            start = named(examples, "events/drift-schedule.json")
            lines += [f"Use {start}."]
        refuse("\n".join(lines))
    if got == "api-v2":
        refuse(
            f"{path} is an HTTP API (payload 2.0) event; {function} is behind a REST API and "
            f"takes {wanted} with httpMethod and path{listed}"
        )
    if got is not None and got in KIND_WORDS:
        owners = [f for f in functions_of(template) if event_kind(template, f) == got]
        owner = f", for {' or '.join(owners)}" if owners else ""
        refuse(f"{path} is {KIND_WORDS[got]}{owner}; {function} takes {wanted}{listed}")
    if expected == "api":
        refuse(f"{path} is not {wanted} (it has no httpMethod); {function} takes one{listed}")
    refuse(f"{path} is not {wanted}; {function} takes one{listed}")


def check_s3_records(event: dict[str, Any], path: Path) -> None:
    records = event.get("Records")
    if not isinstance(records, list) or not records:
        refuse(f"{path}: an S3 event holds a non-empty Records list; see events/s3-put-csv.json")
    for i, record in enumerate(records):
        for field in ("bucket.name", "object.key"):
            value: Any = record.get("s3") if isinstance(record, dict) else None
            for part in field.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if not isinstance(value, str) or not value:
                refuse(
                    f"{path}: Records[{i}].s3.{field} is missing; an S3 event names the bucket "
                    f"and the key of the object (see events/s3-put-csv.json)"
                )


# --- the rest ---------------------------------------------------------------------------------


def parse_parameters(template: dict[str, Any], items: list[str]) -> dict[str, str]:
    known = template.get("Parameters", {})
    parameters = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            refuse(f"--param {item}: expected Name=Value, e.g. --param MaxInstances=5")
        if name not in known:
            near = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            refuse(f"--param {item}: no parameter {name} in template.yaml{hint}")
        parameters[name] = value
    return parameters


def prepare(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str], Path]:
    """Check everything asked for; the event, the parameters and the model directory."""
    template = load_template(ROOT / "template.yaml")
    check_function(template, args.function)
    parameters = parse_parameters(template, args.param)
    examples = examples_of(event_kind(template, args.function))
    hint = f"; {listing(examples)}" if examples else ""
    event = read_event(args.event, hint)
    check_event(template, event, args.function, args.event)
    model = args.model.resolve()
    if not (model / "model.json").is_file():
        refuse(f"no model.json in {args.model}: --model is a packaged model's directory")
    try:  # what invoke_function reads of the template, before it calls the handler
        resolver = TemplateResolver(template, parameters)
        resolver.function_handler(args.function)
        resolver.function_environment(args.function)
        resolver.function_timeout(args.function)
    except (KeyError, ValueError) as exc:
        refuse(f"cannot prepare {args.function} from template.yaml: {exc}")
    return event, parameters, model


def main() -> int:
    parser = argparse.ArgumentParser(prog=PROG)
    parser.add_argument("function", help="the function's logical id in template.yaml")
    parser.add_argument("event", type=Path, help="an event file (events/...)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "penguins")
    parser.add_argument("--param", action="append", default=[], help="Name=Value")
    args = parser.parse_args()
    try:
        event, parameters, model = prepare(args)
    except Refused as refused:
        print(f"{PROG}: {refused}", file=sys.stderr)
        return 2
    if args.function == HOOK:
        # The hook checks a deployed version and reports to CodeDeploy; locally, its check runs
        # against the predict function in this process, and nothing is reported.
        print(
            f"{PROG}: {HOOK} checks a deployed version of PredictFunction and reports to "
            "CodeDeploy; here its check runs against PredictFunction in this process on "
            f"{args.model}, and nothing is reported",
            file=sys.stderr,
        )
        verdict = check_in_process(model, model, parameters=parameters)
        print(json.dumps(verdict.as_dict(), indent=2))
        return 0
    # From here on an exception is the function's, and shows its traceback
    result = invoke_function(ROOT, args.function, event, model_dir=model, parameters=parameters)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
