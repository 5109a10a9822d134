"""The deployed functions' versions, and rollback of the API to one of them (`make versions`,
`make rollback VERSION=<n>`).

Each of PredictFunction, BatchFunction, DriftFunction and SplitFunction publishes a version per
release and is
reached through its alias ``live``. A version's description, written by the build, names what it
serves: ``sklambda model=<name> version=<model version> release=<16 hex>``; the same release on
two functions is the same model artifact and the same sklambda code.

``list`` shows each function's versions, newest first, and where ``live`` points (both versions
and their weights while CodeDeploy shifts the predict alias). ``rollback --version N`` points the
predict alias at version N, and the batch, drift and split aliases at their versions of N's
release.
It refuses while a deployment runs, and moves nothing when N is live already.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sklambda_tools.release import Release, parse_description

FUNCTIONS = ("PredictFunction", "BatchFunction", "DriftFunction", "SplitFunction")
OPTIONAL = ("SplitFunction",)
"""Functions a stack deployed before them lacks: listed and rolled back when it has them."""
PREDICT = "PredictFunction"
ALIAS = "live"
DEFAULT_STACK = "sklambda"
SAMCONFIG = Path("samconfig.toml")
MAX_VERSION_DIGITS = 18
"""Lambda numbers versions 1, 2, ...: a VERSION of more digits names none."""

TIMESTAMP = re.compile(
    r"(?P<date>\d{4}-\d\d-\d\d)T(?P<time>\d\d:\d\d:\d\d)(?:\.\d+)?(?P<zone>Z|[+-]\d\d:?\d\d)?"
)

STOP_DEPLOYMENT = (
    "aws deploy stop-deployment --deployment-id <id> --auto-rollback-enabled "
    "(the id: aws deploy list-deployments --include-only-statuses InProgress)"
)
CAVEAT = (
    "note: CloudFormation still records each alias at the version it deployed: the next deploy "
    "that publishes a new version moves the alias again, and a deploy that publishes none leaves "
    "it where rollback put it."
)
# What to do about the AWS errors a user meets most; the others are shown with their code alone.
AWS_HINTS = {
    "NoCredentialsError": "configure credentials (aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID)",
    "PartialCredentialsError": "the credentials are incomplete (aws configure, AWS_PROFILE)",
    "NoRegionError": "give a region (--region, or AWS_REGION=... to make)",
    "ExpiredToken": "the session has expired: sign in again (aws sso login, new credentials)",
    "ExpiredTokenException": "the session has expired: sign in again (aws sso login)",
    "AccessDenied": "these credentials may not do this",
    "AccessDeniedException": "these credentials may not do this",
    "ThrottlingException": "AWS is throttling these calls: try again in a minute",
    "Throttling": "AWS is throttling these calls: try again in a minute",
    "TooManyRequestsException": "AWS is throttling these calls: try again in a minute",
}


class Refused(Exception):
    """Something the user can act on, said in one line; the command exits 2."""


@dataclass(frozen=True)
class Version:
    number: int
    description: str
    modified: str  # the version's LastModified: when it was published

    @property
    def build(self) -> Release | None:
        """What the version serves, from the description the build wrote."""
        return parse_description(self.description)

    def serves(self) -> str:
        """The model and release, or the description as it is when it is in another form."""
        build = self.build
        if build is None:
            return f'description "{self.description}"' if self.description else "no description"
        return f"{build.model_name} {build.model_version}, release {build.id}"


@dataclass(frozen=True)
class Live:
    """Where the alias points: its version, and while a deployment shifts traffic, the other
    versions' weights."""

    version: str
    weights: dict[str, float] = field(default_factory=dict)
    revision: str | None = None

    @property
    def deploying(self) -> bool:
        return bool(self.weights)

    def shares(self) -> dict[str, float]:
        """Each version the alias sends requests to, with its share (the alias's own version
        first)."""
        return {self.version: 1.0 - sum(self.weights.values()), **self.weights}

    def describe(self) -> str:
        if not self.deploying:
            return self.version
        return " and ".join(f"{v} ({_percent(w)})" for v, w in self.shares().items())


@dataclass(frozen=True)
class Function:
    logical_id: str
    name: str
    versions: tuple[Version, ...]  # newest first
    live: Live | None  # None: no alias named live

    def version(self, number: int) -> Version | None:
        return next((v for v in self.versions if v.number == number), None)

    def serving(self) -> Version | None:
        """The published version the alias points at (None: no alias, or $LATEST)."""
        live = self.live
        return self.version(int(live.version)) if live and live.version.isdigit() else None

    def of_release(self, release: str) -> list[Version]:
        return [v for v in self.versions if v.build is not None and v.build.id == release]

    def numbers(self) -> str:
        return ", ".join(str(v.number) for v in self.versions) or "none"


