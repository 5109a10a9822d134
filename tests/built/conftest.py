"""What every test of a built output shares: the interpreter and the packages Lambda's Python
runtime provides."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

# What the Lambda Python runtime itself provides, next to the function and its layers.
RUNTIME_PROVIDED = [
    "boto3",
    "botocore",
    "s3transfer",
    "jmespath",
    "dateutil",
    "urllib3",
    "six",
    "snapshot_restore_py",  # Python 3.12 and newer: SnapStart's runtime hooks
]


@pytest.fixture(scope="session")
def python() -> str:
    """The interpreter without the project venv (its site-packages are never on the path)."""
    return str(getattr(sys, "_base_executable", sys.executable))


@pytest.fixture(scope="session")
def runtime_paths(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A directory holding only what Lambda's runtime provides (links into this venv)."""
    root = tmp_path_factory.mktemp("lambda-runtime")
    for name in RUNTIME_PROVIDED:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (root / source.name).symlink_to(source)
    return [str(root)]
