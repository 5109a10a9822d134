"""What the code layer ships: the runtime package with its bytecode, and nothing of the tools.

The layer is built here the way `sam build` builds it (`make -C layers build-CodeLayer`), with
this interpreter compiling the bytecode. The runtime's imports and its reading of the
environment are checked from the sources' syntax trees, without importing them.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

RUNTIME = REPO / "src" / "sklambda"
HANDLERS = sorted((REPO / "functions").glob("*/app.py"))

# The contract of the layer: every file of the sklambda package it ships (bytecode aside). A new
# runtime module goes to every function's cold start and must be added here consciously; tooling
# belongs in sklambda_tools, which never ships.
RUNTIME_FILES = {
    "__init__.py",
    "aws.py",
    "batch.py",
    "batchio.py",
    "capture.py",
    "drift.py",
    "errors.py",
    "manifest.py",
    "metrics.py",
    "model.py",
    "oip.py",
    "pretraffic.py",
    "probes.py",
    "py.typed",
    "schema.py",
    "score.py",
    "scoring.py",
    "shares.py",
    "settings.py",
    "snapstart.py",
    "split.py",
    "typed.py",
}

# Words of the tools' modules (sklambda_tools.package, .export, .card, .examples, .local, ...)
# that no path in the layer may contain.
TOOL_WORDS = ("sklambda_tools", "package", "export", "card", "examples", "local")

# The whole layer, sources and bytecode: 815,269 bytes when last measured (CPython 3.11 bytecode,
# as built here), after the Open Inference Protocol's module (oip: about 60 kB; 530,320 after the
# rollout modules, when the budget was set at 800,000). Raised to 900,000 for oip, knowingly: the
# budget is there so that growth is noticed, not by habit.
SIZE_BUDGET = 900_000

# Neither importable in the layer (the code layer carries no third-party packages, and the ONNX
# functions have no scikit-learn layer) nor wanted at a cold start.
FORBIDDEN_IMPORTS = {"sklambda_tools", "sklearn", "pandas", "scipy", "joblib", "skl2onnx"}
# The scikit-learn runtime alone imports these, inside the functions that load or run a pickle.
ALLOWED_IN_FUNCTIONS = {"model.py": {"joblib", "pandas", "sklearn"}}

# The environment's readers (and writers): only settings.py touches the process environment.
ENV_NAMES = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}
ENV_READER = RUNTIME / "settings.py"


def make_code_layer(artifacts: Path, python: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(REPO / "layers"),
            "build-CodeLayer",
            f"ARTIFACTS_DIR={artifacts}",
            f"PYTHON_BUILD={python}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The code layer as `sam build` makes it (its ARTIFACTS_DIR), compiled by this Python."""
    artifacts = tmp_path_factory.mktemp("code_layer")
    done = make_code_layer(artifacts, sys.executable)
    assert done.returncode == 0, done.stdout + done.stderr
    return artifacts


def layer_files(layer: Path) -> list[Path]:
    return sorted(p.relative_to(layer) for p in layer.rglob("*") if p.is_file())


def test_the_layer_ships_exactly_the_runtime_package(layer: Path) -> None:
    assert [p.name for p in (layer / "python").iterdir()] == ["sklambda"]
    package = layer / "python" / "sklambda"
    shipped = {
        p.relative_to(package).as_posix()
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert shipped == RUNTIME_FILES


def test_the_layer_ships_none_of_the_tools(layer: Path) -> None:
    files = layer_files(layer)
    assert files
    for path in files:
        for word in TOOL_WORDS:
            assert word not in path.as_posix(), path


def test_every_module_has_unchecked_hash_bytecode(layer: Path) -> None:
    sources = sorted((layer / "python").rglob("*.py"))
    assert sources
    expected = set()
    for source in sources:
        pyc = Path(importlib.util.cache_from_source(str(source)))
        assert pyc.is_file(), f"{source.relative_to(layer)} has no bytecode"
        # PEP 552 flags: hash-based (bit 0) and not checked against the source (bit 1 clear), so
        # the zip's fixed timestamps do not make it stale.
        flags = int.from_bytes(pyc.read_bytes()[4:8], "little")
        assert flags == 0b01, f"{pyc.relative_to(layer)} flags {flags:#b}"
        expected.add(pyc)
    assert set((layer / "python").rglob("*.pyc")) == expected  # no stray bytecode


def test_the_layer_is_within_its_size_budget(layer: Path) -> None:
    size = sum((layer / p).stat().st_size for p in layer_files(layer))
    assert size < SIZE_BUDGET, f"the code layer is {size:,} bytes (budget {SIZE_BUDGET:,})"


def test_the_layer_is_not_built_without_a_bytecode_compiler(tmp_path: Path) -> None:
    done = make_code_layer(tmp_path / "layer", "")
    assert done.returncode != 0
    assert "set PYTHON_BUILD" in done.stdout + done.stderr
    assert not (tmp_path / "layer").exists()


def runtime_modules() -> list[Path]:
    modules = sorted(p for p in RUNTIME.rglob("*.py") if "__pycache__" not in p.parts)
    assert modules
    return modules


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def imports(tree: ast.Module) -> list[tuple[str, int, bool]]:
    """Every absolute import's top-level package, line and whether a function body holds it.

    Module level includes class bodies and ``if``/``try`` blocks (``if TYPE_CHECKING:`` too): they
    run, or stand for what runs, at import. ``importlib.import_module("x")`` and
    ``__import__("x")`` with a literal name count as imports.
    """
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((a.name.split(".")[0], node.lineno, nested) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno, nested))
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            found.append((node.args[0].value.split(".")[0], node.lineno, nested))
        inner = nested or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return found


@pytest.mark.parametrize(
    "path", [*runtime_modules(), *HANDLERS], ids=lambda p: p.relative_to(REPO).as_posix()
)
def test_no_tooling_or_sklearn_import_at_import_time(path: Path) -> None:
    allowed = ALLOWED_IN_FUNCTIONS.get(path.name, set()) if path.parent == RUNTIME else set()
    wrong = [
        f"line {line}: {name}" + (" (in a function)" if nested else " (module level)")
        for name, line, nested in imports(parse(path))
        if name in FORBIDDEN_IMPORTS and not (nested and name in allowed)
    ]
    assert not wrong, wrong


def test_the_import_scan_sees_nested_imports() -> None:
    """The scan finds model.py's scikit-learn runtime imports, in functions (no vacuous pass)."""
    found = {(name, nested) for name, _, nested in imports(parse(RUNTIME / "model.py"))}
    assert ("joblib", True) in found
    assert ("pandas", True) in found


def environment_uses(tree: ast.Module) -> list[int]:
    """The lines that touch ``os.environ``/``os.getenv`` and kin (under any alias of ``os``)."""
    os_names = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == "os"
    }
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os" and node.level == 0:
            lines += [node.lineno for alias in node.names if alias.name in ENV_NAMES]
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in ENV_NAMES
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
        ):
            lines.append(node.lineno)
    return sorted(lines)


def test_only_settings_reads_the_environment() -> None:
    readers = {
        path.relative_to(REPO).as_posix(): lines
        for path in [*runtime_modules(), *HANDLERS]
        if (lines := environment_uses(parse(path)))
    }
    assert HANDLERS
    assert set(readers) == {ENV_READER.relative_to(REPO).as_posix()}, readers


def test_the_environment_scan_sees_aliases() -> None:
    tree = ast.parse(
        "import os as o\nfrom os import getenv\nx = o.environ['A']\ny = os.environ\nz = o.path"
    )
    # os is not imported under that name, so line 4 is someone else's "os".
    assert environment_uses(tree) == [2, 3]