# --- reading the stack --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The stack and where its name came from (for the message when it does not exist)."""

    stack: str
    source: str


def target(stack: str | None, samconfig: Path = SAMCONFIG) -> Target:
    """``--stack``, else samconfig.toml's ``stack_name`` (its deploy parameters, else its global
    ones, as ``sam deploy`` reads them), else ``sklambda``."""
    if stack:
        return Target(stack, "given by --stack")
    if not samconfig.is_file():
        return Target(DEFAULT_STACK, f"the default: there is no {samconfig}")
    try:
        config = tomllib.loads(samconfig.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise Refused(f"{samconfig}: cannot read its stack_name: {_one_line(str(exc))}") from exc
    default = config.get("default")
    for command in ("deploy", "global"):
        section = default.get(command) if isinstance(default, dict) else None
        parameters = section.get("parameters") if isinstance(section, dict) else None
        name = parameters.get("stack_name") if isinstance(parameters, dict) else None
        if isinstance(name, str) and name:
            return Target(name, f"{samconfig}'s [default.{command}.parameters] stack_name")
    return Target(DEFAULT_STACK, f"the default: {samconfig} names no stack_name")


def clients(region: str | None) -> tuple[Any, Any]:
    """CloudFormation and Lambda clients (the region: ``region``, else boto3's default chain),
    retrying throttled calls with backoff."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5})
    session = boto3.session.Session(region_name=region)
    return (
        session.client("cloudformation", config=config),
        session.client("lambda", config=config),
    )


def function_name(cfn: Any, where: Target, logical_id: str) -> str:
    """The physical name of one of the stack's functions."""
    from botocore.exceptions import ClientError

    region = cfn.meta.region_name
    try:
        detail = cfn.describe_stack_resource(StackName=where.stack, LogicalResourceId=logical_id)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        message = str(error.get("Message", ""))
        if error.get("Code") != "ValidationError" or "does not exist" not in message:
            raise
        if message.startswith("Resource "):
            raise Refused(
                f"stack '{where.stack}' in {region} has no {logical_id}: is it an sklambda stack?"
            ) from exc
        raise Refused(
            f"no stack '{where.stack}' in {region} ({where.source}): name the stack with "
            "STACK=... (--stack) and its region with AWS_REGION=... (--region)"
        ) from exc
    resource = detail["StackResourceDetail"]
    name = resource.get("PhysicalResourceId")
    if not name or str(resource.get("ResourceStatus", "")).startswith("DELETE"):
        raise Refused(f"stack '{where.stack}' in {region} has no {logical_id} (it was deleted)")
    return str(name)


def read_function(lam: Any, where: Target, logical_id: str, name: str) -> Function:
    """A function's published versions (newest first) and its alias ``live``."""
    from botocore.exceptions import ClientError

    versions: list[Version] = []
    try:
        for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=name):
            versions.extend(
                Version(int(v["Version"]), v.get("Description", ""), v.get("LastModified", ""))
                for v in page["Versions"]
                if v["Version"] != "$LATEST"
            )
        if not versions:  # none published: is the function there at all?
            lam.get_function_configuration(FunctionName=name)
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
        raise Refused(
            f"{logical_id} of stack '{where.stack}' ({name}) does not exist in Lambda"
        ) from exc
    try:
        alias = lam.get_alias(FunctionName=name, Name=ALIAS)
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
        live = None
    else:
        weights = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
        live = Live(
            str(alias["FunctionVersion"]),
            {str(v): float(w) for v, w in weights.items()},
            alias.get("RevisionId"),
        )
    versions.sort(key=lambda v: v.number, reverse=True)
    return Function(logical_id, name, tuple(versions), live)


def read_stack(cfn: Any, lam: Any, where: Target) -> dict[str, Function]:
    names = {}
    for logical_id in FUNCTIONS:
        try:
            names[logical_id] = function_name(cfn, where, logical_id)
        except Refused as exc:
            if logical_id not in OPTIONAL or f"has no {logical_id}" not in str(exc):
                raise
    return {
        logical_id: read_function(lam, where, logical_id, name)
        for logical_id, name in names.items()
    }


# --- list ---------------------------------------------------------------------------------------


