"""Print the CloudFormation JSON that the SAM transform makes of a template, for given parameters.

The checks that read plain CloudFormation (checkov on the generated stage, role, permissions...)
see what CloudFormation will create. Runs in .venv-tools, which has aws-sam-translator; it needs
no AWS credentials and no network:

    .venv-tools/bin/python scripts/transform.py [template.yaml] [--parameter AuthMode=API_KEY ...]

As `sam validate` does, local CodeUri/ContentUri paths (what `sam build` uploads) become
placeholder S3 URIs, since the translator accepts none. Each SAM resource's Metadata (its
checkov skips) is passed on to the resources generated from it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import boto3
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

LOCAL_URIS = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::Api": "DefinitionUri",
    "AWS::Serverless::HttpApi": "DefinitionUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}


def placeholder_uris(template: dict[str, Any]) -> None:
    """Replace local paths by S3 URIs the translator accepts (in place)."""
    function_globals = template.get("Globals", {}).get("Function", {})
    if isinstance(function_globals.get("CodeUri"), str):
        function_globals["CodeUri"] = "s3://placeholder/Globals.zip"
    for logical_id, resource in template.get("Resources", {}).items():
        key = LOCAL_URIS.get(resource.get("Type", ""))
        props = resource.get("Properties") or {}
        value = props.get(key) if key else None
        if isinstance(value, str) and not value.startswith("s3://"):
            props[key] = f"s3://placeholder/{logical_id}.zip"


def no_managed_policy_names() -> dict[str, str]:
    # A policy named by its AWS managed name would need IAM's list of them (credentials).
    raise SystemExit("transform: a policy names an AWS managed policy; give its ARN instead")


def transform(
    template: dict[str, Any], parameters: dict[str, str], region: str = "us-east-1"
) -> dict[str, Any]:
    """The CloudFormation template SAM makes of ``template`` with these parameter values."""
    # The translator warns of every feature toggle it has no configuration for (it has none).
    logging.getLogger("samtranslator.feature_toggle").setLevel(logging.ERROR)
    placeholder_uris(template)
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=region))
    translated: dict[str, Any] = translator.translate(
        template,
        parameter_values=dict(parameters),
        passthrough_metadata=True,
        get_managed_policy_map=no_managed_policy_names,
    )
    return translated


def parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected Name=Value, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template", nargs="?", default="template.yaml", type=Path)
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        type=parameter,
        metavar="NAME=VALUE",
        help="a parameter value (repeatable); the others take their defaults",
    )
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    template = yaml_parse(args.template.read_text())
    try:
        translated = transform(template, dict(args.parameter), args.region)
    except InvalidDocumentException as e:
        causes = " ".join(str(cause) for cause in e.causes)
        print(f"transform: {args.template}: {e} {causes}", file=sys.stderr)
        return 1
    json.dump(translated, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
