"""The layers follow DESIGN's one-line data flow: an import-graph check over the package.

    tasks (leaf) <- society <- learners <- evaluation <- experiment <- report <- cli
    tasks (leaf) <- survey (real survey tables -> streams) <- experiment <- report <- cli

``society``, ``learners`` and ``survey`` each import only ``tasks``; ``evaluation`` needs no
survey code (a survey's ledger reaches it as plain data in the stream's metadata).

Leaf modules (``simlab.errors``, ``simlab.schema``, ``simlab.settings``, ``simlab._lazy``,
``simlab`` itself) may be imported from anywhere. Every import counts, including those inside
functions and under ``TYPE_CHECKING``: a layer that needs a higher one's type takes a Protocol
instead.
"""
from __future__ import annotations

import ast
from pathlib import Path

import simlab

ROOT = Path(simlab.__file__).parent
#: each layer and the layers it may import (besides itself and the leaf modules)
ALLOWED = {
    "tasks": set(),
    "society": {"tasks"},
    "survey": {"tasks"},
    "learners": {"tasks"},
    "evaluation": {"tasks", "learners"},
    "experiment": {"tasks", "society", "survey", "learners", "evaluation"},
    "report": {"tasks", "society", "survey", "learners", "evaluation", "experiment"},
    "cli": {"tasks", "society", "survey", "learners", "evaluation", "experiment", "report"},
    "__main__": {"cli"},
}
LEAVES = {"errors", "schema", "settings", "_lazy", ""}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports() -> dict[str, set[str]]:
    """module -> simlab modules it imports (anywhere in the file)."""
    out: dict[str, set[str]] = {}
    for file in ROOT.rglob("*.py"):
        rel = file.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        found = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("simlab")}
            elif isinstance(node, ast.ImportFrom) and node.module \
                    and node.module.startswith("simlab") and node.level == 0:
                found.add(node.module)
        out[name] = found
    return out


def test_no_import_goes_up_a_layer():
    bad = []
    for module, targets in _imports().items():
        own = _layer(module)
        for t in targets:
            other = _layer(t)
            if other in LEAVES or other == own or own in LEAVES:
                continue
            if other not in ALLOWED.get(own, set()):
                bad.append(f"{module} imports {t} ({own} -> {other})")
    assert not bad, "imports against the data flow:\n" + "\n".join(sorted(bad))


def test_no_import_cycle_between_modules():
    graph = _imports()
    for deps in graph.values():       # a package's __init__ is its own module
        deps.discard("simlab")
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if d not in graph:
                continue
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if not state.get(d) and (cycle := visit(d)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if not state.get(m) and (cycle := visit(m)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))
