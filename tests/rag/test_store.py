"""The SQLite store: staged work is kept but unseen until one publish swaps it in, a reopened store
resumes where a killed job stopped, and stored chunks point back into their page's text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.chunking import Chunker
from ingest.loaders import load_document
from rag.embedding import HashEmbedder
from rag.store import Store
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
