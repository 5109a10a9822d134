"""After `sam build`: stamp the built template with the release, the runtime and SnapStart.

`sam build` writes the template's parameter defaults unchanged and knows nothing of the model,
so this writes into ``<build-dir>/template.yaml`` what `sam deploy` (guided or not) must deploy
(``sklambda_tools.release``): the release id in every function's environment (a new model or
new code publishes new versions behind the alias ``live``; the same ones publish none), the
model's name and version in each version's description, and the model's runtime, the
architecture and the SnapStart choice as defaults that the template's rules hold a deploy to.
Then it reads the result back.

    python scripts/stamp_build.py .aws-sam/build --model models/penguins --runtime onnx \
        [--snapstart PublishedVersions] [--arch x86_64]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sklambda.errors import ManifestError
from sklambda_tools import release
from sklambda_tools.local import load_template

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/stamp_build.py")
    parser.add_argument("build_dir", type=Path)
    parser.add_argument("--model", required=True, type=Path, help="the packaged model's directory")
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--snapstart", default="None")
    parser.add_argument("--arch", help="the architecture built for (default: the template's)")
    args = parser.parse_args()
    path = args.build_dir / "template.yaml"
    try:
        made = release.release(ROOT, args.model, args.runtime)
        stamped = release.stamp(load_template(path), made, args.runtime, args.snapstart, args.arch)
        path.write_text(release.stamped_text(stamped))
        if release.read(args.build_dir) != made:
            raise ValueError(f"{path} does not read back as release {made.id}")
    except (OSError, ValueError, ManifestError) as exc:
        print(f"scripts/stamp_build.py: {exc}", file=sys.stderr)
        return 2
    print(
        f"{path}: release {made.id} ({made.model_name} {made.model_version}, "
        f"{args.runtime} runtime, SnapStart {args.snapstart}"
        + (f", {args.arch}" if args.arch else "")
        + ")"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
