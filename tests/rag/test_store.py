"""The SQLite store: staged work is kept but unseen until one publish swaps it in, a reopened store
resumes where a killed job stopped, stored chunks point back into their page's text, and a store
(and a whole collection) written by the previous release is brought up to date in place."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ingest.chunking import Chunker
from ingest.loaders import load_document
from rag.embedding import HashEmbedder
from rag.store import SCHEMA_VERSION, Store
from rag.types import Chunk, Document, Page
from tests.conftest import write_squad_docs

CHUNKER = Chunker(80, 10)
EMBEDDER = HashEmbedder()


@pytest.fixture
def documents(tmp_path: Path, squad_paragraphs) -> list[Document]:
    """Three real SQuAD paragraphs loaded as documents."""
    return [load_document(p) for p in write_squad_docs(tmp_path / "docs", squad_paragraphs, 3)]


def stage(store: Store, document: Document) -> list[Chunk]:
    chunks = CHUNKER.split(document)
    store.stage(document, "file", chunks, EMBEDDER.embed([c.text for c in chunks]))
    return chunks


def live_chunks(store: Store) -> dict[int, Chunk]:
    keys, _ = store.live_texts()
    return store.chunks(list(keys))


def test_staged_work_is_unseen_until_published_and_survives_a_reopen(
    tmp_path: Path, documents: list[Document]
) -> None:
    path = tmp_path / "store.sqlite"
    store = Store(path, create=True)
    generation = store.generation
    staged = stage(store, documents[0]) + stage(store, documents[1])
    assert store.counts() == (0, 0) and store.documents() == [] and live_chunks(store) == {}
    assert store.generation == generation
    store.close()  # as a killed job leaves it

    store = Store(path)
    assert [d.source for d in store.documents("staged")] == sorted(d.source for d in documents[:2])
    assert store.publish() == generation + 1
    assert store.counts() == (2, len(staged)) and store.documents("staged") == []
    assert sorted(c.id for c in live_chunks(store).values()) == sorted(c.id for c in staged)
    # Nothing staged, nothing removed: the generation stays.
    assert store.publish() == generation + 1
    store.close()


def test_a_new_version_replaces_the_old_and_remove_prunes_in_the_same_publish(
    documents: list[Document], tmp_path: Path
) -> None:
    store = Store(tmp_path / "store.sqlite", create=True)
    for document in documents:
        stage(store, document)
    store.publish()
    first, second, third = documents
    changed = Document(
        id="changed",
        source=first.source,
        title=first.title,
        media_type=first.media_type,
        pages=tuple(
            Page(p.number, p.text + "\n\nA closing sentence added later.") for p in first.pages
        ),
    )
    new_chunks = stage(store, changed)
    # Until the publish, search still sees the old version.
    assert {c.document_id for c in live_chunks(store).values()} == {d.id for d in documents}
    generation = store.publish(remove=[third.source])
    live = live_chunks(store)
    assert {c.source for c in live.values()} == {first.source, second.source}
    assert sorted(c.id for c in live.values() if c.source == first.source) == sorted(
        c.id for c in new_chunks
    )
    assert store.document(first.source).id == "changed"
    assert store.counts()[0] == 2 and store.generation == generation
    store.close()


def test_discard_keeps_only_the_staged_work_a_job_adopts(
    documents: list[Document], tmp_path: Path
) -> None:
    store = Store(tmp_path / "store.sqlite", create=True)
    for document in documents:
        stage(store, document)
    assert store.discard_staged(keep={documents[1].source}) == 2
    store.publish()
    assert [d.source for d in store.documents()] == [documents[1].source]
    store.close()


def test_stored_chunks_point_into_their_page_text(
    documents: list[Document], tmp_path: Path
) -> None:
    store = Store(tmp_path / "store.sqlite", create=True)
    for document in documents:
        stage(store, document)
    store.publish()
    pages = {(d.source, p.number): p.text for d in documents for p in d.pages}
    live = live_chunks(store)
    assert len(live) == store.counts()[1] > len(documents)
    for chunk in live.values():
        assert pages[chunk.source, chunk.page][chunk.start : chunk.end] == chunk.text
    # Vectors come back in key order, as they were embedded.
    (keys, vectors), *_ = store.live_vectors(EMBEDDER.dimension)
    texts = [live[int(key)].text for key in keys]
    assert np.allclose(vectors, EMBEDDER.embed(texts))
    store.close()


# -- a store written by an older rag ----------------------------------------------------------

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


# manifest.json as rag wrote it before the store's schema 2 (2452c15).
OLD_MANIFEST = {
    "schema_version": 1,
    "name": "old",
    "created_at": "2026-11-30T19:43:14+00:00",
    "embedder": {"name": "test/hash-embedder", "dimension": 8},
    "chunking": {
        "splitter": "langchain RecursiveCharacterTextSplitter",
        "unit": "tokens",
        "chunk_tokens": 240,
        "chunk_overlap": 32,
    },
    "lexical": {
        "library": "bm25s",
        "method": "lucene",
        "k1": 1.5,
        "b": 0.75,
        "stemmer": "english",
        "stopwords": "en",
    },
    "reranker": None,
}


def test_a_collection_made_by_the_previous_release_opens_searches_and_grows(
    tmp_path: Path, squad_paragraphs
) -> None:
    from ingest.pipeline import IngestJob
    from rag.collection import Collection
    from rag.embedding import HashEmbedder
    from rag.retrieval import Searcher
    from rag.settings import Settings
    from tests.conftest import write_squad_docs

    folder = tmp_path / "idx" / "old"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(OLD_MANIFEST))
    with sqlite3.connect(folder / "store.sqlite") as db:
        db.executescript(VERSION_1.replace("zeroblob(8)", "zeroblob(32)"))
    embedder = HashEmbedder(dimension=8)
    settings = Settings.load(
        index_dir=tmp_path / "idx", progress=False, embedding_model=embedder.name, rerank=False
    )
    with Collection.open(settings.index_dir, "old") as collection:
        assert not collection.manifest.chunking.context  # made before chunk context
        assert Searcher(collection, settings, embedder=embedder).search("hello", mode="bm25").hits
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 2)
    report = IngestJob(settings, embedder=embedder).run_files("old", docs)
    assert report.added == 2
    with Collection.open(settings.index_dir, "old") as collection:
        # New documents into an old collection are indexed as its old ones were: no context.
        keys, _ = collection.store.live_texts()
        assert all(not chunk.context for chunk in collection.store.chunks(keys).values())
