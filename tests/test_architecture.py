"""The package's layout is its architecture: these tests keep the layers apart.

Imports between helix_lab's modules form no cycle (counting imports under
``TYPE_CHECKING`` too: a cycle that only type checkers see is still a knot for a reader).
Imports inside functions are the deliberate lazy edges that keep ``import helix_lab`` fast;
they may point anywhere except back into a cycle of module-level imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import helix_lab

PACKAGE = Path(helix_lab.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        parts = module.split(".")
        keep = len(parts) - node.level + (1 if is_package else 0)
        base = ".".join(parts[:keep] + ([node.module] if node.module else []))
    # "from . import reads" names a module; "from .x import Y" names module x.
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def module_imports() -> dict[str, set[str]]:
    """Module-level imports between helix_lab's modules (function bodies excluded)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        targets: set[str] = set()
        nodes = list(tree.body)
        while nodes:
            node = nodes.pop()
            if isinstance(node, ast.If | ast.Try):  # TYPE_CHECKING, optional imports
                nodes.extend(node.body)
                nodes.extend(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    nodes.extend(handler.body)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                targets.update(_resolve(name, path.name == "__init__.py", node))
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            # A package's __init__ re-exporting its own modules is not a knot.
            if node.startswith(target + ".") or target.startswith(node + "."):
                continue
            if state.get(target) == 1:
                return [*stack[stack.index(target):], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_checker_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_helix_lab() -> None:
    assert find_cycle(module_imports()) is None


def test_the_executor_sees_the_server_only_through_run_host() -> None:
    graph = module_imports()
    assert "helix_lab.runtime.server" not in graph["helix_lab.runtime.executor"]
    assert "helix_lab.runtime.server" not in graph["helix_lab.runtime.hooks"]
    assert "helix_lab.runtime.executor" not in graph["helix_lab.runtime.hooks"]
