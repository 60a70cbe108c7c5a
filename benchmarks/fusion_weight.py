"""Hybrid fusion, by scores or by reciprocal rank, at each dense weight; and whether a
collection's own synthetic queries could choose the weight.

    python benchmarks/fusion_weight.py --index-dir /tmp/fb/rag/idx --collection fb \
        --questions ../shared/data/financebench-dev/questions.jsonl
    python benchmarks/fusion_weight.py --collection scifact --beir ../shared/data/scifact
    python benchmarks/fusion_weight.py --collection squad-dev \
        --questions .cache/squad-held-out/questions.jsonl

Each query's dense and BM25 top `--depth` are fused by the product's own functions
(rag.retrieval): `score_fusion` (min-max normalised scores, the default since 2026-12-02) and
`reciprocal_rank_fusion` (the default before), with the dense side weighted w and BM25 1 - w, for
w from 0 (BM25 alone) through 0.5 (the default) to 1 (dense alone). Every fused ranking is scored
on the real questions (hit@5 after `chunks_per_page`, as `rag eval hits` counts them, or nDCG@10
of documents on a BEIR set) and on the collection's self-supervised queries (what `rag tune` has
on a collection without labels: a sentence cut out of a chunk with its rarest words dropped, or a
document title), nDCG@10: if the weight best on those were good on the real questions, `rag tune`
could choose it per collection.
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

WEIGHTS = (0.0, 0.25, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


# A query's ranking by one retriever: chunk numbers (see `rankings`) and scores, best first.
Ranked = tuple[list[int], list[float]]


def rankings(
    searcher: Any, texts: Sequence[str], depth: int, chunks: list[Any]
) -> list[tuple[Ranked, Ranked]]:
    """Each text's dense and BM25 rankings; a chunk's number is its place in `chunks`, which
    gets every chunk found."""
    from tqdm import tqdm

    number: dict[str, int] = {}
    out = []
    for text in tqdm(texts, unit="query", leave=False):
        ranked = []
        for mode in ("dense", "bm25"):
            hits = searcher.retrieve(text, depth, mode)
            for hit in hits:
                if hit.chunk.id not in number:
                    number[hit.chunk.id] = len(chunks)
                    chunks.append(hit.chunk)
            ranked.append(([number[hit.chunk.id] for hit in hits], [hit.score for hit in hits]))
        out.append((ranked[0], ranked[1]))
    return out


def sweep(
    ranked: Sequence[tuple[Ranked, Ranked]],
    score: Callable[[int, list[int]], float],
    k: int,
) -> dict[str, Any]:
    """Mean score of each fusion and weight over the queries, through the product's own fusion
    functions (rag.retrieval)."""
    from rag.retrieval import reciprocal_rank_fusion, score_fusion

    def by_scores(dense: Ranked, lexical: Ranked, w: float) -> list[int]:
        return [key for key, _ in score_fusion([dense, lexical], [w, 1.0 - w])]

    def by_ranks(dense: Ranked, lexical: Ranked, w: float) -> list[int]:
        return [key for key, _ in reciprocal_rank_fusion([dense[0], lexical[0]], k, [w, 1.0 - w])]

    def mean(fused: Callable[[Ranked, Ranked, float], list[int]], w: float) -> float:
        values = [score(i, fused(d, b, w)) for i, (d, b) in enumerate(ranked)]
        return round(sum(values) / len(values), 4)

    paired = [
        (score(i, by_scores(d, b, 0.5)), score(i, by_ranks(d, b, 0.5)))
        for i, (d, b) in enumerate(ranked)
    ]
    return {
        "rrf": {str(w): mean(by_ranks, w) for w in WEIGHTS},
        "scores": {str(w): mean(by_scores, w) for w in WEIGHTS},
        # Queries that score fusion at 0.5 (the product's default) does better or worse on than
        # reciprocal rank at 0.5 (the product before).
        "scores_vs_rrf_at_0.5": {
            "better": sum(a > b for a, b in paired),
            "worse": sum(a < b for a, b in paired),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index-dir", type=Path, default=Path("indexes"))
    parser.add_argument("--collection", required=True)
    parser.add_argument("--questions", type=Path, help="A `rag eval hits` questions file.")
    parser.add_argument("--beir", type=Path, help="A BEIR data set (test queries and qrels).")
    parser.add_argument("--synthetic", type=int, default=400, help="Self-supervised queries.")
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")

    from rag.collection import Collection
    from rag.evaluation import is_gold_hit
    from rag.retrieval import Searcher, per_page_limit
    from rag.settings import Settings
    from rag.tune.heldout import query_ndcg
    from rag.tune.queries import self_supervised_queries
    from rag.types import Hit

    settings = Settings.load(index_dir=args.index_dir, progress=False, rerank=False)
    k = settings.rrf_k
    result: dict[str, Any] = {"collection": args.collection, "rrf_k": k, "weights": WEIGHTS}
    with Collection.open(settings.index_dir, args.collection) as collection:
        searcher = Searcher(collection, settings, reranker=None)
        chunks: list[Any] = []
        synthetic = self_supervised_queries(collection, args.synthetic, seed=args.seed)
        ranked = rankings(searcher, [q.text for q in synthetic], args.depth, chunks)

        def synthetic_score(i: int, ids: list[int]) -> float:
            query = synthetic[i]
            return query_ndcg([query.unit(chunks[c]) for c in ids[:30]], query.relevant)

        result["synthetic"] = {
            "queries": len(synthetic),
            "ndcg@10": sweep(ranked, synthetic_score, k),
        }
        print("synthetic", result["synthetic"], flush=True)

        if args.questions:
            from rag.questions import read_questions

            questions = read_questions(args.questions)
            real = rankings(searcher, [q.question for q in questions], args.depth, chunks)

            def hit_at_5(i: int, ids: list[int]) -> float:
                hits = [Hit(chunks[c], 0.0, "fused") for c in ids[:60]]
                top = per_page_limit(hits, settings.chunks_per_page)[:5]
                return float(any(is_gold_hit(hit, questions[i]) for hit in top))

            result["real"] = {"questions": len(questions), "hit@5": sweep(real, hit_at_5, k)}
        if args.beir:
            from ingest.beir import BeirDataset

            data = BeirDataset(args.beir)
            queries, qrels = data.queries("test"), data.qrels("test")
            qids = [qid for qid in queries if qrels.get(qid)]
            real = rankings(searcher, [queries[qid] for qid in qids], args.depth, chunks)

            def doc_ndcg(i: int, ids: list[int]) -> float:
                docs = [data.doc_id_of(chunks[c].source) for c in ids[:60]]
                relevant = frozenset(d for d, grade in qrels[qids[i]].items() if grade > 0)
                return query_ndcg(docs, relevant)

            result["real"] = {"questions": len(qids), "ndcg@10": sweep(real, doc_ndcg, k)}
        print("real", result.get("real"), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
