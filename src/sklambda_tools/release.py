"""The release a build deploys, and the built template stamped with it.

A release identifies everything the functions run that the template does not show: the model
artifact (the model layer's files), the sklambda code (the code layer), the functions' code and
the runtime layer (its name and its pinned requirements). Its id is a SHA-256 prefix over those
files' names and bytes, so the same artifact and code give the same id on any machine, and any
change gives another.

``make build`` stamps the release on the built template (``stamp``), as literals rather than
parameters (a parameter's value would be saved by ``sam deploy --guided`` and then override
the next build's):

- ``SKLAMBDA_RELEASE`` in every function's environment: a new release changes each function's
  configuration, so with ``AutoPublishAliasAllProperties`` each publishes a new version behind
  its alias ``live``; the same release publishes none. (Each layer also has
  ``PublishLambdaVersion``, so a layer whose content URI changes, as `sam package` writes it,
  publishes versions of its functions too; the release also covers the functions' own code and
  names it in each version.)
- each version's description, ``sklambda model=<name> version=<version> release=<id>``, which
  ``make versions`` and ``make rollback`` read;
- ``ServingRuntime``'s and ``Architecture``'s defaults, and the rules that a deploy asks for the
  same (a value saved in samconfig.toml by an earlier guided deploy would otherwise deploy
  layers built for another runtime or architecture);
- SnapStart, a build choice: the functions' setting itself (a literal, so that switching it
  publishes versions), its parameter's default, the rule that a deploy asks for the same, and
  whether a replaced version is deleted (SnapStart: each version is billed for its cache) or kept
  for ``make rollback``.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from sklambda.manifest import CARD_FILE, MANIFEST_FILE, Runtime, read_manifest

RUNTIMES: tuple[str, ...] = get_args(Runtime)
PLACEHOLDER = "unstamped"
RELEASE_VARIABLE = "SKLAMBDA_RELEASE"
VERSIONED = ("PredictFunction", "BatchFunction", "DriftFunction", "SplitFunction")
SNAPSTART_FUNCTIONS = ("PredictFunction", "BatchFunction", "SplitFunction")
BUILD_RULES = {
    "ServingRuntime": "ServingRuntimeMatchesTheBuild",
    "Architecture": "ArchitectureMatchesTheBuild",
    "SnapStart": "SnapStartMatchesTheBuild",
}
"""The template's rule for each build choice: a deploy must ask for what the build made."""
SNAPSTART_CHOICES = ("None", "PublishedVersions")
ID_LENGTH = 16
DESCRIPTION_LIMIT = 256  # Lambda's limit on a version's description


@dataclass(frozen=True)
class Release:
    id: str
    model_name: str
    model_version: str

    @property
    def description(self) -> str:
        """The version description: ``sklambda model=<name> version=<version> release=<id>``."""
        name, version = _token(self.model_name), _token(self.model_version)
        text = f"sklambda model={name} version={version} release={self.id}"
        if len(text) > DESCRIPTION_LIMIT:  # a very long name: keep the release whole
            room = DESCRIPTION_LIMIT - len(f"sklambda model= version={version} release={self.id}")
            text = f"sklambda model={name[: max(room, 1)]} version={version} release={self.id}"
        return text[:DESCRIPTION_LIMIT]


DESCRIPTION = re.compile(
    r"sklambda model=(?P<model>\S+) version=(?P<version>\S+) release=(?P<release>[0-9a-f]{16})"
)


def parse_description(text: str) -> Release | None:
    """The release a version description names (``Release.description``), or ``None`` when
    the description is in another form."""
    found = DESCRIPTION.fullmatch(text.strip())
    if found is None:
        return None
    return Release(found["release"], found["model"], found["version"])


def _token(text: str) -> str:
    """A name as one space-free token of printable characters."""
    return "".join(c if c.isprintable() and not c.isspace() else "_" for c in text) or "_"


def _files(root: Path, pattern: str) -> list[Path]:
    return sorted(p for p in root.glob(pattern) if p.is_file() and "__pycache__" not in p.parts)


def model_files(model_dir: Path) -> list[Path]:
    """What the model layer ships: the manifest, the card and the artifacts it lists."""
    manifest = read_manifest(model_dir)
    names = [MANIFEST_FILE, CARD_FILE, *sorted(manifest.artifacts)]
    return [model_dir / n for n in names]


