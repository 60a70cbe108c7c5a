"""FAISS at scale: build time, memory, and query latency at recall@10 >= 0.95 against exact search.

    .venv/bin/rag eval retrieval ../shared/data/scifact            # once: the real vectors
    .venv/bin/python benchmarks/faiss_scale.py --size 1000000       # JSON + plot in results/
    .venv/bin/python benchmarks/faiss_scale.py --size 1000000 --sentences --synthetic between

The base is every chunk vector of a collection (default: `scifact`, 240-token chunks of the 5,183
SciFact abstracts, embedded by the product), with `--sentences` also every sentence of SciFact
and SQuAD dev, topped up to `--size` with synthetic vectors, stated as such in the results:
`--synthetic around` (each a real vector turned in a random direction to `--synthetic-cosine`:
tight clusters of near-copies, a stress test) or `--synthetic between` (mixes of a real vector
and one of its real neighbours). The queries are real: SciFact's test questions (never in the
base), embedded by the same embedder. For each index kind the script reports the build (with the
product's own tuning of efSearch / nprobe), the memory of the serialised index, recall@10 against
exact search with the knob as tuned, p50/p95 latency of one query at a time, and a sweep of the
knob for the recall-latency plot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.collection import Collection  # noqa: E402
from rag.embedding import SentenceTransformerEmbedder  # noqa: E402
from rag.index import EF_SEARCH_STEPS, NPROBE_STEPS, DenseIndex, IndexParams  # noqa: E402
from rag.settings import Settings  # noqa: E402

KINDS = ("flat", "hnsw", "ivf", "ivfpq")


def real_vectors(index_dir: Path, name: str) -> tuple[np.ndarray, str]:
    collection = Collection.open(index_dir, name)
    try:
        dimension = collection.embedder.dimension
        parts = [v for _, v in collection.store.live_vectors(dimension)]
        return np.concatenate(parts), collection.embedder.name
    finally:
        collection.close()


def top_up(real: np.ndarray, size: int, cosine: float, seed: int = 0) -> np.ndarray:
    """`real` followed by synthetic vectors up to `size` rows (see the module docstring)."""
    rng = np.random.default_rng(seed)
    out = np.empty((size, real.shape[1]), dtype=np.float32)
    out[: len(real)] = real[:size]
    step = 100_000
    for start in range(len(real), size, step):
        stop = min(size, start + step)
        sources = real[rng.integers(0, len(real), stop - start)]
        noise = rng.standard_normal(sources.shape).astype(np.float32)
        noise -= np.sum(noise * sources, axis=1, keepdims=True) * sources
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        out[start:stop] = cosine * sources + np.sqrt(1 - cosine**2) * noise
    return out


def sentence_vectors(
    scifact: Path, squad: Path, embedder_name: str, cache: Path, exclude: set[str]
) -> np.ndarray:
    """More real vectors: every sentence of the SciFact abstracts and the SQuAD dev paragraphs
    (about 60,000), embedded by the product's embedder once and cached. `exclude`: texts that
    must not be in the base (the benchmark's own queries)."""
    if cache.exists():
        return np.load(cache)
    texts: list[str] = []
    for line in (scifact / "corpus.jsonl").open(encoding="utf-8"):
        texts.extend(_sentences(json.loads(line)["text"]))
    squad_file = next(iter(sorted(squad.glob("*.json"))))
    for article in json.loads(squad_file.read_text(encoding="utf-8"))["data"]:
        for paragraph in article["paragraphs"]:
            texts.extend(_sentences(paragraph["context"]))
    texts = sorted({t for t in texts if len(t.split()) >= 5 and t not in exclude})
    print(f"embedding {len(texts):,} sentences (once; cached in {cache})", flush=True)
    embedder = SentenceTransformerEmbedder(embedder_name, device="cpu")
    vectors = np.concatenate(
        [embedder.embed(texts[i : i + 2048]) for i in range(0, len(texts), 2048)]
    ).astype(np.float32)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def _sentences(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"(?<=[.!?])\s+(?=[A-Z])", text) if part.strip()]


