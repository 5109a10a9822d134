"""The build's one source of platform facts, and the pins the layers share with the model."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sklambda_tools.local import load_template

from support import REPO


def make_vars(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^(\w+) := (\S+)$", path.read_text(), flags=re.M))


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            out[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version.strip()
    return out


def test_the_platform_file_and_the_template_agree() -> None:
    platform = make_vars(REPO / "layers" / "platform.mk")
    template = load_template(REPO / "template.yaml")
    assert template["Globals"]["Function"]["Runtime"] == platform["LAMBDA_RUNTIME"]
    assert platform["LAMBDA_RUNTIME"] == "python" + platform["LAMBDA_PYTHON"]
    assert template["Parameters"]["Architecture"]["Default"] == platform["LAMBDA_ARCH"]
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            props = resource["Properties"]
            assert props["CompatibleRuntimes"] == [platform["LAMBDA_RUNTIME"]], name
            assert props["CompatibleArchitectures"] == [{"Ref": "Architecture"}], name
            assert resource["Metadata"]["BuildMethod"] == "makefile", name


def test_every_makefile_layer_has_its_target() -> None:
    template = load_template(REPO / "template.yaml")
    for name, resource in template["Resources"].items():
        if resource.get("Metadata", {}).get("BuildMethod") == "makefile":
            makefile = REPO / resource["Properties"]["ContentUri"] / "Makefile"
            assert f"build-{name}:" in makefile.read_text(), name


def test_layers_pin_what_the_model_was_made_with() -> None:
    dev = pins(REPO / "requirements" / "dev.txt")
    manifest = json.loads((REPO / "models" / "penguins" / "model.json").read_text())
    for layer in ("onnx", "sklearn"):
        layer_pins = pins(REPO / "layers" / layer / "requirements.txt")
        assert "boto3" not in layer_pins and "botocore" not in layer_pins
        for name, version in layer_pins.items():
            if name in dev:
                assert version == dev[name], (layer, name)
    sklearn_layer = pins(REPO / "layers" / "sklearn" / "requirements.txt")
    assert sklearn_layer["scikit-learn"] == manifest["libraries"]["scikit-learn"]
    assert (
        pins(REPO / "layers" / "onnx" / "requirements.txt")["onnxruntime"]
        == manifest["libraries"]["onnxruntime"]
    )


def test_the_lint_is_the_one_that_still_checks_sam_templates() -> None:
    assert pins(REPO / "requirements" / "tools.txt")["cfn-lint"] == "1.53.3"
