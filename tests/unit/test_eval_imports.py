"""Imports in ``s1kit`` (and in ``s1kit.eval`` in particular) run one way: no cycle (function-level imports included), and the grading
modules each use only those before them (answers <- verdict <- pool <- batch)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "python" / "s1kit"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _runtime_imports(path: Path, known: set[str]) -> set[str]:
    """s1kit modules ``path`` imports at run time (anywhere but an ``if TYPE_CHECKING:`` block)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found & known


def _graph(prefix: str) -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {m: _runtime_imports(p, known) - {m} for m, p in mods.items() if m.startswith(prefix)}


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), list(graph.get(start, ()))
    while todo:
        m = todo.pop()
        if m == goal:
            return True
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    return False


def test_no_import_cycle_in_eval_or_backends() -> None:
    graph = {**_graph("s1kit.eval"), **_graph("s1kit.backends")}
    assert len(graph) > 15
    cycles = [(m, d) for m, deps in graph.items() for d in deps if d in graph and _reaches(graph, d, m)]
    assert cycles == []


def test_no_import_cycle_anywhere_in_the_package() -> None:
    """A package's ``__init__`` may re-export its modules; a module never imports its own package."""
    graph = _graph("s1kit")
    assert len(graph) > 80
    cycles = [(m, d) for m, deps in graph.items() for d in deps if d in graph and _reaches(graph, d, m)]
    assert cycles == []


def test_grading_modules_import_in_one_direction() -> None:
    order = ["answers", "verdict", "pool", "batch"]
    graph = _graph("s1kit.eval.grading")
    assert set(graph) == {"s1kit.eval.grading", *(f"s1kit.eval.grading.{m}" for m in order)}
    for i, name in enumerate(order):
        uses = {
            d.rsplit(".", 1)[-1] for d in graph[f"s1kit.eval.grading.{name}"] if d.startswith("s1kit.eval")
        }
        assert uses <= set(order[:i]), (name, uses)
