"""`rag tune` end to end with the real MiniLM on a few SQuAD paragraphs (a handful of steps), and
what search does with its results: the registered reranker, and an embedder swap under a live
searcher (the swap itself is tested in tests/rag/test_collection.py)."""

from __future__ import annotations

import json
import shutil
from contextlib import closing
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ingest.pipeline import IngestJob
from rag.cli import cli
from rag.collection import Collection, EmbedderInfo
from rag.errors import ConfigError
from rag.manifest import RegisteredReranker
from rag.models import packaged_path
from rag.rerank import CrossEncoderReranker, Fusion, MaxSimReranker, multi_vector_model
from rag.retrieval import RERANK_CACHE, Searcher
from rag.tune import TuneOptions, TuneReport, commands, tune_reranker, tune_retriever
from rag.tune.heldout import RerankScores
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


def force_held_out_gain(monkeypatch: pytest.MonkeyPatch, gain: bool) -> None:
    """Make the tuned reranker's held-out scores beat the first stage (`gain`) or only match it,
    whatever one training step did: the real evaluation still runs, its verdict is replaced."""
    real = commands.evaluate_reranking

    def forced(candidates, reranker, *args, **kwargs) -> RerankScores:
        scores = real(candidates, reranker, *args, **kwargs)
        if gain:
            return replace(scores, first_stage=0.25, fused=0.75, weight=0.5, gain=0.5, gain_low=0.4)
        return replace(
            scores, first_stage=0.5, fused=0.5, weight=0.0, gain=0.0, gain_low=-0.1, gain_high=0.1
        )

    monkeypatch.setattr(commands, "evaluate_reranking", forced)


def tune_a_reranker(squad, minilm, arch: str) -> tuple[TuneReport, dict]:
    """`tune_reranker` in the smallest run; what every run leaves is checked, the report and the
    held-out scores returned."""
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
    # The guard: registered exactly when the interval of the gain lies above zero.
    assert report.registered == after["helps"] == (after["gain_interval"][0] > 0)
    return report, after


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["maxsim", "cross-encoder"])
def test_tune_reranker_trains_cards_and_registers_a_winner(
    squad, minilm, arch, monkeypatch
) -> None:
    force_held_out_gain(monkeypatch, gain=True)
    report, after = tune_a_reranker(squad, minilm, arch)
    settings, _, _ = squad
    assert report.registered
    with closing(Collection.open(settings.index_dir, "squad")) as collection:
        registered = collection.registered_reranker()
        assert registered and Path(registered.path) == report.model_path
        assert registered.arch == arch
        assert report.message.startswith("registered reranker")
        # Search loads it as what it is, with the fusion weight the held-out queries picked.
        reranker = Searcher(collection, settings).reranker_choice().reranker
        expected = MaxSimReranker if arch == "maxsim" else CrossEncoderReranker
        assert isinstance(reranker, expected)
        assert reranker.fusion == Fusion(after["fusion_weight"], 60)
        if arch == "maxsim":  # registration encoded every passage for the reranker's cache
            assert Searcher(collection, settings).warm_reranker() == 0


@pytest.mark.slow
def test_tune_reranker_saves_but_does_not_register_a_loser(
    squad, minilm, monkeypatch, capfd
) -> None:
    force_held_out_gain(monkeypatch, gain=False)
    report, _ = tune_a_reranker(squad, minilm, "maxsim")
    # sentence-transformers' bar for its own model card's examples (the `rag` command turns
    # transformers' bars off; this one it cannot reach) stays off the terminal.
    assert "widget" not in capfd.readouterr().err
    settings, _, _ = squad
    assert not report.registered
    with closing(Collection.open(settings.index_dir, "squad")) as collection:
        assert collection.registered_reranker() is None
    assert report.message.startswith("not registered: the tuned reranker is not clearly better")
    assert (report.model_path / "rag-tune.json").is_file()


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


