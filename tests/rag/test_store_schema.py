"""A store written by an older rag opens and is brought up to the current schema in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from rag.store import SCHEMA_VERSION, Store

# The schema rag wrote before chunk context and document metadata (version 1).
VERSION_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE documents (
    key INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, source TEXT NOT NULL,
    origin TEXT NOT NULL, title TEXT NOT NULL, media_type TEXT NOT NULL, pages INTEGER NOT NULL,
    empty_pages TEXT NOT NULL, state TEXT NOT NULL, added_at TEXT NOT NULL);
CREATE UNIQUE INDEX documents_source_state ON documents (source, state);
CREATE TABLE chunks (
    key INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL,
    document_key INTEGER NOT NULL REFERENCES documents (key) ON DELETE CASCADE,
    page INTEGER NOT NULL, start INTEGER NOT NULL, stop INTEGER NOT NULL, text TEXT NOT NULL,
    vector BLOB NOT NULL);
CREATE INDEX chunks_document ON chunks (document_key);
INSERT INTO meta VALUES ('schema_version', '1'), ('generation', '3');
INSERT INTO documents VALUES (1, 'd1', '/docs/a.md', 'file', 'A', 'text/markdown', 1, '[]',
    'live', '2026-01-01T00:00:00+00:00');
INSERT INTO chunks VALUES (1, 'c1', 1, 1, 0, 5, 'hello', zeroblob(8));
"""


def test_version_1_store_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(VERSION_1)
    store = Store(path)
    try:
        assert store.generation == 3
        (document,) = store.documents()
        assert (document.source, document.metadata, document.chunks) == ("/docs/a.md", {}, 1)
        assert store.chunks([1])[1].context == ""
        assert store.live_texts()[1] == ["hello"]
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        (version,) = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    assert int(version) == SCHEMA_VERSION
