"""The package's shape: imports go one way (bootstrap at the bottom, the CLI at the top), the
bootstrap needs nothing outside the standard library, and no module grows past about 700 lines."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "src" / "dk_installer"

# Bottom to top. A module may import only from layers below its own (README "Development").
LAYERS: list[tuple[str, ...]] = [
    ("dk_installer", "bootstrap"),
    ("errors", "paths", "versions", "copies", "defaults", "singlefile", "logpump"),
    ("config",),
    ("console", "tls", "net", "certificates"),
    ("runner", "database"),
    ("analytics", "engine", "service", "launcher", "testgen.config", "testgen.venvs"),
    ("testgen.processes", "testgen.login", "testgen.dumps", "journal"),
    ("testgen.app", "checks"),
    ("steps.base",),
    ("steps.install", "steps.backup", "steps.remove", "steps.configure", "steps.database"),
    ("recovery",),
    ("actions.boundary",),
    ("actions.lifecycle", "actions.bundle"),
    (
        "actions.install",
        "actions.data",
        "actions.report",
        "actions.configure",
        "actions.selfupdate",
        "actions.database",
    ),
    ("cli_options",),
    ("cli",),
    ("__main__",),
]
LAYER = {name: index for index, names in enumerate(LAYERS) for name in names}
MAX_LINES = 700


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    name = ".".join(part for part in parts if part != "__init__")
    return name or "dk_installer"


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
SUBPACKAGES = {"testgen", "steps", "actions"}  # their __init__ modules are empty


def imports_of(path: Path) -> set[str]:
    """Every dk_installer module that `path` imports, anywhere in it (inside functions and
    TYPE_CHECKING blocks too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if name == "dk_installer" or name.startswith("dk_installer."):
                found.add(name.removeprefix("dk_installer.") if name != "dk_installer" else name)
    return found


def test_every_module_has_a_layer() -> None:
    unplaced = set(MODULES) - set(LAYER) - SUBPACKAGES
    assert not unplaced, f"add these to LAYERS (and README's module map): {sorted(unplaced)}"
    for name in SUBPACKAGES:
        assert not MODULES[name].read_text().strip(), f"{name}/__init__.py should stay empty"


@pytest.mark.parametrize("name", sorted(set(MODULES) - SUBPACKAGES))
def test_imports_go_down_only(name: str) -> None:
    upward = {
        imported
        for imported in imports_of(MODULES[name])
        if imported != "dk_installer" and LAYER[imported] >= LAYER[name]
    }
    assert not upward, f"{name} (layer {LAYER[name]}) imports from its own layer or above: {sorted(upward)}"


@pytest.mark.parametrize("name", ["bootstrap", "singlefile"])
def test_the_single_files_head_needs_only_the_standard_library(name: str) -> None:
    """bootstrap and singlefile are the code of the downloaded file: nothing beyond the standard
    library (singlefile may name the bootstrap, whose code comes first in the file)."""
    tree = ast.parse(MODULES[name].read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    allowed = {"__future__", "dk_installer"} if name == "singlefile" else {"__future__"}
    assert imported - allowed <= set(sys.stdlib_module_names), imported


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_outgrows_hand_editing(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by concern"


def test_the_layer_rule_can_fail(tmp_path: Path) -> None:
    """The checker sees an upward import inside a function, where a careless fix would put one."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from dk_installer.cli import main\n")
    assert imports_of(sample) == {"cli"}
