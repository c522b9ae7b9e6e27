"""Package layering, from the bottom: ``schemas``; ``producers`` and ``sinks``; ``streams`` and
``dashboards``; ``embedded``; ``runlens`` (command line and composition root). A package imports
only from packages below it: every import counts, in functions and under TYPE_CHECKING too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER = {"schemas": 0, "producers": 1, "sinks": 1, "streams": 2, "dashboards": 2, "embedded": 3, "runlens": 4}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module


@pytest.mark.parametrize("package", ["schemas", "producers", "sinks", "streams", "dashboards", "embedded"])
def test_a_package_imports_only_from_packages_below_it(package: str) -> None:
    wrong = [f"{path.relative_to(ROOT)}:{line}: {target}"
             for path in sorted((ROOT / package).rglob("*.py"))
             for line, target in _imports(path)
             if (top := target.split(".")[0]) in LAYER and top != package and LAYER[top] >= LAYER[package]]
    assert not wrong, f"{package} imports from its own layer or above:\n" + "\n".join(wrong)


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(target: str, modules: set[str]) -> str | None:
    """The runlens module an import names (``a.b.c`` may be module ``a.b`` importing name ``c``)."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def test_no_import_cycle_among_modules() -> None:
    """Every import counts (in functions and under TYPE_CHECKING too): a cycle broken by a lazy
    import is still a cycle of dependencies. A package's ``__init__`` importing its own modules
    (re-exports) is not a cycle with them."""
    paths = [p for package in LAYER for p in sorted((ROOT / package).rglob("*.py"))]
    modules = {_module_of(p) for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        module = _module_of(path)
        edges = {_resolve(target, modules) for _, target in _imports(path)}
        graph[module] = {m for m in edges if m and m != module
                         and not (path.name == "__init__.py" and m.startswith(module + "."))}
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Cycles of a dependency graph (depth-first; each back edge gives one)."""
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return cycles


def test_the_cycle_finder_finds_a_lazy_import_cycle() -> None:
    """The control: the shape the old command line had (a command module importing the CLI's
    helpers back) is found."""
    graph = {"runlens.cli": {"runlens.cli.bench"}, "runlens.cli.bench": {"runlens.cli.common"},
             "runlens.cli.common": {"runlens.cli.bench"}, "schemas.events": set()}
    assert find_cycles(graph) == [["runlens.cli.bench", "runlens.cli.common", "runlens.cli.bench"]]


MAX_LINES = 600
# Modules allowed over MAX_LINES: each one cohesive class (say which), or a split that is pending.
LONG_MODULES: dict[str, str] = {}


def test_no_module_is_over_600_lines() -> None:
    """A module over ~600 lines has more than one job: split it along its seams (the allow-list
    above is for one cohesive class)."""
    long = {str(p.relative_to(ROOT)): n for package in LAYER for p in sorted((ROOT / package).rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    over = [f"{path}: {n} lines" for path, n in long.items() if path not in LONG_MODULES]
    assert not over, (f"modules over {MAX_LINES} lines (split them, or allow-list one cohesive class):\n"
                      + "\n".join(over))
    stale = sorted(set(LONG_MODULES) - set(long))
    assert not stale, f"allow-listed modules now at most {MAX_LINES} lines (drop them from LONG_MODULES): {stale}"
