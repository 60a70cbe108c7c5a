"""Held-out cut-out sentences judged over the collection without them."""

from __future__ import annotations

import numpy as np

from rag.tune.cloze import cloze_candidates
from rag.tune.heldout import held_out_candidates, ndcg_at_10, top_rows
from rag.tune.queries import self_supervised_queries


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
