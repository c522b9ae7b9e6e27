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
