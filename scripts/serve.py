"""`make serve`: the prediction API on http://127.0.0.1:3000, without Docker or a rebuild.

Each request becomes the API Gateway event the deployed API would send, and the predict
function's handler answers it in-process; edits to the handler or the package take effect on
the next request. ``--auth`` follows the template's ``AuthMode`` (default here: NONE).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from sklambda.errors import ModelLoadError, RuntimeUnavailableError
from sklambda.manifest import read_manifest
from sklambda.model import load
from sklambda_tools.localapi import LocalApi, Server

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/serve.py")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "penguins")
    parser.add_argument("--auth", choices=["NONE", "API_KEY", "IAM"], default="NONE")
    parser.add_argument(
        "--runtime", choices=["onnx", "sklearn"], help="override the runtime the manifest names"
    )
    parser.add_argument("--api-key", help="the key API_KEY mode expects (default: a random one)")
    args = parser.parse_args()
    app = LocalApi(
        ROOT,
        model_dir=args.model.resolve(),
        parameters={"AuthMode": args.auth}
        | ({"ServingRuntime": args.runtime} if args.runtime else {}),
        api_key=args.api_key,
    )
    runtime = app.resolver.values["ServingRuntime"]
    try:
        load(args.model, runtime)
    except (ModelLoadError, RuntimeUnavailableError) as exc:
        print(
            f"warning: the {runtime} runtime cannot load {args.model}: every route will answer "
            f"503 ({exc})",
            file=sys.stderr,
        )
    with Server(app, port=args.port) as server:
        print(
            f"serving {', '.join(f'{m} {p}' for p, m in app.routes)} at {server.url} "
            f"(model {args.model.name}, runtime {app.resolver.values['ServingRuntime']}, "
            f"auth {args.auth}; Ctrl-C stops)"
        )
        if args.auth == "API_KEY":
            print(f"  x-api-key: {app.api_key}")
        body = json.dumps(
            {"instances": [read_manifest(args.model).example_instance()]}, ensure_ascii=False
        )
        key = f" -H 'x-api-key: {app.api_key}'" if args.auth == "API_KEY" else ""
        print(
            f"  curl -s -H 'Content-Type: application/json'{key} "
            f"-d {shlex.quote(body)} {server.url}/predict"
        )
        try:
            server._thread.join()
        except KeyboardInterrupt:
            print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
