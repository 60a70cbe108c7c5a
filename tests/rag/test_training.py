"""`rag tune` end to end with the real MiniLM on a few SQuAD paragraphs (a handful of steps), and
the manifest mechanics it relies on: the registered reranker and the atomic embedder swap."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ingest.pipeline import IngestJob
from rag.cli import cli
from rag.collection import MANIFEST, Collection, EmbedderInfo
from rag.embedding import HashEmbedder
from rag.errors import ConfigError
from rag.manifest import Manifest, RegisteredReranker
from rag.models import packaged_path
from rag.rerank import CrossEncoderReranker, Fusion, MaxSimReranker, multi_vector_model
from rag.retrieval import Searcher
from rag.tune import TuneOptions, tune_reranker, tune_retriever
from tests.conftest import MINILM, write_squad_docs

PARAGRAPHS = 10
# The smallest run that still exercises every stage: one step, one evaluation and checkpoint.
TINY = {
    "max_steps": 1,
    "batch_size": 2,
    "max_length": 64,
    "negatives": 1,
    "held_out": 0.3,
    "held_out_max": 3,
    "eval_queries": 2,
    "evals": 1,
}


@pytest.fixture
def squad(tmp_path, squad_paragraphs, minilm):
    """A fresh collection of real SQuAD paragraphs (real MiniLM) and BEIR-style labels for it."""
    from rag.settings import Settings

    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, PARAGRAPHS)
    settings = Settings.load(
        index_dir=tmp_path / "indexes",
        progress=False,
        device="cpu",
        embed_backend="torch",
        rerank_depth=5,
    )
    IngestJob(settings, embedder=minilm).run_files("squad", docs)
    queries = tmp_path / "queries.jsonl"
    qrels = tmp_path / "qrels.tsv"
    with queries.open("w") as q, qrels.open("w") as r:
        r.write("query-id\tcorpus-id\tscore\n")
        for n, paragraph in enumerate(squad_paragraphs[:PARAGRAPHS]):
            for m, question in enumerate(paragraph["questions"][:1]):
                q.write(json.dumps({"_id": f"{n}-{m}", "text": question}) + "\n")
                r.write(f"{n}-{m}\t{docs[n].stem}\t1\n")
    return settings, queries, qrels


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["maxsim", "cross-encoder"])
def test_tune_reranker_trains_cards_and_registers_only_a_winner(squad, minilm, arch) -> None:
    settings, queries, qrels = squad
    options = TuneOptions(queries_file=queries, qrels_file=qrels, arch=arch, **TINY)
    report = tune_reranker(settings, "squad", options, embedder=minilm)

    assert "\n" not in report.message
    card = json.loads((report.model_path / "rag-tune.json").read_text())
    assert card["data"]["queries"] == {"labelled": PARAGRAPHS}
    assert card["data"]["train_queries"] + card["data"]["held_out_queries"] == PARAGRAPHS
    assert card["training"]["steps"] == 1 and card["training"]["interrupted"] is False
    assert card["training"]["arch"] == arch
    after = card["metrics"]["after"]
    assert set(after) >= {"first_stage_ndcg@10", "reranker_ndcg@10", "fused_ndcg@10"}
    assert "## Held-out metrics" in (report.model_path / "README.md").read_text()
    # A finished run leaves no work behind.
    assert not (settings.index_dir / "squad" / "tune" / "reranker").exists()

    collection = Collection.open(settings.index_dir, "squad")
    try:
        registered = collection.registered_reranker()
        # The guard: registered exactly when the fused ranking beat the first stage.
        assert report.registered == (after["fused_ndcg@10"] > after["first_stage_ndcg@10"])
        if report.registered:
            assert registered and Path(registered.path) == report.model_path
            assert registered.arch == arch
            assert report.message.startswith("registered reranker")
            # Search loads it as what it is, with the fusion weight the held-out queries picked.
            reranker = Searcher(collection, settings).reranker_choice().reranker
            expected = MaxSimReranker if arch == "maxsim" else CrossEncoderReranker
            assert isinstance(reranker, expected)
            assert reranker.fusion == Fusion(after["fusion_weight"], 60)
        else:
            assert registered is None
            assert report.message.startswith("not registered: the tuned reranker does not beat")
    finally:
        collection.close()


def test_search_uses_the_registered_reranker_and_its_fusion(squad, cross_encoder_dir) -> None:
    settings, _, _ = squad
    collection = Collection.open(settings.index_dir, "squad")
    try:
        shutil.copytree(cross_encoder_dir, collection.path / "models" / "reranker-x")
        collection.set_reranker(RegisteredReranker("models/reranker-x", fusion=Fusion(0.7, 60)))
        searcher = Searcher(collection, settings)
        reranker = searcher.reranker_choice().reranker
        assert isinstance(reranker, CrossEncoderReranker)
        assert reranker.name == str(collection.path / "models" / "reranker-x")
        assert reranker.fusion == Fusion(0.7, 60)
        query = "Which NFL team represented the AFC at Super Bowl 50?"
        result = searcher.search(query, top_k=3)
        assert result.notices == () and [h.stage for h in result.hits] == ["rerank"] * 3
        candidates = searcher.retrieve(query, settings.rerank_depth)
        fused = Fusion(0.7).fuse(reranker.score(query, [h.chunk.text for h in candidates]))
        assert [h.score for h in result.hits] == pytest.approx(sorted(fused, reverse=True)[:3])
    finally:
        collection.close()


@pytest.mark.slow
def test_tune_retriever_reembeds_and_swaps_only_a_winner(squad, minilm) -> None:
    settings, queries, qrels = squad
    options = TuneOptions(queries_file=queries, qrels_file=qrels, **{**TINY, "batch_size": 4})
    report = tune_retriever(settings, "squad", options, embedder=minilm)
    card = report.card
    assert card["reembedded_chunks"] > 0 and card["training"]["steps"] == 1
    before = card["metrics"]["before"]["dense_ndcg@10"]
    after = card["metrics"]["after"]["dense_ndcg@10"]
    assert report.registered == (after > before)
    collection = Collection.open(settings.index_dir, "squad")
    try:
        expected = str(report.model_path) if report.registered else MINILM
        assert collection.embedder.name == expected
        assert collection.manifest.pending_embedder is None
        hits = Searcher(collection, settings, reranker=None).search("Super Bowl 50").hits
        assert hits
    finally:
        collection.close()


def test_tune_options_are_checked(squad) -> None:
    settings, queries, _ = squad
    with pytest.raises(ConfigError, match="--queries and --qrels go together"):
        tune_reranker(settings, "squad", TuneOptions(queries_file=queries))
    with pytest.raises(ConfigError, match=r"unknown loss 'hinge' \(valid: mnrl, lambda"):
        tune_reranker(settings, "squad", TuneOptions(loss="hinge"))
    with pytest.raises(ConfigError, match=r"unknown reranker arch 'colbert' \(valid: maxsim"):
        tune_reranker(settings, "squad", TuneOptions(arch="colbert"))
    with pytest.raises(ConfigError, match="--loss lambda is for cross-encoders"):
        tune_reranker(settings, "squad", TuneOptions(arch="maxsim", loss="lambda"))


def test_search_uses_a_registered_maxsim_reranker(squad) -> None:
    """A tuned MaxSim model is saved as a sentence-transformers MultiVectorEncoder; the manifest's
    `arch` tells search to load it as one (the untrained build scores like the packaged MiniLM)."""
    settings, _, _ = squad
    collection = Collection.open(settings.index_dir, "squad")
    try:
        folder = collection.path / "models" / "reranker-m"
        multi_vector_model(MINILM, "cpu").save(str(folder))
        collection.set_reranker(
            RegisteredReranker("models/reranker-m", arch="maxsim", fusion=Fusion(0.6, 60))
        )
        reranker = Searcher(collection, settings).reranker_choice().reranker
        assert isinstance(reranker, MaxSimReranker) and reranker.fusion == Fusion(0.6, 60)
        query = "Which NFL team represented the AFC at Super Bowl 50?"
        texts = [h.chunk.text for h in Searcher(collection, settings).retrieve(query, 5)]
        untrained = MaxSimReranker(MINILM, device="cpu").score(query, texts)
        assert len(set(untrained)) == len(texts) > 1
        assert reranker.score(query, texts) == pytest.approx(untrained, rel=1e-5)
    finally:
        collection.close()
    info = CliRunner().invoke(
        cli, ["collections", "info", "squad"], env={"RAG_INDEX_DIR": str(settings.index_dir)}
    )
    assert "reranker:  models/reranker-m (maxsim, fusion weight 0.6)" in info.output


# -- the embedder swap ---------------------------------------------------------------------------


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


def test_a_live_searcher_follows_an_embedder_swap(squad, minilm, tmp_path) -> None:
    settings, _, _ = squad
    folder = tmp_path / "tuned-minilm"
    shutil.copytree(packaged_path(MINILM), folder)  # the same weights under a new name
    collection = Collection.open(settings.index_dir, "squad")
    try:
        searcher = Searcher(collection, settings, reranker=None)
        before = searcher.search("Super Bowl 50 winner", top_k=3).hits
        keys, texts = collection.store.live_texts()
        with collection.writer_lock():
            collection.replace_embedder(EmbedderInfo(str(folder), 384), keys, minilm.embed(texts))
        after = searcher.search("Super Bowl 50 winner", top_k=3).hits
        assert searcher.embedder.name == str(folder)
        assert [h.chunk.id for h in after] == [h.chunk.id for h in before]
    finally:
        collection.close()
    reopened = Collection.open(settings.index_dir, "squad")
    assert reopened.embedder.name == str(folder)
    assert (reopened.path / f"lexical-{reopened.store.generation}").is_dir()
    reopened.close()
