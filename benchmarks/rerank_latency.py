"""Reranked search latency with the MaxSim reranker: no cache, a cold cache, a warm cache.

    rag ingest ui/demo_corpus --collection demo-plain
    python benchmarks/rerank_latency.py --collection demo-plain --questions ui/demo_questions.jsonl

Each question goes through `Searcher.search` as the chat sends it (top 5, rerank depth 20). The
reranker is MaxSim over the packaged MiniLM (what `rag tune reranker` fine-tunes: a tuned one costs
the same). Arms, side by side in one run: no reranking; MaxSim encoding every passage each time
(the product before the cache); MaxSim with the collection's token cache starting empty (it fills
as questions come); and after `Searcher.warm_reranker()` (what registration does). The same
questions in every arm; the first question of each arm is a warm-up and is not counted.
Writes benchmarks/results/rerank_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.collection import Collection
from rag.questions import read_questions
from rag.retrieval import RERANK_CACHE, Searcher
from rag.settings import Settings


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49] * 1000, 1), "p95_ms": round(cuts[94] * 1000, 1)}


def timed(searcher: Searcher, questions: list[str], rerank: bool) -> tuple[dict[str, float], list]:
    searcher.search(questions[0], top_k=5, rerank=rerank)  # loads the models
    samples, rankings = [], []
    for question in questions:
        started = time.perf_counter()
        result = searcher.search(question, top_k=5, rerank=rerank)
        samples.append(time.perf_counter() - started)
        rankings.append([hit.chunk.id for hit in result.hits])
    return percentiles(samples), rankings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="demo-plain")
    parser.add_argument("--questions", type=Path, default=Path("ui/demo_questions.jsonl"))
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rerank_latency.json"))
    args = parser.parse_args()

    base = Settings.load(progress=False, reranker="maxsim", rerank_depth=20)
    questions = [q.question for q in read_questions(args.questions)][: args.count + 1]
    results: dict[str, Any] = {"questions": len(questions) - 1, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as scratch:
        # A copy, so that the benchmark's cache never lands in the user's collection.
        source = Collection.open(base.index_dir, args.collection)
        source.close()
        settings = base.model_copy(update={"index_dir": Path(scratch)})
        shutil.copytree(source.path, Path(scratch) / args.collection)
        with Collection.open(settings.index_dir, args.collection) as collection:
            plain = Searcher(collection, settings.model_copy(update={"rerank_cache_mb": 0}))
            results["no_rerank"], _ = timed(plain, questions, rerank=False)
            results["maxsim_no_cache"], uncached = timed(plain, questions, rerank=True)
            cached = Searcher(collection, settings)
            (collection.path / RERANK_CACHE).unlink(missing_ok=True)
            results["maxsim_cold_cache"], _ = timed(cached, questions, rerank=True)
            started = time.perf_counter()
            encoded = cached.warm_reranker()
            results["warm_up"] = {
                "passages": encoded,
                "seconds": round(time.perf_counter() - started, 1),
            }
            results["maxsim_warm_cache"], warm = timed(cached, questions, rerank=True)
            results["same_top5_as_no_cache"] = round(
                sum(a == b for a, b in zip(uncached, warm, strict=True)) / len(warm), 4
            )
            results["cache_mb"] = round((collection.path / RERANK_CACHE).stat().st_size / 2**20, 1)
            results["chunks"] = collection.store.counts()[1]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
