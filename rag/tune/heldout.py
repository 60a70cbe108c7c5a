"""Held-out queries: split off by a hash of their ids, and scored before and after training.

    train, held_out = split_held_out(queries, 0.2)
    candidates = held_out_candidates(searcher, held_out, depth=30)   # what a reranker sees
    scores = evaluate_reranking(candidates, reranker)                 # RerankScores
    dense_ndcg(query_vectors, chunk_keys, chunk_vectors, chunk_of, held_out)   # for a retriever

All scores are nDCG@10 (by ranx), judged per query on its unit: a document, or a passage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from rag.errors import ConfigError
from rag.rerank import Fusion
from rag.retrieval import Searcher
from rag.tune.queries import TrainQuery, prime
from rag.types import Chunk

FUSION_WEIGHTS = tuple(round(0.1 * n, 1) for n in range(11))


def split_held_out(
    queries: Sequence[TrainQuery], fraction: float, limit: int | None = None
) -> tuple[list[TrainQuery], list[TrainQuery]]:
    """(train, held-out) by a hash of each query id: stable across runs and machines."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"held-out fraction must be between 0 and 1, got {fraction}")
    train: list[TrainQuery] = []
    held: list[TrainQuery] = []
    for query in queries:
        digest = hashlib.sha256(query.qid.encode("utf-8")).digest()
        bucket = int.from_bytes(digest[:4], "big") / 2**32
        (held if bucket < fraction else train).append(query)
    if limit is not None and len(held) > limit:
        train.extend(held[limit:])
        held = held[:limit]
    if not train or not held:
        raise ConfigError(
            f"{len(queries)} queries are too few to train on and hold some out; "
            "give more queries (--max-queries) or a different --held-out fraction"
        )
    return train, held


@dataclass(frozen=True)
class Candidates:
    """A held-out query's first-stage candidates, in first-stage order, with the unit each is
    judged on (its source, or its chunk id for passage-level queries)."""

    query: TrainQuery
    texts: tuple[str, ...]
    units: tuple[str, ...]


def held_out_candidates(
    searcher: Searcher, held_out: Sequence[TrainQuery], depth: int, mode: str = "hybrid"
) -> list[Candidates]:
    """The `depth` first-stage candidates of each held-out query (what a reranker sees)."""
    prime(searcher, [query.text for query in held_out])
    found = []
    for query in held_out:
        hits = searcher.retrieve(query.text, depth, mode)
        found.append(
            Candidates(
                query,
                tuple(hit.chunk.text for hit in hits),
                tuple(query.unit(hit.chunk) for hit in hits),
            )
        )
    return found


def reranking_samples(
    candidates: Sequence[Candidates], positive_text: Mapping[int, str]
) -> list[dict[str, Any]]:
    """sentence-transformers reranking-evaluator samples: query, positives, negatives."""
    samples = []
    for item in candidates:
        positives = [item.query.positive_text or positive_text[k] for k in item.query.positives]
        positives += [
            text
            for text, unit in zip(item.texts, item.units, strict=True)
            if unit in item.query.relevant and text not in positives
        ]
        negatives = [
            text
            for text, unit in zip(item.texts, item.units, strict=True)
            if unit not in item.query.relevant
        ]
        if positives and negatives:
            samples.append({"query": item.query.text, "positive": positives, "negative": negatives})
    return samples


def ndcg_at_10(
    rankings: Mapping[str, Sequence[str]], relevant: Mapping[str, frozenset[str]]
) -> float:
    """Mean nDCG@10 (by ranx) of rankings of units (sources, or chunk ids); a unit counts at its
    first (best) position."""
    from ranx import Qrels, Run, evaluate

    run: dict[str, dict[str, float]] = {}
    for qid, sources in rankings.items():
        ranking: dict[str, float] = {}
        for source in sources:
            if source not in ranking:
                ranking[source] = float(len(sources) - len(ranking))
        run[qid] = ranking or {"<none>": 0.0}
    qrels = Qrels({qid: dict.fromkeys(docs, 1) for qid, docs in relevant.items() if docs})
    return round(float(evaluate(qrels, Run(run), "ndcg@10", make_comparable=True)), 4)


@dataclass(frozen=True)
class RerankScores:
    """Held-out nDCG@10: first stage alone, the reranker alone, and fused at the best weight."""

    first_stage: float
    reranker: float
    fused: float
    weight: float
    queries: int

    def to_json(self) -> dict[str, Any]:
        return {
            "first_stage_ndcg@10": self.first_stage,
            "reranker_ndcg@10": self.reranker,
            "fused_ndcg@10": self.fused,
            "fusion_weight": self.weight,
            "queries": self.queries,
        }


class Scorer(Protocol):
    """What held-out evaluation needs from a reranker (CrossEncoderReranker has it)."""

    def score(self, query: str, texts: Sequence[str]) -> list[float]: ...


def evaluate_reranking(
    candidates: Sequence[Candidates],
    reranker: Scorer,
    fusion_k: int = Fusion.k,
    progress: bool = True,
) -> RerankScores:
    """Score the candidates once, then nDCG@10 of the first stage, the reranker, and the fusion
    (with constant `fusion_k`, the `rrf_k` setting) at each of FUSION_WEIGHTS; the best fused
    weight wins (ties go to the lower weight)."""
    relevant = {item.query.qid: item.query.relevant for item in candidates}
    first = {item.query.qid: list(item.units) for item in candidates}
    scores: dict[str, list[float]] = {}
    for item in tqdm(candidates, desc="held-out", unit="query", disable=not progress):
        scores[item.query.qid] = reranker.score(item.query.text, item.texts)

    def ranked(weight: float | None) -> dict[str, list[str]]:
        out = {}
        for item in candidates:
            raw = scores[item.query.qid]
            fused = raw if weight is None else Fusion(weight, fusion_k).fuse(raw)
            order = sorted(range(len(raw)), key=lambda i: (-fused[i], i))
            out[item.query.qid] = [item.units[i] for i in order]
        return out

    by_weight = {weight: ndcg_at_10(ranked(weight), relevant) for weight in FUSION_WEIGHTS}
    best = max(FUSION_WEIGHTS, key=lambda w: (by_weight[w], -w))
    return RerankScores(
        first_stage=ndcg_at_10(first, relevant),
        reranker=ndcg_at_10(ranked(None), relevant),
        fused=by_weight[best],
        weight=best,
        queries=len(candidates),
    )


def dense_ndcg(
    query_vectors: np.ndarray,
    chunk_keys: np.ndarray,
    chunk_vectors: np.ndarray,
    chunk_of: Mapping[int, Chunk],
    queries: Sequence[TrainQuery],
    depth: int = 100,
) -> float:
    """Held-out nDCG@10 of exact inner-product search over the given chunk vectors (chunks by
    key: each query judges its own unit, the chunk's document or the chunk)."""
    scores = query_vectors @ chunk_vectors.T
    depth = min(depth, len(chunk_keys))
    rankings: dict[str, list[str]] = {}
    for row, query in enumerate(queries):
        top = np.argpartition(-scores[row], depth - 1)[:depth]
        top = top[np.argsort(-scores[row][top], kind="stable")]
        rankings[query.qid] = [query.unit(chunk_of[int(chunk_keys[i])]) for i in top]
    return ndcg_at_10(rankings, {query.qid: query.relevant for query in queries})
