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
        if path.name != "cli.py"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_ingest_does_not_import_faces() -> None:
    offenders = {
        str(path.relative_to(REPO)): imported_roots(path) & {"ui", "streamlit", "click"}
        for path in (REPO / "ingest").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}
