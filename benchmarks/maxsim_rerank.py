"""A training-free reranker on SciFact: MaxSim over MiniLM token embeddings, alone and fused with
hybrid retrieval by weighted reciprocal rank (the weight picked on *train* queries).

    nice -n 19 python benchmarks/maxsim_rerank.py --index-dir /tmp/tune-exp/base \
        --out benchmarks/results/maxsim_rerank.json

The collection `scifact` must exist under --index-dir (`rag eval retrieval` builds it). Scores
are document-level nDCG@10 over each query's hybrid top `rerank_depth` (20) chunks, the same
candidates for every config, so the first-stage row is the comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest.beir import BeirDataset  # noqa: E402
from rag.collection import Collection  # noqa: E402
from rag.rerank import Fusion, MaxSimReranker  # noqa: E402
from rag.retrieval import Searcher  # noqa: E402
from rag.settings import DEFAULT_EMBEDDER, Settings  # noqa: E402
from rag.tune.heldout import FUSION_WEIGHTS, held_out_candidates, ndcg_at_10  # noqa: E402
from rag.tune.queries import TrainQuery  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "scifact"


def judged(data: BeirDataset, split: str, limit: int | None) -> list[TrainQuery]:
    qrels = data.qrels(split)
    queries = sorted(data.queries(split).items())[:limit]
    return [
        TrainQuery(
            qid,
            text,
            (),
            frozenset(data.source_of(doc) for doc, grade in qrels[qid].items() if grade > 0),
            "labelled",
        )
        for qid, text in queries
    ]


def curve(searcher: Searcher, reranker: MaxSimReranker, queries: list[TrainQuery]) -> dict:
    candidates = held_out_candidates(searcher, queries, searcher.settings.rerank_depth)
    started = time.perf_counter()
    scores = {c.query.qid: reranker.score(c.query.text, c.texts) for c in candidates}
    seconds = (time.perf_counter() - started) / len(candidates)
    relevant = {c.query.qid: c.query.relevant for c in candidates}

    def ranked(weight: float | None) -> dict[str, list[str]]:
        out = {}
        for c in candidates:
            raw = scores[c.query.qid]
            fused = raw if weight is None else Fusion(weight).fuse(raw)
            out[c.query.qid] = [
                c.units[i] for i in sorted(range(len(raw)), key=lambda i: -fused[i])
            ]
        return out

    return {
        "queries": len(candidates),
        "first_stage": ndcg_at_10({c.query.qid: list(c.units) for c in candidates}, relevant),
        "maxsim_alone": ndcg_at_10(ranked(None), relevant),
        "fused_by_weight": {str(w): ndcg_at_10(ranked(w), relevant) for w in FUSION_WEIGHTS},
        "rerank_seconds_per_query": round(seconds, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--train-queries", type=int, default=150)
    args = parser.parse_args()
    settings = Settings.load(index_dir=args.index_dir, device="cpu", progress=False)
    data = BeirDataset(DATA)
    collection = Collection.open(settings.index_dir, "scifact")
    try:
        searcher = Searcher(collection, settings, reranker=None)
        reranker = MaxSimReranker(DEFAULT_EMBEDDER, device="cpu")
        train = curve(searcher, reranker, judged(data, "train", args.train_queries))
        print("train", json.dumps(train), flush=True)
        weights = train["fused_by_weight"]
        best = max(weights, key=lambda w: (weights[w], -float(w)))
        test = curve(searcher, reranker, judged(data, "test", None))
        print("test", json.dumps(test), flush=True)
    finally:
        collection.close()
    result = {
        "reranker": f"MaxSim over {DEFAULT_EMBEDDER} token embeddings (no training)",
        "weight_chosen_on_train": float(best),
        "test_fused_at_chosen_weight": test["fused_by_weight"][best],
        "train": train,
        "test": test,
        "load_average": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
