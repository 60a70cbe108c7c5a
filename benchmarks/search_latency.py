"""Search latency p50/p95 on a collection: per mode without reranking, and reranking top 20 / 50.

    python benchmarks/search_latency.py --collection scifact --queries ../shared/data/scifact

The cross-encoder's cost does not depend on its weights, so when the collection has no trained
reranker the benchmark builds an untrained one from the packaged MiniLM body (same architecture
as cross-encoder/ms-marco-MiniLM-L-6-v2) to time it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ingest.beir import BeirDataset
from rag.collection import Collection
from rag.models import packaged_path
from rag.rerank import CrossEncoderReranker
from rag.retrieval import Searcher
from rag.settings import Settings


def percentiles(samples: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49] * 1000, 2), "p95_ms": round(cuts[94] * 1000, 2)}


def build_reranker(folder: Path) -> str:
    from sentence_transformers import CrossEncoder

    minilm = packaged_path("sentence-transformers/all-MiniLM-L6-v2")
    CrossEncoder(str(minilm), num_labels=1, device="cpu").save(str(folder))
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="scifact")
    parser.add_argument("--index-dir", type=Path, default=None)
    parser.add_argument("--queries", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--limit", type=int, default=300, help="queries to time")
    parser.add_argument("--reranker", help="cross-encoder folder (default: build an untrained one)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_latency.json"))
    args = parser.parse_args()

    settings = Settings.load(index_dir=args.index_dir, device="cpu", progress=False)
    collection = Collection.open(settings.index_dir, args.collection)
    queries = list(BeirDataset(args.queries).queries("test").values())[: args.limit]
    reranker_path = args.reranker or build_reranker(Path(tempfile.mkdtemp()) / "ce")
    reranker = CrossEncoderReranker(reranker_path, device="cpu")
    plain = Searcher(collection, settings, reranker=None)
    documents, chunks = collection.store.counts()

    results: dict[str, dict[str, float]] = {}
    configs = [("dense", None), ("bm25", None), ("hybrid", None), ("hybrid", 20), ("hybrid", 50)]
    for mode, depth in configs:
        if depth is None:
            searcher = plain
        else:
            tuned = settings.model_copy(update={"rerank_depth": depth})
            searcher = Searcher(collection, tuned, embedder=plain.embedder, reranker=reranker)
        searcher.search(queries[0], top_k=10, mode=mode)  # warm: model loads, index loads
        samples = []
        for query in queries:
            started = time.perf_counter()
            searcher.search(query, top_k=10, mode=mode)
            samples.append(time.perf_counter() - started)
        name = mode if depth is None else f"{mode}+rerank@{depth}"
        results[name] = {**percentiles(samples), "queries": len(samples)}
        p50, p95 = results[name]["p50_ms"], results[name]["p95_ms"]
        print(f"{name:<18} p50 {p50:8.2f} ms   p95 {p95:8.2f} ms")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    index = collection.index_info().get("kind")
    record = {
        "collection": args.collection,
        "documents": documents,
        "chunks": chunks,
        "index": index,
        "cpu_cores": os.cpu_count(),
        "results": results,
    }
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
