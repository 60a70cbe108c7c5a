"""Held-out queries: the split, nDCG@10 before and after, the fusion weight and the guard."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from rag.errors import ConfigError
from rag.tune.heldout import (
    Candidates,
    dense_ndcgs,
    evaluate_reranking,
    held_out_candidates,
    ndcg_at_10,
    query_ndcg,
    split_held_out,
)
from rag.tune.queries import TrainQuery
from rag.types import Chunk


def test_held_out_split_is_stable_and_checked() -> None:
    queries = [TrainQuery(str(n), "q", (n,), frozenset({"s"}), "self") for n in range(50)]
    train, held = split_held_out(queries, 0.2)
    assert (train, held) == split_held_out(list(queries), 0.2)
    assert len(train) + len(held) == 50 and 3 <= len(held) <= 20
    _, capped = split_held_out(queries, 0.5, limit=4)
    assert len(capped) == 4
    with pytest.raises(ConfigError, match="too few to train on"):
        split_held_out(queries[:1], 0.2)
    with pytest.raises(ConfigError, match="held-out fraction must be between 0 and 1"):
        split_held_out(queries, 1.0)


class _Oracle:
    """Scores a text 1 when it is a relevant passage: a reranker that is always right."""

    def __init__(self, relevant: set[str]) -> None:
        self.relevant = relevant

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        return [1.0 if text in self.relevant else 0.0 for text in texts]


class _Constant:
    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        return [0.0] * len(texts)


def test_held_out_scoring_picks_a_fusion_weight_and_guards_against_no_gain() -> None:
    query = TrainQuery("1", "q", (1,), frozenset({"b"}), "labelled")
    candidates = [Candidates(query, ("text a", "text b"), ("a", "b"))]
    good = evaluate_reranking(candidates, _Oracle({"text b"}), progress=False)
    assert good.first_stage < good.fused == good.reranker == 1.0 and good.weight > 0
    flat = evaluate_reranking(candidates, _Constant(), progress=False)
    # Nothing gained: the best fusion is the first stage itself (weight 0), which the guard
    # (fused > first stage) refuses to register.
    assert flat.fused == flat.first_stage and flat.weight == 0.0


class _Relevant:
    """Knows each query's relevant passage (the query names it)."""

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        return [1.0 if text == f"text {query}" else 0.0 for text in texts]


class _Noisy:
    """Scores at random: a reranker that knows nothing."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        return self.rng.random(len(texts)).tolist()


def _many(count: int) -> list[Candidates]:
    """`count` queries whose relevant passage the first stage ranks first (three in four) or
    third of five."""
    units = ("a", "b", "c", "d", "e")
    return [
        Candidates(
            TrainQuery(str(n), unit, (1,), frozenset({unit}), "self"),
            tuple(f"text {u}" for u in units),
            units,
        )
        for n, unit in enumerate("c" if n % 4 == 0 else "a" for n in range(count))
    ]


def test_the_guard_wants_a_gain_it_can_trust() -> None:
    candidates = _many(60)
    right = evaluate_reranking(candidates, _Relevant(), progress=False)
    assert right.first_stage == 0.875 and right.fused == 1.0
    assert right.gain == 0.125 and 0.0 < right.gain_low < right.gain_high and right.helps
    # A reranker that knows nothing: the best of eleven fusion weights may still look better on
    # the queries that chose it, but not on the other half; the guard refuses it.
    for seed in range(5):
        noise = evaluate_reranking(candidates, _Noisy(seed), progress=False)
        assert not noise.helps and noise.gain_low <= 0.0, (seed, noise)
    assert set(right.to_json()) >= {"gain", "gain_interval", "helps"}


def test_query_ndcg_counts_a_unit_once_at_its_best_place() -> None:
    assert query_ndcg(["a", "b"], frozenset({"a"})) == 1.0
    assert query_ndcg(["b", "b", "a"], frozenset({"a"})) == 1 / np.log2(3)
    assert query_ndcg(["b"] * 3 + [str(n) for n in range(20)], frozenset({"a"})) == 0.0
    assert query_ndcg(["a"], frozenset()) == 0.0


def test_ndcg_agrees_with_ranx_as_rag_eval_retrieval_scores() -> None:
    from ranx import Qrels, Run, evaluate

    rng = np.random.default_rng(3)
    units = [f"d{n}" for n in range(30)]
    rankings = {str(q): list(rng.permutation(units)[:20]) for q in range(40)}
    relevant = {
        str(q): frozenset(rng.choice(units, size=1 + q % 4, replace=False)) for q in range(40)
    }
    run = Run({q: {u: float(20 - i) for i, u in enumerate(r)} for q, r in rankings.items()})
    qrels = Qrels({q: dict.fromkeys(docs, 1) for q, docs in relevant.items()})
    expected = round(float(evaluate(qrels, run, "ndcg@10")), 4)
    assert ndcg_at_10(rankings, relevant) == expected


def _chunk(n: int, source: str) -> Chunk:
    return Chunk(id=f"c{n}", document_id=source, source=source, page=1, start=0, end=1, text="t")


def test_dense_ndcg_ranks_documents_by_their_best_chunk() -> None:
    keys = np.array([10, 11, 12])
    vectors = np.eye(3, dtype=np.float32)
    query = TrainQuery("1", "q", (12,), frozenset({"c"}), "self")
    chunks = {10: _chunk(10, "a"), 11: _chunk(11, "b"), 12: _chunk(12, "c")}
    assert dense_ndcgs(np.array([[0, 0, 1.0]]), keys, vectors, chunks, [query]) == [1.0]
    assert dense_ndcgs(np.array([[1.0, 0.5, 0]]), keys, vectors, chunks, [query]) == [0.5]
    # Judged by passage, another chunk of the same document no longer counts.
    same_doc = {10: _chunk(10, "c"), 11: _chunk(11, "b"), 12: _chunk(12, "c")}
    by_document = TrainQuery("1", "q", (12,), frozenset({"c"}), "questions")
    by_passage = TrainQuery("1", "q", (12,), frozenset({"c12"}), "questions", passages=True)
    assert dense_ndcgs(np.array([[1.0, 0.5, 0]]), keys, vectors, same_doc, [by_document]) == [1.0]
    assert dense_ndcgs(np.array([[1.0, 0.5, 0]]), keys, vectors, same_doc, [by_passage]) == [0.5]


def test_held_out_candidates_are_first_stage_hits(hashed, squad_paragraphs) -> None:
    searcher, _ = hashed
    query = TrainQuery("1", squad_paragraphs[0]["questions"][0], (1,), frozenset(), "labelled")
    [found] = held_out_candidates(searcher, [query], depth=5)
    hits = searcher.retrieve(query.text, 5, "hybrid")
    assert found.texts == tuple(hit.chunk.text for hit in hits)
    assert found.units == tuple(hit.chunk.source for hit in hits)
