"""Embedding backends on real SciFact text: torch, ONNX Runtime float32, and int8."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rag.embedding import (
    EMBED_BACKENDS,
    SentenceTransformerEmbedder,
    default_cache_dir,
    onnx_export,
    prune_exports,
)
from rag.errors import ModelError

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def scifact(shared_data: Path) -> dict[str, object]:
    """80 SciFact test queries, their relevant abstracts and 250 others: long and short texts."""
    folder = shared_data / "scifact"
    relevant: dict[str, set[str]] = {}
    for line in (folder / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        query_id, doc_id, _ = line.split("\t")
        if len(relevant) < 80 or query_id in relevant:
            relevant.setdefault(query_id, set()).add(doc_id)
    wanted = set().union(*relevant.values())
    docs: dict[str, str] = {}
    with (folder / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            if doc["_id"] in wanted or len(docs) < len(wanted) + 250:
                docs[doc["_id"]] = f"{doc['title']}. {doc['text']}"
    queries = {}
    with (folder / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            query = json.loads(line)
            if query["_id"] in relevant:
                queries[query["_id"]] = query["text"]
    return {"docs": docs, "queries": queries, "relevant": relevant}


@pytest.fixture(scope="module")
def scifact_texts(scifact: dict[str, Any]) -> list[str]:
    return list(scifact["docs"].values()) + list(scifact["queries"].values())


@pytest.fixture(scope="module")
def torch_vectors(scifact_texts: list[str]) -> np.ndarray:
    return SentenceTransformerEmbedder(MINILM, device="cpu", backend="torch").embed(scifact_texts)


@pytest.fixture(scope="module")
def int8_vectors(scifact_texts: list[str]) -> np.ndarray:
    return SentenceTransformerEmbedder(MINILM, device="cpu", backend="int8").embed(scifact_texts)


@pytest.mark.parametrize(("backend", "floor"), [("onnx", 0.9999), ("int8", 0.98)])
def test_onnx_backends_match_torch(
    backend: str,
    floor: float,
    scifact_texts: list[str],
    torch_vectors: np.ndarray,
    int8_vectors: np.ndarray,
) -> None:
    if backend == "int8":
        vectors = int8_vectors
    else:
        vectors = SentenceTransformerEmbedder(MINILM, device="cpu", backend=backend).embed(
            scifact_texts
        )
    assert vectors.shape == torch_vectors.shape == (len(scifact_texts), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(vectors * torch_vectors, axis=1)
    assert cosine.min() >= floor
    if backend == "int8":
        assert cosine.mean() >= 0.99


def test_int8_keeps_dense_retrieval_quality(
    scifact: dict[str, Any], torch_vectors: np.ndarray, int8_vectors: np.ndarray
) -> None:
    """SciFact queries find their relevant abstracts as often with int8 vectors as with torch."""
    doc_ids = list(scifact["docs"])
    query_ids = list(scifact["queries"])

    def recall_at_10(vectors: np.ndarray) -> float:
        docs, queries = vectors[: len(doc_ids)], vectors[len(doc_ids) :]
        top = np.argsort(-(queries @ docs.T), axis=1)[:, :10]
        found = [
            len({doc_ids[i] for i in row} & scifact["relevant"][q]) / len(scifact["relevant"][q])
            for q, row in zip(query_ids, top, strict=True)
        ]
        return float(np.mean(found))

    torch_recall, int8_recall = recall_at_10(torch_vectors), recall_at_10(int8_vectors)
    assert torch_recall > 0.7  # the task is real: MiniLM finds most relevant abstracts
    assert int8_recall >= torch_recall - 0.03


@pytest.mark.parametrize("backend", ["onnx", "int8"])
def test_a_text_gets_the_same_vector_whatever_its_neighbours(
    backend: str, scifact_texts: list[str]
) -> None:
    """The ingest job's batches depend on timing, and the texts of a call are spread over
    worker threads; the vectors must depend on neither."""
    embedder = SentenceTransformerEmbedder(MINILM, device="cpu", backend=backend)
    sample = scifact_texts[-12:] + scifact_texts[:3]
    alone = np.vstack([embedder.embed([text]) for text in sample])
    model = embedder._onnx_model()
    assert model is not None
    for workers in (1, 3):
        model.workers = workers
        np.testing.assert_array_equal(embedder.embed(sample), alone)


def test_export_is_built_once_and_reused(tmp_path: Path) -> None:
    first = onnx_export(MINILM, "int8", tmp_path)
    stamp = (first / "model.onnx").stat().st_mtime_ns
    again = onnx_export(MINILM, "int8", tmp_path)
    assert again == first
    assert (first / "model.onnx").stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".export-*"))  # no staging folder left behind
    # The fp32 export is a different folder: the backend is part of the cache key.
    assert onnx_export(MINILM, "onnx", tmp_path) != first


def test_exports_of_models_that_are_gone_are_pruned(tmp_path: Path) -> None:
    # A tuned reranker lives in its collection; once the collection is deleted its export
    # would stay in the cache (about 90 MB each) with nothing left to load it.
    root = tmp_path / "onnx"
    model = tmp_path / "collection" / "models" / "reranker-1"
    model.mkdir(parents=True)
    for name, source in (
        ("kept-tokens-1", str(model)),
        ("gone-tokens-2", str(tmp_path / "deleted" / "reranker-0")),
        ("hub-int8-3", "sentence-transformers/all-MiniLM-L6-v2"),  # not a folder: kept
    ):
        (root / name).mkdir(parents=True)
        (root / name / "rag-export.json").write_text(json.dumps({"source": source}))
    (root / "unfinished-int8-4").mkdir()  # no meta yet: an export in progress
    prune_exports(root)
    assert sorted(p.name for p in root.iterdir()) == [
        "hub-int8-3",
        "kept-tokens-1",
        "unfinished-int8-4",
    ]


def test_the_cache_follows_rag_cache_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache" / "onnx"


def test_unwritable_cache_names_the_way_out(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(ModelError, match="use backend 'torch'"):
        onnx_export(MINILM, "int8", blocker / "onnx")


def test_bad_backend_and_batch_size_are_one_line_errors() -> None:
    with pytest.raises(ModelError, match=r"unknown embedding backend 'fp4' \(valid: torch, onnx"):
        SentenceTransformerEmbedder(MINILM, backend="fp4")
    with pytest.raises(ModelError, match="batch_size must be at least 1"):
        SentenceTransformerEmbedder(MINILM, batch_size=0)
    assert set(EMBED_BACKENDS) == {"torch", "onnx", "int8"}


def test_empty_input_gives_an_empty_matrix() -> None:
    embedder = SentenceTransformerEmbedder(MINILM, device="cpu", backend="int8")
    assert embedder.embed([]).shape == (0, 384)


def test_setting_reaches_ingest_and_search(settings, tmp_path: Path, squad_paragraphs) -> None:
    """`embed_backend` picks the backend of both the ingest job and the searcher."""
    from ingest.pipeline import IngestJob
    from rag.collection import Collection
    from rag.retrieval import Searcher
    from tests.conftest import write_squad_docs

    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 6)
    chosen = settings.model_copy(update={"embed_backend": "onnx", "rerank": False})
    job = IngestJob(chosen)
    job.run_files("backend", docs)
    assert job._get_embedder(MINILM).backend == "onnx"
    collection = Collection.open(chosen.index_dir, "backend")
    try:
        searcher = Searcher(collection, chosen, reranker=None)
        assert searcher.embedder.backend == "onnx"  # type: ignore[attr-defined]
        result = searcher.search(str(squad_paragraphs[2]["questions"][0]), mode="dense")
        assert result.hits
    finally:
        collection.close()
