"""A collection on disk: its manifest and the embedder swap that `rag tune retriever` relies on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ingest.pipeline import IngestJob
from rag.collection import MANIFEST, Collection, EmbedderInfo
from rag.embedding import HashEmbedder
from rag.manifest import Manifest
from tests.conftest import write_squad_docs


@pytest.fixture
def hashed(tmp_path, squad_paragraphs):
    from rag.settings import Settings

    embedder = HashEmbedder()
    settings = Settings.load(
        index_dir=tmp_path / "indexes", progress=False, device="cpu", embedding_model=embedder.name
    )
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 6)
    IngestJob(settings, embedder=embedder).run_files("h", docs)
    return settings


def test_embedder_swap_is_all_or_nothing(hashed) -> None:
    collection = Collection.open(hashed.index_dir, "h")
    keys, _ = collection.store.live_texts()
    vectors = np.ones((len(keys), 8), np.float32)
    generation = collection.store.generation

    # Killed after the manifest named the new embedder, before the store commit: the old one
    # stays, and the next open forgets the pending entry.
    manifest = json.loads((collection.path / MANIFEST).read_text())
    manifest["pending_embedder"] = {
        "name": "test/other",
        "dimension": 8,
        "generation": generation + 1,
    }
    (collection.path / MANIFEST).write_text(json.dumps(manifest))
    collection.close()
    collection = Collection.open(hashed.index_dir, "h")
    assert collection.embedder.name == "test/hash-embedder"
    assert collection.manifest.pending_embedder is None

    # Killed after the store commit, before the manifest was settled: the new one is in force.
    collection.store.replace_vectors(keys, vectors, expected_generation=generation)
    (collection.path / MANIFEST).write_text(json.dumps(manifest))
    collection.manifest = Manifest.from_json(manifest)
    assert collection.embedder.name == "test/other"
    collection.close()
    collection = Collection.open(hashed.index_dir, "h")
    assert collection.manifest.to_json()["embedder"] == {"name": "test/other", "dimension": 8}
    assert collection.manifest.pending_embedder is None
    collection.close()


def test_replace_embedder_checks_coverage_and_dimension(hashed) -> None:
    from rag.errors import CollectionError

    collection = Collection.open(hashed.index_dir, "h")
    try:
        keys, _ = collection.store.live_texts()
        with pytest.raises(CollectionError, match="do not match embedder dimension 8"):
            collection.replace_embedder(
                EmbedderInfo("x", 8), keys, np.zeros((len(keys), 4), np.float32)
            )
        with pytest.raises(CollectionError, match=r"new vectors cover \d+ of \d+ live chunks"):
            collection.replace_embedder(
                EmbedderInfo("x", 8), keys[:1], np.zeros((1, 8), np.float32)
            )
    finally:
        collection.close()
    # The failed swaps changed nothing.
    collection = Collection.open(hashed.index_dir, "h")
    assert collection.embedder.name == "test/hash-embedder"
    collection.close()
