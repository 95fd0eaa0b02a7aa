"""The package's import rules, read from the source (type-only imports included): layers import
downwards only, and no module imports itself back through another."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "speedrun"

# (importer prefix, imported prefix) pairs that must never occur.
FORBIDDEN = (
    ("speedrun.models", "speedrun.training"),
    ("speedrun.training", "speedrun.bench"),
    ("speedrun.training", "speedrun.recipes"),
    ("speedrun.training", "speedrun.cli"),
    ("speedrun.training", "speedrun.overrides"),
    ("speedrun.schedules", "speedrun.training"),
    ("speedrun.instruments", "speedrun.training"),
    ("speedrun.instruments", "speedrun.bench"),
    ("speedrun.settings", "speedrun.training"),
    ("speedrun.analysis", "speedrun.bench"),
    ("speedrun.recipes", "speedrun.bench"),
    ("speedrun.results", "speedrun.bench"),
    ("speedrun.bench", "speedrun.overrides"),
    ("speedrun.bench", "speedrun.sweeps"),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Every speedrun module -> the speedrun modules it imports anywhere in its source."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        graph[name] = {t for t in targets if t.startswith("speedrun")}
    modules = set(graph)
    return {name: {t for t in targets if t in modules and t != name} for name, targets in graph.items()}


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert "speedrun.training.trainer" in graph and "speedrun.cli" in graph
    assert "speedrun.training.optimizers" in graph["speedrun.training.trainer"]


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN)
def test_no_upward_import(importer: str, imported: str):
    graph = import_graph()
    found = sorted(f"{a} -> {b}" for a, targets in graph.items() if _under(a, importer)
                   for b in targets if _under(b, imported))
    assert not found


def test_only_the_entry_point_imports_the_command_line():
    graph = import_graph()
    found = sorted(a for a, targets in graph.items() if not _under(a, "speedrun.cli") and a != "speedrun.__main__"
                   and any(_under(b, "speedrun.cli") for b in targets))
    assert not found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None. A package's ``__init__`` importing its own modules is how it
    re-exports them, not a dependency of design, so those edges are left out."""
    edges = {a: {b for b in targets if not b.startswith(a + ".")} for a, targets in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(edges):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_cycle():
    assert find_cycle(import_graph()) is None


def test_a_cycle_would_be_found():
    graph = import_graph()
    graph["speedrun.training.optimizers"] = graph["speedrun.training.optimizers"] | {"speedrun.training.trainer"}
    assert find_cycle(graph) is not None
