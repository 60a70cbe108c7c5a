"""Held-out cut-out sentences judged over the collection without them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ingest.chunking import Chunker
from ingest.pipeline import IngestJob
from rag.collection import Collection
from rag.embedding import HashEmbedder
from rag.retrieval import Searcher
from rag.tune.cloze import cloze_candidates
from rag.tune.heldout import held_out_candidates, ndcg_at_10, top_rows
from rag.tune.queries import TrainQuery, self_supervised_queries


def test_cut_out_sentences_are_gone_from_what_the_test_searches(hashed) -> None:
    searcher, _ = hashed
    collection = searcher.collection
    before = collection.store.live_texts()
    queries = [q for q in self_supervised_queries(collection, 40, seed=2, rare_share=0.0) if q.cut]
    held_out = queries[:12]
    ids = {chunk.id for chunk in collection.store.chunks(before[0].tolist()).values()}
    fair = cloze_candidates(searcher, held_out, depth=10)
    assert [item.query for item in fair] == held_out
    for item in fair:
        assert len(item.texts) == len(item.units) == 10
        assert not any(query.cut in text for query in held_out for text in item.texts)
        # Judged by passage: the units are chunk ids.
        assert set(item.units) <= ids

    # With the sentence still in its passage, every query finds that passage first; without it,
    # the passage has to be found by the rest of what it says.
    def score(found) -> float:
        return ndcg_at_10(
            {i.query.qid: list(i.units) for i in found}, {q.qid: q.relevant for q in held_out}
        )

    verbatim = held_out_candidates(searcher, held_out, depth=10)
    assert score(verbatim) == 1.0 and score(fair) < 1.0
    # The collection itself is not touched.
    after = collection.store.live_texts()
    assert (before[0] == after[0]).all() and before[1] == after[1]


def test_best_rows_are_a_full_sorts_first_rows() -> None:
    scores = np.random.default_rng(0).random(10_000).astype(np.float32)
    assert np.array_equal(top_rows(scores, 30), np.argsort(-scores, kind="stable")[:30])
    assert np.array_equal(top_rows(scores[:20], 30), np.argsort(-scores[:20], kind="stable"))


def test_with_nothing_cut_out_the_test_ranks_as_search_does(
    tmp_path: Path, squad_paragraphs
) -> None:
    from rag.settings import Settings

    # Files of six paragraphs each: documents of many chunks, which the document prior reorders.
    folder = tmp_path / "docs"
    folder.mkdir()
    for n in range(4):
        group = squad_paragraphs[n * 6 : n * 6 + 6]
        text = "\n\n".join(str(p["context"]) for p in group)
        (folder / f"d{n}.md").write_text(f"# {group[0]['title']}\n\n{text}\n")
    embedder = HashEmbedder()
    settings = Settings.load(
        index_dir=tmp_path / "indexes", progress=False, embedding_model=embedder.name
    )
    IngestJob(settings, embedder=embedder, chunker=Chunker(60, 10)).run_files("t", [folder])
    queries = [
        TrainQuery(f"q{n}", str(p["questions"][0]), (), frozenset(), "questions", passages=True)
        for n, p in enumerate(squad_paragraphs[:24:2])
    ]
    plain = settings.model_copy(update={"document_prior": 0.0})
    with Collection.open(settings.index_dir, "t") as collection:
        searcher = Searcher(collection, settings, embedder=embedder, reranker=None)
        unweighted = Searcher(collection, plain, embedder=embedder, reranker=None)
        moved = 0
        for item in cloze_candidates(searcher, queries, depth=10):
            hits = searcher.retrieve(item.query.text, 10, "hybrid")
            assert list(item.units) == [hit.chunk.id for hit in hits]
            before = unweighted.retrieve(item.query.text, 10, "hybrid")
            moved += [hit.chunk.id for hit in before] != list(item.units)
    assert moved  # the prior changed some rankings, and the test's first stage followed
