"""The typed manifest reads and writes the JSON shape collections have on disk, old ones included;
a Collection closes itself at the end of a `with` block."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from ingest.pipeline import IngestJob
from rag.collection import MANIFEST, Collection
from rag.embedding import HashEmbedder
from rag.errors import CollectionError
from rag.manifest import EmbedderInfo, Manifest, RegisteredReranker, read_manifest
from rag.rerank import CROSS_ENCODER, MAXSIM, Fusion
from rag.settings import Settings
from tests.conftest import write_squad_docs


@pytest.fixture
def built(tmp_path: Path, squad_paragraphs) -> Settings:
    """A real collection of four SQuAD paragraphs (hashed embeddings: only the files matter)."""
    embedder = HashEmbedder()
    settings = Settings.load(
        index_dir=tmp_path / "indexes", progress=False, device="cpu", embedding_model=embedder.name
    )
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 4)
    report = IngestJob(settings, embedder=embedder).run_files("c", docs)
    assert report.ingested == 4
    return settings


def manifest_file(settings: Settings) -> Path:
    return settings.index_dir / "c" / MANIFEST


def test_a_new_collections_manifest_reads_and_writes_back_unchanged(built: Settings) -> None:
    raw = json.loads(manifest_file(built).read_text())
    manifest = Manifest.from_json(raw)

    assert manifest.to_json() == raw
    assert list(manifest.to_json()) == list(raw)  # the same key order as the file
    assert manifest.name == "c" and manifest.reranker is None
    assert manifest.embedder == EmbedderInfo("test/hash-embedder", 64)
    assert manifest.chunking.chunk_tokens == built.chunk_tokens
    assert manifest.chunking.chunk_overlap == built.chunk_overlap


def test_registering_a_reranker_writes_todays_json_shape(built: Settings) -> None:
    reranker = RegisteredReranker(
        "models/reranker-1",
        arch=MAXSIM,
        base="base/model",
        fusion=Fusion(0.4, 60),
        trained_at="2025-01-01T00:00:00+00:00",
        held_out_ndcg={"before": 0.5, "after": 0.6},
    )
    with Collection.open(built.index_dir, "c") as collection:
        collection.set_reranker(reranker)

    raw = json.loads(manifest_file(built).read_text())
    assert raw["reranker"] == {
        "path": "models/reranker-1",
        "arch": "maxsim",
        "base": "base/model",
        "fusion": {"weight": 0.4, "k": 60},
        "trained_at": "2025-01-01T00:00:00+00:00",
        "held_out_ndcg@10": {"before": 0.5, "after": 0.6},
    }
    with Collection.open(built.index_dir, "c") as collection:
        assert collection.manifest.reranker == reranker
        registered = collection.registered_reranker()
        assert registered is not None
        assert registered.path == str(built.index_dir / "c" / "models" / "reranker-1")


def test_an_older_manifest_opens_and_keeps_what_this_version_does_not_know(
    built: Settings,
) -> None:
    """Written before MaxSim rerankers and the lexical entry existed, with a tuned embedder and a
    key from elsewhere: it opens, reads as what it says, and a rewrite keeps every key."""
    raw = json.loads(manifest_file(built).read_text())
    del raw["lexical"]
    raw["embedder"] = {
        "name": "test/hash-embedder",
        "dimension": 64,
        "base": "test/base",
        "trained_at": "2024-05-01T00:00:00+00:00",
    }
    raw["reranker"] = {"path": "models/old", "fusion": {"weight": 0.5, "k": 60}, "note": "kept"}
    raw["comment"] = "added by hand"
    manifest_file(built).write_text(json.dumps(raw))

    with Collection.open(built.index_dir, "c") as collection:
        manifest = collection.manifest
        assert manifest.lexical is None
        assert manifest.embedder.base == "test/base"
        assert collection.embedder.name == "test/hash-embedder"
        assert manifest.reranker is not None
        assert manifest.reranker.arch is None and manifest.reranker.kind == CROSS_ENCODER
        assert manifest.reranker.fusion == Fusion(0.5, 60)
        assert manifest.to_json() == raw
        collection.set_reranker(manifest.reranker)  # a rewrite, changing nothing

    assert json.loads(manifest_file(built).read_text()) == raw


def test_a_reranker_with_a_broken_fusion_is_a_damaged_manifest(built: Settings) -> None:
    raw = json.loads(manifest_file(built).read_text())
    raw["reranker"] = {"path": "models/x", "fusion": {"weight": 3, "k": 60}}
    manifest_file(built).write_text(json.dumps(raw))

    with pytest.raises(CollectionError, match=r"manifest\.json is damaged: 'reranker\.fusion' is "):
        read_manifest(manifest_file(built))


def test_collection_describe_is_what_collections_info_shows(built: Settings) -> None:
    with Collection.open(built.index_dir, "c") as collection:
        collection.set_reranker(RegisteredReranker("models/r", fusion=Fusion(0.7)))
        info = collection.describe("auto")
        documents, chunks = collection.store.counts()

    data = info.to_json()
    assert (data["name"], data["documents"], data["chunks"]) == ("c", documents, chunks)
    assert data["embedder"] == {"name": "test/hash-embedder", "dimension": 64}
    assert data["index"]["type"] == "flat" and data["index"]["setting"] == "auto"
    assert data["reranker"] == {"path": "models/r", "fusion": {"weight": 0.7, "k": 60}}
    assert info.lines()[-1] == "  reranker:  models/r (cross-encoder, fusion weight 0.7)"


def test_a_collection_closes_at_the_end_of_a_with_block(built: Settings) -> None:
    with Collection.open(built.index_dir, "c") as collection:
        assert collection.store.counts()[0] == 4
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        collection.store.counts()

    with pytest.raises(KeyError), Collection.open(built.index_dir, "c") as again:
        raise KeyError("an error inside the block")
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        again.store.counts()
