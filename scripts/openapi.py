"""`make openapi`: write docs/openapi.json, generated from the routes and the model's manifest."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from sklambda_tools.local import load_handler

ROOT = Path(__file__).resolve().parents[1]


def openapi_document(model_dir: Path) -> dict[str, Any]:
    os.environ["SKLAMBDA_MODEL_DIR"] = str(model_dir)
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "sklambda")
    app = load_handler(ROOT / "functions" / "predict" / "app.py")
    manifest = app.get_model().manifest
    doc: dict[str, Any] = json.loads(
        app.app.get_openapi_json_schema(
            title=f"sklambda prediction API: {manifest.name}",
            version=manifest.version,
            description=manifest.description,
        )
    )
    return doc


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/openapi.py")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "penguins")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "openapi.json")
    args = parser.parse_args()
    args.out.write_text(render(openapi_document(args.model)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
