"""The package's import structure: every module is under an import-linter contract, and no
module imports itself back through others (an import cycle)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("batchyard")


def _constrained(contract: dict) -> tuple[set[str], set[str]]:
    """(packages whose every module is covered, modules covered on their own)."""
    names: set[str] = set()
    for layer in contract.get("layers", []):
        names.update(part.strip(" ()") for part in layer.split("|"))
    names.update(contract.get("modules", []))
    names.update(contract.get("source_modules", []))
    if contract.get("as_packages", True):
        return names, set()
    return set(), names


def test_every_module_is_covered_by_an_import_contract(graph: grimp.ImportGraph) -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    packages: set[str] = set()
    exact: set[str] = set()
    for contract in config["contracts"]:
        covered_packages, covered_modules = _constrained(contract)
        packages |= covered_packages
        exact |= covered_modules
    uncovered = sorted(
        m for m in graph.modules
        if m not in exact and not any(m == p or m.startswith(p + ".") for p in packages))
    assert uncovered == []


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph.modules):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next((c for c in children if c in graph.modules), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(
                        graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(name)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert _cycles(graph) == [["pkg.a", "pkg.b"]]


def test_no_import_cycle_in_the_package(graph: grimp.ImportGraph) -> None:
    assert _cycles(graph) == []
