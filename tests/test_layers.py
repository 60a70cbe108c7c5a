"""Layers point one way: rag/ is the ground floor, ingest/ builds on it, faces sit on top."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_rag_does_not_import_upper_layers() -> None:
    offenders = {
        str(path.relative_to(REPO)): imported_roots(path) & {"ingest", "ui", "streamlit"}
        for path in (REPO / "rag").rglob("*.py")
        # The faces inside rag/, the command line and the HTTP service, may import ingest/.
        if not {REPO / "rag" / "cli", REPO / "rag" / "server"} & set(path.parents)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_ingest_does_not_import_faces() -> None:
    offenders = {
        str(path.relative_to(REPO)): imported_roots(path) & {"ui", "streamlit", "click"}
        for path in (REPO / "ingest").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def module_graph() -> dict[str, set[str]]:
    """Each module of rag/, ingest/ and ui/ with the project modules it imports, at any depth of
    its code (a lazy import inside a function is an edge too)."""
    modules = {
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): path
        for root in ("rag", "ingest", "ui")
        for path in (REPO / root).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                edges.add(node.module)
                edges.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {edge for edge in edges if edge in modules and edge != name}
    return graph


def test_the_import_graph_has_no_circle() -> None:
    graph = module_graph()
    circles = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            module, path = stack.pop()
            for target in graph[module]:
                if target == start:
                    circles.append(" -> ".join([*path, start]))
                elif target not in path and len(path) < len(graph):
                    stack.append((target, [*path, target]))
    assert circles == []


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_reading_questions_evaluating_and_tuning_need_no_answering_stack() -> None:
    graph = module_graph()
    for module in ("rag.questions", "rag.evaluation", "rag.answer_eval"):
        assert reachable(graph, module) & {"rag.pipeline", "rag.batch", "rag.generation"} == set()
    tuning = [name for name in graph if name.startswith("rag.tune")]
    assert len(tuning) > 1
    for module in tuning:
        assert reachable(graph, module) & {"rag.pipeline", "rag.batch"} == set(), module