def render(where: Target, region: str, functions: Iterable[Function]) -> str:
    """Each function's versions, newest first, marking the one (or, during a deployment, the two)
    that ``live`` serves."""
    lines = [f"stack {where.stack} ({region})"]
    for function in functions:
        live = function.live
        if live is None:
            state = f"no alias '{ALIAS}' (deployed before versions were published?)"
        elif live.deploying:
            state = f"{ALIAS}: {live.describe()}, a deployment is shifting traffic"
        else:
            state = f"{ALIAS}: {live.describe()}"
        lines += ["", f"{function.logical_id} ({function.name})  {state}"]
        if not function.versions:
            lines.append("  no published versions")
            continue
        shares = live.shares() if live is not None else {}
        rows = [("version", "alias", "created (UTC)", "model", "model version", "release")]
        for v in function.versions:
            share = shares.get(str(v.number))
            mark = "" if share is None else ALIAS if share >= 1.0 else f"{ALIAS} {_percent(share)}"
            build = v.build
            what = (
                (build.model_name, build.model_version, build.id)
                if build is not None
                else (v.serves(),)
            )
            rows.append((str(v.number), mark, _when(v.modified), *what))
        # a description in another form runs on past the model's columns, not widening them
        widths = [
            max(len(row[i]) for row in rows if i < 3 or len(row) == len(rows[0]))
            for i in range(len(rows[0]))
        ]
        for row in rows:
            cells = [
                cell.rjust(widths[i]) if i == 0 else cell.ljust(widths[i])
                for i, cell in enumerate(row)
            ]
            lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


# --- rollback -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    function: Function
    to: Version

    def line(self) -> str:
        assert self.function.live is not None
        was = self.function.serving()
        before = f" (was {was.serves()})" if was is not None and was.build != self.to.build else ""
        return (
            f"  {self.function.logical_id}: {ALIAS} {self.function.live.version} -> "
            f"{self.to.number}, {self.to.serves()}{before}"
        )


@dataclass(frozen=True)
class Plan:
    moves: list[Move]
    notes: list[str]  # the functions left where they are, and why


def parse_version(text: str) -> int:
    if text.strip().upper() == "$LATEST":
        raise Refused(
            "$LATEST is not a published version: give the number of one (make versions lists them)"
        )
    digits = text.strip()
    if re.fullmatch(r"[0-9]+", digits) and len(digits.lstrip("0")) > MAX_VERSION_DIGITS:
        # no function publishes that many versions (and int() refuses past 4300 digits)
        raise Refused(
            "VERSION must be a published version's number, not a number of "
            f"{len(digits.lstrip('0'))} digits"
        )
    if not re.fullmatch(r"[0-9]+", digits) or int(digits) < 1:
        raise Refused(f"VERSION must be a published version's number, not '{text}'")
    return int(digits)


def plan(functions: dict[str, Function], number: int) -> Plan | None:
    """The moves of a rollback of the predict alias to ``number``, the batch and drift aliases
    following its release; None when ``number`` is live already. Refuses (``Refused``) while a
    deployment shifts the predict alias, and a version that does not exist."""
    predict = functions[PREDICT]
    live = predict.live
    if live is None:
        raise Refused(
            f"{PREDICT} ({predict.name}) has no alias '{ALIAS}': deploy a template that "
            "publishes versions (AutoPublishAlias) first"
        )
    if live.deploying:
        raise Refused(
            f"a deployment is in progress: {PREDICT}'s alias {ALIAS} serves {live.describe()}; "
            f"wait for it to finish, or stop it with {STOP_DEPLOYMENT}"
        )
    to = predict.version(number)
    if to is None:
        raise Refused(
            f"{PREDICT} has no version {number}; its versions: {predict.numbers()} "
            "(a SnapStart build deletes replaced versions)"
        )
    if live.version == str(number):
        return None
    moves = [Move(predict, to)]
    notes: list[str] = []
    release = to.build.id if to.build is not None else None
    for function in (f for f in functions.values() if f.logical_id != PREDICT):
        if function.live is None:
            notes.append(f"  {function.logical_id}: left alone: it has no alias '{ALIAS}'")
            continue
        left = f"  {function.logical_id}: left at {function.live.version}"
        if release is None:
            notes.append(f"{left}: {PREDICT} version {number} records no release to match")
            continue
        matches = function.of_release(release)
        current = function.serving()
        if current is not None and current in matches:
            notes.append(f"{left}: already at release {release}")
        elif matches:
            moves.append(Move(function, matches[0]))  # the newest of that release
        else:
            notes.append(
                f"{left}: it has no version of release {release} (its versions: "
                f"{function.numbers()})"
            )
    return Plan(moves, notes)


