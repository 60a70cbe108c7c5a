"""Ranking pages rather than chunks on SEC filings: an experiment, not the product's search.

    .venv/bin/python benchmarks/financebench.py --variants rag --work /tmp/fb      # builds /tmp/fb
    .venv/bin/python benchmarks/financebench_pages.py --index /tmp/fb/rag/idx

Over the collection `financebench.py` built, every question is answered by exact dense scoring
of all chunks, and pages are ranked in several ways: by their best chunk (the product's
`chunks_per_page = 1`), by a page vector (the normalised mean of its chunks' vectors), by both
fused, with BM25 fused in, and with the query moved towards its top 3 chunks (pseudo-relevance
feedback). Reports page@5: the gold filing's gold evidence page among the top 5 pages.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePath

import numpy as np
from financebench import DATA

from rag.collection import Collection
from rag.questions import Question, read_questions
from rag.retrieval import Searcher
from rag.settings import Settings


class Pages:
    """A collection's chunk vectors grouped by page (file name, page number)."""

    def __init__(self, collection: Collection) -> None:
        dimension = collection.embedder.dimension
        parts = list(collection.store.live_vectors(dimension))
        self.keys = np.concatenate([keys for keys, _ in parts])
        self.vectors = np.concatenate([vectors for _, vectors in parts])
        chunks = collection.store.chunks(self.keys.tolist())
        numbers: dict[tuple[str, int], int] = {}
        self.page = np.empty(len(self.keys), dtype=np.int64)
        for row, key in enumerate(self.keys):
            chunk = chunks[int(key)]
            self.page[row] = numbers.setdefault(
                (PurePath(chunk.source).name, chunk.page), len(numbers)
            )
        self.names = list(numbers)
        self.row_of = {int(key): row for row, key in enumerate(self.keys)}
        means = np.zeros((len(numbers), dimension), np.float32)
        np.add.at(means, self.page, self.vectors)
        self.page_vectors = means / np.linalg.norm(means, axis=1, keepdims=True)

    def best_chunk(self, chunk_scores: np.ndarray) -> np.ndarray:
        best = np.full(len(self.names), -np.inf)
        np.maximum.at(best, self.page, chunk_scores)
        return best


def order(scores: np.ndarray) -> np.ndarray:
    ranked = np.argsort(-scores, kind="stable")
    return ranked[np.isfinite(scores[ranked])]


def fused(rankings: Sequence[np.ndarray], size: int, k: int = 60, depth: int = 1000) -> np.ndarray:
    """Reciprocal rank fusion of page rankings, as scores."""
    out = np.zeros(size)
    for ranking in rankings:
        top = ranking[:depth]
        out[top] += 1.0 / (k + np.arange(1, len(top) + 1))
    return out


def found(ranking: np.ndarray, pages: Pages, question: Question, k: int = 5) -> bool:
    gold = (PurePath(str(question.document)).name, question.page)
    return any(pages.names[p] == gold for p in ranking[:k])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=Path("/tmp/fb/rag/idx"))
    parser.add_argument("--collection", default="fb")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    settings = Settings.load(index_dir=args.index, progress=False, rerank=False)
    questions = read_questions(args.data / "questions.jsonl")
    hits: dict[str, list[bool]] = defaultdict(list)
    with Collection.open(args.index, args.collection) as collection:
        searcher = Searcher(collection, settings, reranker=None)
        pages = Pages(collection)
        size = len(pages.names)
        queries = searcher.embedder.embed([q.question for q in questions])
        for question, query in zip(questions, queries, strict=True):
            scores = pages.vectors @ query
            dense = pages.best_chunk(scores)
            by_vector = pages.page_vectors @ query
            _, lexical_keys = collection.lexical_index().search(question.question, 1000)
            lexical = np.full(len(pages.keys), -np.inf)
            for rank, key in enumerate(lexical_keys):
                lexical[pages.row_of[int(key)]] = -rank
            bm25 = order(pages.best_chunk(lexical))
            top3 = pages.vectors[np.argsort(-scores)[:3]].mean(axis=0)
            variants = {
                "best chunk (dense)": order(dense),
                "best chunk, BM25 fused (hybrid)": order(fused([order(dense), bm25], size)),
                "page vector": order(by_vector),
                "best chunk + page vector, fused": order(
                    fused([order(dense), order(by_vector)], size)
                ),
                "best chunk + page vector + BM25, fused": order(
                    fused([order(dense), order(by_vector), bm25], size)
                ),
                "best chunk + 0.5 page vector cosine": order(dense + 0.5 * by_vector),
                "best chunk + 1.0 page vector cosine": order(dense + 1.0 * by_vector),
            }
            for beta in (0.5, 1.0):
                moved = query + beta * top3
                moved /= np.linalg.norm(moved)
                variants[f"query moved to its top 3 chunks, {beta}"] = order(
                    pages.best_chunk(pages.vectors @ moved)
                )
            for name, ranking in variants.items():
                hits[name].append(found(ranking, pages, question))
    results = {name: round(sum(v) / len(v), 4) for name, v in hits.items()}
    for name, share in results.items():
        print(f"{name:45s} page@5 {share:.3f}")
    if args.out:
        args.out.write_text(json.dumps({"questions": len(questions), "page@5": results}, indent=2))


if __name__ == "__main__":
    main()
