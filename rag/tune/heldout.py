"""Held-out queries: split off by a hash of their ids, and scored before and after training.

    train, held_out = split_held_out(queries, 0.2)
    candidates = held_out_candidates(searcher, held_out, depth=30)   # what a reranker sees
    scores = evaluate_reranking(candidates, reranker)                 # RerankScores
    dense_ndcgs(query_vectors, chunk_keys, chunk_vectors, chunk_of, held_out)  # for a retriever

All scores are binary nDCG@10, judged per query on its unit: a document, or a passage. A
document's title never serves as a held-out query: the first stage finds a document by its title
almost every time, so such queries would tell nothing about a reranker.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from rag.errors import ConfigError
from rag.rerank import Fusion
from rag.retrieval import Searcher
from rag.tune.queries import TITLE_ORIGIN, TrainQuery, prime
from rag.types import Chunk

FUSION_WEIGHTS = tuple(round(0.1 * n, 1) for n in range(11))
# Resamples of the held-out queries for the interval of reranking's gain.
BOOTSTRAP = 2000


def split_held_out(
    queries: Sequence[TrainQuery], fraction: float, limit: int | None = None
) -> tuple[list[TrainQuery], list[TrainQuery]]:
    """(train, held-out) by a hash of each query id: stable across runs and machines. Title
    queries always train."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"held-out fraction must be between 0 and 1, got {fraction}")
    train: list[TrainQuery] = []
    held: list[TrainQuery] = []
    for query in queries:
        digest = hashlib.sha256(query.qid.encode("utf-8")).digest()
        bucket = int.from_bytes(digest[:4], "big") / 2**32
        (held if bucket < fraction and query.origin != TITLE_ORIGIN else train).append(query)
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
    """Mean nDCG@10 of rankings of units (sources, or chunk ids) over the queries that have a
    relevant unit; a unit counts at its first (best) position."""
    values = [query_ndcg(rankings[qid], relevant[qid]) for qid in rankings if relevant.get(qid)]
    return round(float(np.mean(values)), 4) if values else 0.0


def query_ndcg(ranking: Sequence[str], relevant: frozenset[str]) -> float:
    """Binary nDCG@10 of one ranking of units; a unit repeated counts at its first position."""
    seen: set[str] = set()
    gain = 0.0
    for unit in ranking:
        if unit in seen:
            continue
        seen.add(unit)
        if len(seen) > 10:
            break
        if unit in relevant:
            gain += 1.0 / math.log2(len(seen) + 1)
    ideal = sum(1.0 / math.log2(n + 2) for n in range(min(len(relevant), 10)))
    return gain / ideal if ideal else 0.0


