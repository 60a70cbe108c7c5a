"""Training examples: each query's positive passage with hard negatives mined from the collection.

    examples = mine_negatives(searcher, train, negatives=3)   # query, positive, negatives

Hard negatives are chunks the collection's own dense and BM25 retrievers rank high that are not
relevant to the query (nor of a relevant document, when relevance is judged by document).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from rag.retrieval import Searcher
from rag.tune.queries import TrainQuery, prime


@dataclass(frozen=True)
class Example:
    """One training row: a query, a passage that answers it and passages that do not."""

    query: str
    positive: str
    negatives: tuple[str, ...]

    def __repr__(self) -> str:
        return f"Example({self.query[:40]!r}, {len(self.negatives)} negatives)"

    def to_json(self) -> dict[str, Any]:
        return {"query": self.query, "positive": self.positive, "negatives": list(self.negatives)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Example:
        return cls(str(data["query"]), str(data["positive"]), tuple(data["negatives"]))


def mine_negatives(
    searcher: Searcher,
    queries: Sequence[TrainQuery],
    negatives: int,
    depth: int = 30,
    seed: int = 0,
    progress: bool = True,
) -> list[Example]:
    """One example per (query, positive), with `negatives` passages drawn from the dense and BM25
    top `depth` (interleaved) that are not relevant (nor of a relevant document, when relevance
    is judged by document)."""
    rng = random.Random(seed)
    collection = searcher.collection
    all_positives = sorted({key for query in queries for key in query.positives})
    positive_text = {k: c.text for k, c in collection.store.chunks(all_positives).items()}
    prime(searcher, [query.text for query in queries])
    examples: list[Example] = []
    for query in tqdm(queries, desc="mine negatives", unit="query", disable=not progress):
        pool: list[str] = []
        seen: set[str] = set()
        dense = searcher.retrieve(query.text, depth, "dense")
        lexical = searcher.retrieve(query.text, depth, "bm25")
        for pair in zip(dense, lexical, strict=False):
            for hit in pair:
                if query.unit(hit.chunk) not in query.relevant and hit.chunk.id not in seen:
                    seen.add(hit.chunk.id)
                    pool.append(hit.chunk.text)
        if len(pool) < negatives:
            continue
        for key in query.positives:
            text = query.positive_text or positive_text.get(key)
            if text:
                examples.append(Example(query.text, text, tuple(rng.sample(pool, negatives))))
    rng.shuffle(examples)
    return examples
