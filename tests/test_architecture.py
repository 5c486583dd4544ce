"""The layout's rules, checked mechanically: who may import whom, what stays torch-free, what a
worker install pulls in, and which private APIs are pinned."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
PROJECT = {"contract", "stream", "serving", "tools", "cli", "benchmarks"}
MODEL_LIBRARIES = {"torch", "transformers", "onnx", "onnxscript", "matplotlib", "tqdm"}

# Project packages each part may import (itself included).
ALLOWED = {
    "contract": {"contract"},
    "stream": {"contract", "stream"},
    "serving": {"contract", "serving"},
    "tools": {"contract", "stream", "serving", "tools"},
    "benchmarks": {"contract", "stream", "serving", "tools", "benchmarks"},
    "cli": PROJECT,
}
# Files Triton loads from a version folder: the standard library, these and the contract only.
TRITON_MODEL_FILES = {
    "serving/triton_backend.py": {"numpy", "onnxruntime", "triton_python_backend_utils"},
    "benchmarks/trivial_model.py": {"numpy", "triton_python_backend_utils"},
}


def modules_of(part: str) -> list[Path]:
    return [ROOT / "contract.py"] if part == "contract" else sorted((ROOT / part).rglob("*.py"))


def imported_roots(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports, at module level or inside functions."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_each_part_imports_only_the_parts_below_it(part: str) -> None:
    crossing = {
        str(path.relative_to(ROOT)): sorted((imported_roots(path) & PROJECT) - ALLOWED[part])
        for path in modules_of(part)
    }
    assert {name: found for name, found in crossing.items() if found} == {}


def test_the_contract_needs_only_the_standard_library_and_numpy() -> None:
    assert imported_roots(ROOT / "contract.py") - set(sys.stdlib_module_names) == {"numpy"}


@pytest.mark.parametrize("relative", sorted(TRITON_MODEL_FILES))
def test_triton_model_files_need_only_what_ships_beside_them(relative: str) -> None:
    outside = imported_roots(ROOT / relative) - set(sys.stdlib_module_names) - {"contract"}
    assert outside <= TRITON_MODEL_FILES[relative]


# Standard-library names newer than Python 3.10, which older Triton containers run.
_NEWER_THAN_3_10 = {
    "UTC",
    "Self",
    "StrEnum",
    "Never",
    "LiteralString",
    "TaskGroup",
    "ExceptionGroup",
    "tomllib",
}


@pytest.mark.parametrize("relative", ["contract.py", *sorted(TRITON_MODEL_FILES)])
def test_files_shipped_to_version_folders_run_on_python_3_10(relative: str) -> None:
    tree = ast.parse((ROOT / relative).read_text(), feature_version=(3, 10))
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    used |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    used |= {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom | ast.Import)
        for alias in node.names
    }
    assert not used & _NEWER_THAN_3_10


def test_the_worker_and_its_tools_never_load_torch() -> None:
    names = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for part in ("contract", "stream", "tools", "cli")
        for path in modules_of(part)
        if path.name != "__main__.py"
    ]
    assert "stream.agents" in names and "tools.demo" in names and "cli.main" in names
    code = "import importlib, sys\n"
    code += "".join(f"importlib.import_module({name!r})\n" for name in names)
    code += "from cli.main import build_parser; build_parser()\n"
    code += f"print(sorted(set(sys.modules) & {MODEL_LIBRARIES!r}))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert loaded.stdout.strip() == "[]"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


def test_installing_the_worker_pulls_no_model_library() -> None:
    project = pyproject()["project"]
    core = {requirement_name(r) for r in project["dependencies"]}
    assert not core & MODEL_LIBRARIES
    model = {requirement_name(r) for r in project["optional-dependencies"]["model"]}
    assert {"torch", "transformers", "onnx"} <= model


def test_every_library_whose_private_api_we_use_is_pinned_or_bounded() -> None:
    """docs/private-apis.md lists the touchpoints; each library there has an upper bound."""
    table = (ROOT / "docs" / "private-apis.md").read_text()
    libraries = set(re.findall(r"^\| `([a-z0-9-]+)` \|", table, flags=re.MULTILINE))
    assert {"faust-streaming", "aiokafka", "transformers", "tritonclient"} <= libraries
    project = pyproject()["project"]
    extras = [requirement for group in project["optional-dependencies"].values() for requirement in group]
    requirements = [*project["dependencies"], *extras]
    bounds = {requirement_name(r): r for r in requirements}
    for library in libraries:
        assert library in bounds, f"{library} is not a declared dependency"
        assert "==" in bounds[library] or "<" in bounds[library], f"{bounds[library]} has no upper bound"


def test_no_module_is_long_without_a_reason_at_its_top() -> None:
    long = {}
    for part in ALLOWED:
        for path in modules_of(part):
            lines = path.read_text().count("\n")
            docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
            if lines > 300 and "Longer than" not in docstring:
                long[str(path.relative_to(ROOT))] = lines
    assert long == {}
