"""Test hygiene: no test module imports another; shared code lives in ``tests/helpers/`` and
fixtures in ``conftest.py``, so running or moving one test file never runs or breaks another.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.society   # reads source files only

TESTS = Path(__file__).resolve().parent


def imported_modules(source: str) -> set[str]:
    """Every module a file imports (``import a.b``, ``from a.b import c``), anywhere in it,
    and every ``module:Class`` reference a test hands to simlab's plug-in loader."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found |= {ref.split(":")[0] for ref in node.value.replace(",", " ").split()
                      if ":" in ref and ref.split(":")[0].isidentifier()}
    return found


def test_modules_import_collects_plain_and_plugin_references():
    src = ("import os\nfrom helpers.scenarios import TINY\ndef f():\n    from test_x import y\n"
           "ARGS = ['-l', 'scratch,test_" + "sweep:Broken']\n")   # split: not a reference here
    assert {"os", "helpers.scenarios", "test_x", "test_sweep"} <= imported_modules(src)


def test_no_test_module_imports_another_test_module():
    bad = []
    for file in sorted(TESTS.rglob("*.py")):
        for module in imported_modules(file.read_text()):
            top = module.split(".")[0]
            if top.startswith("test_") or top in {"conftest", "tests"}:
                bad.append(f"{file.relative_to(TESTS)} imports {module}")
    assert not bad, ("test modules must not import each other; move the shared code to "
                     "tests/helpers/ or a conftest.py fixture:\n" + "\n".join(bad))


def private_imports(source: str) -> list[str]:
    """``from simlab.x import _name`` in a file: a private name taken across modules (aliases
    of a module, ``import simlab.x as _x``, are fine)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("simlab"):
            out += [f"{node.module}.{a.name}" for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")]
    return out


def test_private_imports_are_found():
    assert private_imports("from simlab.report.figures import _png, DPI\n") == [
        "simlab.report.figures._png"]
    assert private_imports("from simlab.learners import roles as _roles\n") == []


def test_the_package_takes_no_private_name_from_another_module():
    """A name another module needs is public: its home says so, and renaming it is visible."""
    pkg = TESTS.parent / "simlab"
    bad = [f"{f.relative_to(pkg.parent)} imports {name}" for f in sorted(pkg.rglob("*.py"))
           for name in private_imports(f.read_text())]
    assert not bad, "make these names public where they are defined:\n" + "\n".join(bad)