def top_up_between(real: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """`real` followed by synthetic vectors up to `size` rows, each a point between a real
    vector and one of its 10 nearest real neighbours (a random mix of the two, nudged a little
    off the line), so the synthetic part fills the real neighbourhoods without piling up as
    near-copies of single vectors."""
    import faiss

    rng = np.random.default_rng(seed)
    _, neighbours = faiss.knn(real, real, 11, metric=faiss.METRIC_INNER_PRODUCT)
    out = np.empty((size, real.shape[1]), dtype=np.float32)
    out[: len(real)] = real[:size]
    step = 100_000
    for start in range(len(real), size, step):
        stop = min(size, start + step)
        first = rng.integers(0, len(real), stop - start)
        second = neighbours[first, rng.integers(1, 11, stop - start)]
        mix = rng.uniform(0.0, 1.0, (stop - start, 1)).astype(np.float32)
        points = mix * real[first] + (1 - mix) * real[second]
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        noise = rng.standard_normal(points.shape).astype(np.float32)
        noise -= np.sum(noise * points, axis=1, keepdims=True) * points
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        out[start:stop] = 0.97 * points + np.sqrt(1 - 0.97**2) * noise
    return out


def scifact_query_texts(scifact: Path) -> list[str]:
    """SciFact's test questions (those with relevance judgements)."""
    qrels = (scifact / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]
    wanted = {line.split("\t")[0] for line in qrels}
    return [
        record["text"]
        for line in (scifact / "queries.jsonl").open(encoding="utf-8")
        if (record := json.loads(line))["_id"] in wanted
    ]


def scifact_queries(scifact: Path, embedder_name: str) -> np.ndarray:
    texts = scifact_query_texts(scifact)
    return SentenceTransformerEmbedder(embedder_name, device="cpu").embed(texts)


def latencies(
    index: DenseIndex, queries: np.ndarray, k: int = 10
) -> tuple[np.ndarray, list[float]]:
    """Top-k keys per query, searched one query at a time, and each search's milliseconds."""
    found, times = [], []
    for row in queries:
        started = time.perf_counter()
        _, keys = index.search(row[None, :], k)
        times.append((time.perf_counter() - started) * 1000)
        found.append(keys[0])
    return np.vstack(found), times


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(
    kind: str, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray
) -> dict[str, Any]:
    import faiss

    keys = np.arange(len(vectors), dtype=np.int64)
    before = rss_mb()
    started = time.perf_counter()
    index = DenseIndex.build(keys, vectors, IndexParams(kind=kind, use_gpu=False), vectors.shape[1])
    build_s = time.perf_counter() - started
    found, times = latencies(index, queries)
    row: dict[str, Any] = {
        "build_s": round(build_s, 1),
        "index_mb": round(len(faiss.serialize_index(index._cpu_index)) / 2**20, 1),
        "rss_growth_mb": round(rss_mb() - before, 1),
        "tuning": index.tuning,
        "recall@10": round(recall(found, truth), 4),
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p95_ms": round(float(np.percentile(times, 95)), 3),
    }
    knob = index.tunable_knob()
    if knob is not None:
        if knob == "ef_search":
            steps = EF_SEARCH_STEPS
        else:
            nlist = int(faiss.extract_index_ivf(index._cpu_index).nlist)
            steps = tuple(n for n in NPROBE_STEPS if n <= nlist)
        sweep = []
        for value in steps:
            index._set_knob(knob, value)
            found, times = latencies(index, queries)
            sweep.append(
                {
                    knob: value,
                    "recall@10": round(recall(found, truth), 4),
                    "p50_ms": round(float(np.percentile(times, 50)), 3),
                    "p95_ms": round(float(np.percentile(times, 95)), 3),
                }
            )
            if sweep[-1]["recall@10"] >= 0.999:
                break
        row["sweep"] = sweep
    print(f"{kind}: {json.dumps({k: v for k, v in row.items() if k != 'sweep'})}", flush=True)
    del index
    return row


def plot(report: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for kind, row in report["kinds"].items():
        if "sweep" in row:
            ax.plot(
                [p["p50_ms"] for p in row["sweep"]],
                [p["recall@10"] for p in row["sweep"]],
                marker="o",
                label=kind,
            )
        else:
            ax.scatter([row["p50_ms"]], [row["recall@10"]], marker="s", label=kind, color="black")
    ax.axhline(0.95, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("p50 latency per query, ms (log scale)")
    ax.set_ylabel("recall@10 against exact search")
    ax.set_title(f"FAISS on {report['size']:,} vectors ({report['real']:,} real), 2 CPU cores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--collection", default="scifact")
    parser.add_argument("--index-dir", type=Path, help="default: the settings' index_dir")
    parser.add_argument("--scifact", type=Path, default=ROOT.parent / "shared" / "data" / "scifact")
    parser.add_argument(
        "--synthetic",
        choices=("around", "between"),
        default="around",
        help="around: each synthetic vector a real one turned to --synthetic-cosine (tight "
        "clusters of near-copies); between: mixes of real neighbours (see top_up_between)",
    )
    parser.add_argument("--synthetic-cosine", type=float, default=0.85)
    parser.add_argument(
        "--sentences",
        action="store_true",
        help="add every sentence of SciFact and SQuAD dev to the real vectors",
    )
    parser.add_argument("--squad", type=Path, default=ROOT.parent / "shared" / "data" / "squad")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "faiss_scale.json"
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import faiss

    index_dir = args.index_dir or Settings.load().index_dir
    real, embedder = real_vectors(index_dir, args.collection)
    if args.sentences:
        cache = ROOT / ".cache" / "faiss-scale" / "sentences.npy"
        exclude = set(scifact_query_texts(args.scifact))
        extra = sentence_vectors(args.scifact, args.squad, embedder, cache, exclude)
        real = np.concatenate([real, extra])
    if args.synthetic == "between":
        vectors = top_up_between(real, args.size)
    else:
        vectors = top_up(real, args.size, args.synthetic_cosine)
    queries = scifact_queries(args.scifact, embedder)
    _, truth = faiss.knn(queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
    report: dict[str, Any] = {
        "size": len(vectors),
        "real": min(len(real), len(vectors)),
        "synthetic": args.synthetic,
        "synthetic_cosine": args.synthetic_cosine if args.synthetic == "around" else None,
        "sentences": args.sentences,
        "queries": len(queries),
        "embedder": embedder,
        "faiss_threads": faiss.omp_get_max_threads(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "kinds": {},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for kind in args.kinds.split(","):
        report["kinds"][kind] = measure(kind, vectors, queries, truth)
        # Written after each kind: a long run stopped half-way keeps what it measured.
        args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    plot(report, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
