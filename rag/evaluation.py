"""Retrieval metrics over judged queries, computed by ranx (not by hand).

results = evaluate_retrieval(searcher, queries, qrels, doc_id_of)
results["hybrid"]["ndcg@10"]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from tqdm import tqdm

from rag.retrieval import Searcher
from rag.types import Hit

logger = logging.getLogger(__name__)

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
# Config name -> (search mode, rerank?). The names are what `rag eval retrieval --json` prints.
CONFIGS: dict[str, tuple[str, bool]] = {
    "dense": ("dense", False),
    "bm25": ("bm25", False),
    "hybrid": ("hybrid", False),
    "dense+rerank": ("dense", True),
    "hybrid+rerank": ("hybrid", True),
}


def document_ranking(
    hits: list[Hit], doc_id_of: Callable[[str], str], depth: int
) -> dict[str, float]:
    """Chunk hits to a document ranking: each document ranked where its best chunk is."""
    ranking: dict[str, float] = {}
    for hit in hits:
        doc = doc_id_of(hit.chunk.source)
        if doc not in ranking:
            # Scores decrease with rank, so ranx sorts exactly as the hits were ranked.
            ranking[doc] = float(depth - len(ranking))
            if len(ranking) == depth:
                break
    return ranking


def evaluate_retrieval(
    searcher: Searcher,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    doc_id_of: Callable[[str], str],
    configs: list[str] | None = None,
    depth: int = 100,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Run each config over every query and score it with ranx; configs needing a reranker are
    skipped when the searcher has none."""
    from ranx import Qrels, Run, evaluate

    names = configs or list(CONFIGS)
    has_reranker = searcher.reranker().reranker is not None
    # Chunks per document vary; fetch enough chunks that `depth` distinct documents come back.
    chunk_depth = depth * 3
    ranx_qrels = Qrels({qid: dict(docs) for qid, docs in qrels.items() if qid in queries})
    results: dict[str, dict[str, float]] = {}
    for name in names:
        mode, rerank = CONFIGS[name]
        if rerank and not has_reranker:
            logger.info("skipping %s: the collection has no reranker", name)
            continue
        run: dict[str, dict[str, float]] = {}
        for qid, text in tqdm(queries.items(), desc=name, unit="query", disable=not progress):
            hits = searcher.retrieve(text, chunk_depth, mode)
            if rerank:
                reranker = searcher.reranker().reranker
                if reranker is not None:
                    head = reranker.rerank(text, hits[: searcher.settings.rerank_depth])
                    hits = head + hits[searcher.settings.rerank_depth :]
            run[qid] = document_ranking(hits, doc_id_of, depth) or {"<none>": 0.0}
        scores = evaluate(ranx_qrels, Run(run), list(METRICS), make_comparable=True)
        results[name] = {metric: round(float(scores[metric]), 4) for metric in METRICS}
    return results