def release(root: Path, model_dir: Path, runtime: str) -> Release:
    """The release of ``model_dir`` served by ``runtime`` with the code under ``root``."""
    if runtime not in RUNTIMES:
        raise ValueError(f"ServingRuntime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    manifest = read_manifest(model_dir)
    digest = hashlib.sha256()

    def feed(part: str, files: Iterable[Path], base: Path) -> None:
        for path in files:
            data = path.read_bytes()
            name = f"{part}/{path.relative_to(base).as_posix()}"
            digest.update(f"{name}\0{len(data)}\0".encode())
            digest.update(data)

    feed("model", model_files(model_dir), model_dir)
    feed("code", _files(root / "src" / "sklambda", "**/*.py"), root / "src" / "sklambda")
    feed("functions", _files(root / "functions", "**/*.py"), root / "functions")
    layers = root / "layers"
    feed(
        "runtime",
        [layers / runtime / "requirements.txt", layers / "Makefile", layers / "platform.mk"],
        layers,
    )
    digest.update(f"serving={runtime}".encode())
    return Release(digest.hexdigest()[:ID_LENGTH], manifest.name, manifest.version)


def stamp(
    template: dict[str, Any],
    stamped: Release,
    runtime: str,
    snapstart: str = "None",
    architecture: str | None = None,
) -> dict[str, Any]:
    """A copy of ``template`` (long-form intrinsics) stamped with a release and the build's
    choices: its runtime, its architecture (``None``: the template's default) and SnapStart.
    Each becomes its parameter's default and what its rule asks a deploy for. Raises
    ``ValueError`` when the template lacks a place to stamp or a value is not allowed."""
    out = copy.deepcopy(template)
    parameters = out.get("Parameters", {})
    arch = architecture or str(parameters.get("Architecture", {}).get("Default", ""))
    for name, value in (
        ("ServingRuntime", runtime),
        ("SnapStart", snapstart),
        ("Architecture", arch),
    ):
        allowed = parameters.get(name, {}).get("AllowedValues")
        if allowed is None:
            raise ValueError(f"the template has no {name} parameter with AllowedValues")
        if value not in allowed:
            raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        parameters[name]["Default"] = value
        rule = BUILD_RULES[name]
        try:
            (assertion,) = out["Rules"][rule]["Assertions"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"the template has no rule {rule} with one assertion") from None
        assertion["Assert"] = {"Fn::Equals": [{"Ref": name}, value]}
    variables = (
        out.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    if RELEASE_VARIABLE not in variables:
        raise ValueError(f"the template's Globals set no {RELEASE_VARIABLE}")
    variables[RELEASE_VARIABLE] = stamped.id
    resources = out.get("Resources", {})
    for logical_id in VERSIONED:
        props = resources.get(logical_id, {}).get("Properties", {})
        if props.get("AutoPublishAlias") != "live" or "VersionDescription" not in props:
            raise ValueError(f"{logical_id} publishes no versions through the alias live")
        props["VersionDescription"] = stamped.description
    for logical_id in SNAPSTART_FUNCTIONS:
        props = resources[logical_id]["Properties"]
        if "VersionDeletionPolicy" not in props or "SnapStart" not in props:
            raise ValueError(f"{logical_id} has no SnapStart and VersionDeletionPolicy to stamp")
        props["VersionDeletionPolicy"] = "Delete" if snapstart == "PublishedVersions" else "Retain"
        # a literal, not the parameter: SAM hashes it unresolved, and turning SnapStart on or off
        # must publish versions (the rule keeps the parameter equal to it)
        props["SnapStart"] = {"ApplyOn": snapstart}
    return out


def stamped_text(template: dict[str, Any]) -> str:
    """The stamped template as YAML (long-form intrinsics, as `sam build` writes it)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    text: str = yaml.dump(template, Dumper=Dumper, sort_keys=False, width=100, allow_unicode=True)
    return text


def read(build_dir: Path) -> Release | None:
    """The release a built template carries (``None``: not stamped)."""
    from sklambda_tools.local import load_template

    template = load_template(build_dir / "template.yaml")
    variables = template.get("Globals", {}).get("Function", {}).get("Environment", {})
    value = variables.get("Variables", {}).get(RELEASE_VARIABLE)
    if not isinstance(value, str) or value == PLACEHOLDER:
        return None
    described = parse_description(
        str(template["Resources"][VERSIONED[0]]["Properties"]["VersionDescription"])
    )
    if described is None:
        return Release(value, "", "")
    return Release(value, described.model_name, described.model_version)