@dataclass(frozen=True)
class RerankScores:
    """Held-out nDCG@10: first stage alone, the reranker alone, and fused at the best weight;
    and the gain of fusing over the first stage as it would show on queries that did not choose
    the weight (cross-fitted), with its 95 % bootstrap interval."""

    first_stage: float
    reranker: float
    fused: float
    weight: float
    queries: int
    gain: float = 0.0
    gain_low: float = 0.0
    gain_high: float = 0.0

    @property
    def helps(self) -> bool:
        """Whether reranking clearly helps: the whole interval of its gain lies above zero."""
        return self.gain_low > 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "first_stage_ndcg@10": self.first_stage,
            "reranker_ndcg@10": self.reranker,
            "fused_ndcg@10": self.fused,
            "fusion_weight": self.weight,
            "queries": self.queries,
            "gain": self.gain,
            "gain_interval": [self.gain_low, self.gain_high],
            "helps": self.helps,
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
    weight wins (ties go to the lower weight).

    Picking the best of eleven weights on the same queries flatters it, so the gain the guard
    reads is cross-fitted: the queries are split in two halves, each half is fused at the weight
    the other half chose, and the per-query gains over the first stage are resampled (bootstrap)
    for a 95 % interval. Reranking is judged to help only when that interval lies above zero."""
    first = [query_ndcg(item.units, item.query.relevant) for item in candidates]
    fused: dict[float | None, list[float]] = {}
    raw: list[list[float]] = []
    for item in tqdm(candidates, desc="held-out", unit="query", disable=not progress):
        raw.append(reranker.score(item.query.text, item.texts))
    for weight in (None, *FUSION_WEIGHTS):
        fused[weight] = []
        for item, scores in zip(candidates, raw, strict=True):
            mixed = scores if weight is None else Fusion(weight, fusion_k).fuse(scores)
            order = sorted(range(len(scores)), key=lambda i: (-mixed[i], i))
            fused[weight].append(query_ndcg([item.units[i] for i in order], item.query.relevant))
    best = _best_weight(fused, range(len(candidates)))
    gains = _cross_fitted_gains(fused, first)
    low, high = bootstrap_interval(gains)
    return RerankScores(
        first_stage=rounded_mean(first),
        reranker=rounded_mean(fused[None]),
        fused=rounded_mean(fused[best]),
        weight=best,
        queries=len(candidates),
        gain=rounded_mean(gains),
        gain_low=low,
        gain_high=high,
    )


def _best_weight(fused: Mapping[float | None, Sequence[float]], rows: Iterable[int]) -> float:
    """The fusion weight with the best mean nDCG over `rows` (ties go to the lower weight)."""
    chosen = list(rows)
    return max(FUSION_WEIGHTS, key=lambda w: (round(sum(fused[w][i] for i in chosen), 9), -w))


def _cross_fitted_gains(
    fused: Mapping[float | None, Sequence[float]], first: Sequence[float]
) -> list[float]:
    """Per query: nDCG fused at the weight the other half of the queries (drawn at random, fixed
    seed) chose, minus the first stage's (one query alone is fused at its own best weight)."""
    order = np.random.default_rng(0).permutation(len(first)).tolist()
    halves = (order[0::2], order[1::2])
    gains = [0.0] * len(first)
    for rows, others in (halves, halves[::-1]):
        weight = _best_weight(fused, others if len(others) else rows)
        for i in rows:
            gains[i] = fused[weight][i] - first[i]
    return gains


def bootstrap_interval(gains: Sequence[float]) -> tuple[float, float]:
    """95 % percentile-bootstrap interval of the mean gain (fixed seed: the same run, the same
    interval)."""
    if not gains:
        return 0.0, 0.0
    values = np.asarray(gains)
    rows = np.random.default_rng(0).integers(0, len(values), size=(BOOTSTRAP, len(values)))
    means = values[rows].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return round(float(low), 4), round(float(high), 4)


def rounded_mean(values: Sequence[float]) -> float:
    """The mean to 4 decimals (0 for none): how held-out scores are reported."""
    return round(float(np.mean(values)), 4) if len(values) else 0.0


def dense_ndcgs(
    query_vectors: np.ndarray,
    chunk_keys: np.ndarray,
    chunk_vectors: np.ndarray,
    chunk_of: Mapping[int, Chunk],
    queries: Sequence[TrainQuery],
    depth: int = 100,
) -> list[float]:
    """Each held-out query's nDCG@10 by exact inner-product search over the given chunk vectors
    (chunks by key: each query judges its own unit, the chunk's document or the chunk); queries
    without a relevant unit are left out."""
    scores = query_vectors @ chunk_vectors.T
    depth = min(depth, len(chunk_keys))
    values = []
    for row, query in enumerate(queries):
        if not query.relevant:
            continue
        top = top_rows(scores[row], depth)
        ranking = [query.unit(chunk_of[int(chunk_keys[i])]) for i in top]
        values.append(query_ndcg(ranking, query.relevant))
    return values


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Rows of the k highest scores, best first: a partition, then a sort of those k only (over a
    million chunks, 3 ms a query where a full sort takes 150 ms)."""
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind="stable")]
