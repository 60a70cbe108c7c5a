"""Does the tuning guard tell? Synthetic held-out queries against real questions, one reranker.

    python benchmarks/tune_guard.py -c squad-develop \
        --questions .cache/squad-develop/questions.jsonl --rare-share 0 0.5

For each share of rare words dropped from the cut-out sentences (0: the sentence as it stands),
the held-out synthetic queries `rag tune reranker` would judge a reranker on: their first-stage
nDCG@10 and the reranker's cross-fitted gain with its 95 % interval. Then the same reranker on the
collection's real questions (judged by passage, as `rag tune --questions` does). A guard that
tells gives the same verdict as the real questions. The reranker is the untrained MaxSim over the
packaged MiniLM, or `--reranker PATH` (a model `rag tune` saved).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.collection import Collection
from rag.questions import read_questions
from rag.rerank import MaxSimReranker
from rag.retrieval import Searcher
from rag.settings import DEFAULT_EMBEDDER, Settings
from rag.token_cache import TokenCache
from rag.tune.cloze import cloze_candidates
from rag.tune.commands import model_stamp
from rag.tune.heldout import evaluate_reranking, held_out_candidates, split_held_out
from rag.tune.queries import (
    labelled_queries,
    question_queries,
    read_qrels,
    read_queries,
    self_supervised_queries,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--collection", required=True)
    parser.add_argument("--questions", type=Path, help="real questions (a `rag eval hits` file)")
    parser.add_argument("--beir", type=Path, help="or a BEIR folder: queries.jsonl, qrels/")
    parser.add_argument("--split", default="test", help="the BEIR qrels split to judge on")
    parser.add_argument("--rare-share", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--reranker", default=DEFAULT_EMBEDDER)
    parser.add_argument("--max-queries", type=int, default=2000)
    parser.add_argument(
        "--verbatim",
        action="store_true",
        help="judge the synthetic queries as `rag tune` did before: over the collection as it "
        "is, each cut-out sentence still in its passage",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    settings = Settings.load(device="cpu", progress=False)
    collection = Collection.open(settings.index_dir, args.collection)
    searcher = Searcher(collection, settings, reranker=None)
    # Passages recur across queries: each is encoded once, keyed by the model's weights (a
    # folder trained again under the same name must not read the last one's encodings).
    cache = TokenCache(
        collection.path / "cache" / "tune-guard-tokens.sqlite", weights(args.reranker)
    )
    reranker = MaxSimReranker(args.reranker, device="cpu", cache=cache)
    depth = settings.rerank_depth
    result: dict = {
        "collection": args.collection,
        "reranker": args.reranker,
        "held_out": "verbatim" if args.verbatim else "cloze",
        "synthetic": {},
    }
    for share in args.rare_share:
        queries = self_supervised_queries(collection, args.max_queries, rare_share=share)
        _, held_out = split_held_out(queries, 0.2, 200)
        started = time.perf_counter()
        judged = held_out_candidates if args.verbatim else cloze_candidates
        scores = evaluate_reranking(judged(searcher, held_out, depth), reranker)
        result["synthetic"][str(share)] = scores.to_json() | {
            "seconds": round(time.perf_counter() - started, 1),
            "example_queries": [q.text for q in held_out[:5]],
        }
        print(share, json.dumps(result["synthetic"][str(share)]), flush=True)
    real = []
    if args.questions:
        real = question_queries(searcher, read_questions(args.questions))
    elif args.beir:
        queries = read_queries(args.beir / "queries.jsonl")
        real = labelled_queries(
            searcher, queries, read_qrels(args.beir / "qrels" / f"{args.split}.tsv")
        )
    if real:
        scores = evaluate_reranking(held_out_candidates(searcher, real, depth), reranker)
        result["questions"] = scores.to_json()
        print("questions", json.dumps(result["questions"]), flush=True)
    collection.close()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def weights(name: str) -> str:
    """A key for the model's weights: a hub id as it is, a folder with a digest of its files."""
    return f"{name}|{model_stamp(name)}" if Path(name).is_dir() else name


if __name__ == "__main__":
    main()
