"""What embedding a long document in parts costs: one embedder call for all its chunks (the
ingest job before 2026-12-03) against calls of a few batches with a progress count after each
(since), side by side, alternating, with the product's default embedder.

    .venv/bin/python benchmarks/embed_calls.py \
        --pdf ../shared/data/financebench-dev/pdfs/3M_2022_10K.pdf \
        --rounds 3 --out benchmarks/results/embed_calls.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ingest.chunking import Chunker
from ingest.sources import file_sources, prepare
from rag.embedding import embedder_for
from rag.settings import DEFAULT_EMBEDDER, Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdf", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", default="128,256", help="chunks per call, comma-separated")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    settings = Settings.load()
    embedder = embedder_for(settings, DEFAULT_EMBEDDER)
    chunker = Chunker(settings.chunk_tokens, settings.chunk_overlap, embedder.tokenizer, True)
    sources, _ = file_sources([args.pdf], ocr="off")
    texts = [chunk.embedded_text for chunk in prepare(sources[0], chunker).chunks]
    embedder.embed(texts[:8])  # load and warm up

    def in_calls(step: int) -> np.ndarray:
        return np.concatenate(
            [embedder.embed(texts[i : i + step]) for i in range(0, len(texts), step)]
        )

    ways: dict[str, Callable[[], np.ndarray]] = {"one call": lambda: embedder.embed(texts)}
    for step in map(int, args.steps.split(",")):
        ways[f"calls of {step}"] = functools.partial(in_calls, step)
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    vectors: dict[str, np.ndarray] = {}
    for round_ in range(args.rounds):
        for name, run in ways.items():
            started = time.perf_counter()
            vectors[name] = run()
            seconds[name].append(time.perf_counter() - started)
            print(f"round {round_ + 1}: {name:<14} {seconds[name][-1]:6.1f} s", flush=True)
    first, *others = vectors.values()
    result = {
        "pdf": str(args.pdf),
        "chunks": len(texts),
        "backend": settings.embed_backend,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "seconds": seconds,
        "median_s": {name: float(np.median(values)) for name, values in seconds.items()},
        "vectors_identical": all(np.array_equal(first, other) for other in others),
    }
    print(json.dumps({k: result[k] for k in ("chunks", "median_s", "vectors_identical")}))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
