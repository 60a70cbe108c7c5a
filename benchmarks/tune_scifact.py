"""`rag tune` on SciFact: test nDCG@10 before and after, training time, peak memory, query cost.

Works on a copy of an already ingested SciFact collection (`rag eval retrieval` builds one), so the
original stays as it was. Labelled runs train on the *train* qrels; every figure is on *test*.

    nice -n 19 python benchmarks/tune_scifact.py retriever --labels \
        --from-index /tmp/bench/idx --index-dir /tmp/tune-exp/retriever-labelled \
        --out benchmarks/results/tune_retriever_labelled.json
    nice -n 19 python benchmarks/tune_scifact.py reranker --labels \
        --from-index /tmp/bench/idx --index-dir /tmp/tune-exp/reranker-labelled \
        --out benchmarks/results/tune_reranker_labelled.json

Without --labels the queries are synthetic (self-supervised unless an LLM backend is configured).
Run with RAG_EMBED_BACKEND=torch to compare with docs/retrieval.md (its collection used torch).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest.beir import BeirDataset  # noqa: E402
from rag.collection import Collection  # noqa: E402
from rag.evaluation import evaluate_retrieval  # noqa: E402
from rag.retrieval import Searcher  # noqa: E402
from rag.settings import Settings  # noqa: E402
from rag.tune import TuneOptions, tune_reranker, tune_retriever  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "scifact"


def test_scores(settings: Settings, configs: list[str]) -> dict[str, dict[str, float]]:
    data = BeirDataset(DATA)
    collection = Collection.open(settings.index_dir, "scifact")
    try:
        searcher = Searcher(collection, settings)
        return evaluate_retrieval(
            searcher,
            data.queries("test"),
            data.qrels("test"),
            data.doc_id_of,
            configs,
            progress=False,
        )
    finally:
        collection.close()


def query_cost(settings: Settings, queries: int) -> dict[str, float]:
    """Mean seconds per test query of the whole search call, with and without reranking."""
    texts = list(BeirDataset(DATA).queries("test").values())[:queries]
    collection = Collection.open(settings.index_dir, "scifact")
    try:
        searcher = Searcher(collection, settings)
        searcher.search(texts[0])  # warm-up: load the models
        cost = {}
        for rerank in (False, True):
            started = time.perf_counter()
            for text in texts:
                searcher.search(text, top_k=10, rerank=rerank)
            cost["rerank" if rerank else "first_stage"] = round(
                (time.perf_counter() - started) / len(texts), 4
            )
        return cost
    finally:
        collection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["reranker", "retriever"])
    parser.add_argument("--labels", action="store_true", help="Train on the train qrels.")
    parser.add_argument("--from-index", type=Path, required=True)
    parser.add_argument("--index-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--arch", default="maxsim", choices=["maxsim", "cross-encoder"])
    parser.add_argument("--loss", default="mnrl")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--max-queries", type=int, default=2000)
    parser.add_argument("--eval-queries", type=int, default=32)
    parser.add_argument("--evals", type=int, default=3)
    parser.add_argument("--cost-queries", type=int, default=30)
    parser.add_argument("--held-out-max", type=int, default=200)
    parser.add_argument(
        "--skip-before",
        action="store_true",
        help="Do not re-measure the untuned collection (docs/retrieval.md has its figures).",
    )
    args = parser.parse_args()

    target = args.index_dir / "scifact"
    if not target.exists():
        shutil.copytree(
            args.from_index / "scifact", target, ignore=shutil.ignore_patterns("tune", "models")
        )
        with Collection.open(args.index_dir, "scifact") as copy:
            copy.set_reranker(None)
    settings = Settings.load(index_dir=args.index_dir, device="cpu", progress=True)
    first = ["dense", "hybrid"]
    before = {} if args.skip_before else test_scores(settings, first)
    print("before", json.dumps(before), flush=True)
    options = TuneOptions(
        queries_file=DATA / "queries.jsonl" if args.labels else None,
        qrels_file=DATA / "qrels" / "train.tsv" if args.labels else None,
        max_queries=args.max_queries,
        arch=args.arch,
        loss=args.loss,
        epochs=args.epochs,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        max_length=args.max_length,
        eval_queries=args.eval_queries,
        held_out_max=args.held_out_max,
        evals=args.evals,
    )
    started = time.perf_counter()
    run = tune_reranker if args.kind == "reranker" else tune_retriever
    report = run(settings, "scifact", options)
    seconds = time.perf_counter() - started
    print(report.message, flush=True)
    configs = [*first, "hybrid+rerank"] if args.kind == "reranker" else first
    after = test_scores(settings, configs)
    print("after", json.dumps(after), flush=True)
    result = {
        "kind": args.kind,
        "labels": "scifact train qrels" if args.labels else "none (synthetic queries)",
        "options": {k: str(v) for k, v in vars(args).items()},
        "registered": report.registered,
        "message": report.message,
        "command_seconds": round(seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "card": report.card,
        "test_before": before,
        "test_after": after,
        "seconds_per_query": query_cost(settings, args.cost_queries),
        "load_average": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