def apply(lam: Any, move: Move) -> bool:
    """Point the function's alias at the move's version; False when the alias changed since it
    was read (its revision guards against a deployment that started meanwhile)."""
    from botocore.exceptions import ClientError

    live = move.function.live
    assert live is not None
    request: dict[str, Any] = {
        "FunctionName": move.function.name,
        "Name": ALIAS,
        "FunctionVersion": str(move.to.number),
        "RoutingConfig": {"AdditionalVersionWeights": {}},
    }
    if live.revision:
        request["RevisionId"] = live.revision
    try:
        lam.update_alias(**request)
    except ClientError as exc:
        if _code(exc) != "PreconditionFailedException":
            raise
        return False
    return True


def rollback(
    lam: Any, where: Target, functions: dict[str, Function], number: int, out: Callable[[str], None]
) -> None:
    """Plan, then move each alias (predict first), saying what moved and what was left."""
    planned = plan(functions, number)
    if planned is None:
        version = functions[PREDICT].version(number)
        assert version is not None
        out(
            f"{PREDICT}'s alias {ALIAS} already serves version {number} ({version.serves()}): "
            "nothing changed"
        )
        return
    moved: list[str] = []
    left = list(planned.notes)
    try:
        for move in planned.moves:
            if apply(lam, move):
                moved.append(move.line())
            elif not moved:  # the predict alias, first: nothing has moved
                raise Refused(
                    f"{PREDICT}'s alias {ALIAS} changed while rolling back (a deployment "
                    "started?): nothing moved; make versions shows it now"
                )
            else:
                left.append(
                    f"  {move.function.logical_id}: left: its alias changed while rolling back "
                    "(make versions shows it now)"
                )
    except Exception:
        if moved:  # an AWS error after the predict alias moved: say what did
            out("\n".join([f"rollback of stack {where.stack}, stopped by an error after:", *moved]))
        raise
    out("\n".join([f"rollback of stack {where.stack}:", *moved, *left, CAVEAT]))


# --- the command --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when done (or nothing to do), 2 for a refusal or an AWS error."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--stack", help="default: samconfig.toml's stack_name, else sklambda")
    common.add_argument("--region", help="default: boto3's (AWS_DEFAULT_REGION, the profile)")
    # the options after the command (a parent on both levels would reset them to None)
    parser = argparse.ArgumentParser(prog="python -m sklambda_tools.versions")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "list", parents=[common], help="each function's published versions, and where live points"
    )
    back = commands.add_parser(
        "rollback", parents=[common], help="point the predict alias at an earlier version"
    )
    back.add_argument("--version", required=True, help="the predict function's version number")
    args = parser.parse_args(argv)
    prog = "versions" if args.command == "list" else "rollback"

    from botocore.exceptions import BotoCoreError, ClientError

    try:
        number = parse_version(args.version) if args.command == "rollback" else 0
        where = target(args.stack)
        cfn, lam = clients(args.region)
        functions = read_stack(cfn, lam, where)
        if args.command == "list":
            print(render(where, cfn.meta.region_name, functions.values()))
        else:
            rollback(lam, where, functions, number, print)
    except Refused as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        code = _code(exc)
        message = _one_line(str(exc.response.get("Error", {}).get("Message", "")))
        hint = AWS_HINTS.get(code)
        print(
            f"{prog}: AWS error {code} ({exc.operation_name}): {message}"
            + (f"; {hint}" if hint else ""),
            file=sys.stderr,
        )
        return 2
    except BotoCoreError as exc:  # no credentials, no region, no connection
        code = type(exc).__name__
        hint = AWS_HINTS.get(code)
        print(
            f"{prog}: AWS error {code}: {_one_line(str(exc))}" + (f"; {hint}" if hint else ""),
            file=sys.stderr,
        )
        return 2
    return 0


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _percent(share: float) -> str:
    return f"{round(share * 100, 2):g}%"


def _when(text: str) -> str:
    """A version's LastModified as ``YYYY-MM-DD HH:MM:SS`` in UTC (as it is when in another
    form)."""
    found = TIMESTAMP.fullmatch(text.strip())
    if found is None:
        return text
    zone = found["zone"] or "Z"
    zone = "+00:00" if zone == "Z" else f"{zone[:3]}:{zone[-2:]}"
    try:
        moment = datetime.fromisoformat(f"{found['date']}T{found['time']}{zone}")
    except ValueError:  # the shape of a time, not a time (a 13th month)
        return text
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


if __name__ == "__main__":
    sys.exit(main())
