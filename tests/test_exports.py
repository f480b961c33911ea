"""The package root's lazy exports (``simlab._LAZY``, imported on first use so that the society
layer runs without torch) and the ``TYPE_CHECKING`` imports that show them to IDEs and type
checkers name the same objects from the same modules, and each one resolves."""
from __future__ import annotations

import ast
from pathlib import Path

import simlab


def _type_checking_imports() -> dict[str, str]:
    """name -> module of the imports under ``if TYPE_CHECKING:`` in ``simlab/__init__.py``."""
    out: dict[str, str] = {}
    for node in ast.parse(Path(simlab.__file__).read_text()).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) \
                and node.test.id == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.module, ast.dump(imp)
                out.update({a.asname or a.name: imp.module for a in imp.names})
    return out


def test_the_type_checking_imports_are_the_lazy_exports():
    assert _type_checking_imports() == simlab._LAZY


def test_every_lazy_export_resolves_to_its_module_object():
    for name, module in simlab._LAZY.items():
        obj = getattr(simlab, name)
        assert getattr(obj, "__module__", module) == module, name
