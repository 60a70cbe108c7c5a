"""A collection for the tuning tests: real SQuAD paragraphs, hash-embedded."""

from __future__ import annotations

import pytest

from ingest.pipeline import IngestJob
from rag.collection import Collection
from rag.embedding import HashEmbedder
from rag.retrieval import Searcher
from tests.conftest import write_squad_docs


@pytest.fixture(scope="module")
def hashed(tmp_path_factory, squad_paragraphs):
    """24 real SQuAD paragraphs in a collection embedded by the hash-seeded fake embedder (the
    logic here does not depend on embedding quality)."""
    from rag.settings import Settings

    root = tmp_path_factory.mktemp("tuning")
    docs = write_squad_docs(root / "docs", squad_paragraphs, 24)
    embedder = HashEmbedder()
    settings = Settings.load(
        index_dir=root / "indexes", progress=False, device="cpu", embedding_model=embedder.name
    )
    IngestJob(settings, embedder=embedder).run_files("t", docs)
    collection = Collection.open(settings.index_dir, "t")
    yield Searcher(collection, settings, embedder=embedder, reranker=None), docs
    collection.close()