def force_dense_gain(monkeypatch: pytest.MonkeyPatch, gain: bool) -> list[np.ndarray]:
    """Make the tuned embedder's held-out dense nDCG@10 beat the current one's on every query
    (`gain`) or only match it: both are still computed, in that order, over the collection
    without the held-out sentences, and their values replaced."""
    real = commands.dense_ndcgs
    verdicts = iter([0.25, 0.75] if gain else [0.5, 0.5])
    seen = []

    def forced(query_vectors, keys, vectors, chunk_of, queries, *args, **kwargs) -> list[float]:
        values = real(query_vectors, keys, vectors, chunk_of, queries, *args, **kwargs)
        seen.append(vectors)
        return [next(verdicts)] * len(values)

    monkeypatch.setattr(commands, "dense_ndcgs", forced)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize(
    ("gain", "labelled"),
    [(True, False), (False, True)],
    ids=["gain-self-supervised", "no-gain-labelled"],
)
def test_tune_retriever_reembeds_and_swaps_only_a_winner(
    squad, minilm, monkeypatch, gain, labelled
) -> None:
    judged = force_dense_gain(monkeypatch, gain)
    settings, queries, qrels = squad
    collection = Collection.open(settings.index_dir, "squad")
    try:
        stored = np.concatenate(
            [v for _, v in collection.store.live_vectors(collection.embedder.dimension)]
        )
    finally:
        collection.close()
    labels = {"queries_file": queries, "qrels_file": qrels} if labelled else {}
    options = TuneOptions(**labels, **{**TINY, "batch_size": 4})
    report = tune_retriever(settings, "squad", options, embedder=minilm)
    card = report.card
    assert card["reembedded_chunks"] > 0 and card["training"]["steps"] == 1
    metrics = card["metrics"]
    before, after = metrics["before"]["dense_ndcg@10"], metrics["after"]["dense_ndcg@10"]
    low, high = metrics["gain_interval"]
    assert report.registered == (low > 0) == metrics["helps"] == gain
    assert (after > before) == gain and low <= metrics["gain"] <= high
    # Held-out sentences cut from passages were taken out of them, and those passages embedded
    # again, before the current embedder was judged; real questions leave every passage as is.
    changed_rows = np.flatnonzero(np.any(judged[0] != stored, axis=1))
    assert metrics["held_out_test"] == "cloze"
    assert len(changed_rows) == metrics["held_out_passages_changed"]
    assert (metrics["held_out_passages_changed"] == 0) == labelled
    if gain:
        assert report.message.startswith("'squad' now uses the tuned embedder")
    else:
        assert report.message.startswith(
            "not registered: the tuned embedder is not clearly better than the current one"
        )
        assert "95 % interval +0.0000 to +0.0000" in report.message
    collection = Collection.open(settings.index_dir, "squad")
    try:
        assert collection.embedder.name == (str(report.model_path) if gain else MINILM)
        assert collection.manifest.pending_embedder is None
        hits = Searcher(collection, settings, reranker=None).search("Super Bowl 50").hits
        assert hits
    finally:
        collection.close()


def test_tune_options_are_checked(settings, tmp_path: Path) -> None:
    """Options are checked before the collection is opened: none is needed (nor exists) here."""
    queries = tmp_path / "queries.jsonl"
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
        # Every passage encoded once into the collection's cache; then nothing is left to do.
        searcher = Searcher(collection, settings)
        assert searcher.warm_reranker() == collection.store.counts()[1] - len(texts)
        assert searcher.warm_reranker() == 0
        assert (collection.path / RERANK_CACHE).is_file()
    finally:
        collection.close()
    info = CliRunner().invoke(
        cli, ["collections", "info", "squad"], env={"RAG_INDEX_DIR": str(settings.index_dir)}
    )
    assert "reranker:  models/reranker-m (maxsim, fusion weight 0.6)" in info.output


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
