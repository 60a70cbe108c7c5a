"""The span reader on SQuAD dev articles it never trained on: answers, confidence, latency.

    python benchmarks/reader_quality.py                      # 500 held-out questions, seed 13
    python benchmarks/reader_quality.py --model /tmp/reader --questions 100 --out /tmp/r.json

For a fixed sample of held-out questions (rag/squad.py), the reader reads (a) the gold paragraph,
(b) the gold paragraph and 4 paragraphs of its article that a hybrid search (BM25 + MiniLM, fused
by reciprocal rank) ranks highest, (c) the 5 held-out paragraphs the same search ranks highest
that hold no gold answer. It records exact match, token F1 and contains-gold of the best span;
how often a confidence threshold would refuse; how well the confidence is calibrated (expected
calibration error, a reliability table and plot); and the time to read 5 passages of about 240
tokens (a product chunk), p50 and p95, on 2 threads.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.embedding import SentenceTransformerEmbedder
from rag.reader import SpanReader
from rag.reader.calibration import reliability
from rag.reader.data import Paragraph, paragraphs, squad_examples
from rag.reader.evaluate import CONDITIONS, Outcome, passage_sets, read_all, summary
from rag.reader.model import PACKAGED_FOLDER
from rag.reader.windows import reader_tokenizer
from rag.squad import article_split, load_squad

THRESHOLDS = (0.1, 0.3, 0.5)
CHUNK_TOKENS = 240


def refusals(outcomes: list[Outcome]) -> dict[str, Any]:
    """Per confidence threshold: the share refused and exact match on the rest."""
    out: dict[str, Any] = {}
    for threshold in THRESHOLDS:
        kept = [o for o in outcomes if o.confidence >= threshold]
        out[f"below_{threshold}"] = {
            "refused_pct": round(100 * (1 - len(kept) / max(1, len(outcomes))), 1),
            "exact_match_of_answered_pct": round(
                100 * sum(o.exact for o in kept) / max(1, len(kept)), 1
            ),
            "contains_gold_of_answered_pct": round(
                100 * sum(o.contains for o in kept) / max(1, len(kept)), 1
            ),
        }
    return out


def quantiles(values: list[float]) -> dict[str, float]:
    """The 10th, 50th and 90th percentile and the largest of `values`."""
    ordered = sorted(values)
    at = {q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.1, 0.5, 0.9)}
    return {
        "p10": round(at[0.1], 4),
        "p50": round(at[0.5], 4),
        "p90": round(at[0.9], 4),
        "max": round(ordered[-1], 4),
    }


def chunk_sized(found: list[Paragraph], pool: list[Paragraph], tokenizer: Any) -> list[str]:
    """Each paragraph continued by the next ones of its article, cut at CHUNK_TOKENS tokens."""
    following = {(p.article, p.index): p for p in pool}
    texts = []
    for paragraph in found:
        text, index = paragraph.text, paragraph.index
        while len(tokenizer(text)["input_ids"]) < CHUNK_TOKENS + 2:
            nxt = following.get((paragraph.article, index + 1))
            if nxt is None:
                break
            text, index = f"{text} {nxt.text}", index + 1
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        cut = offsets["offset_mapping"][:CHUNK_TOKENS][-1][1]
        texts.append(text[:cut])
    return texts


def plot(tables: dict[str, list[dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for name, table in tables.items():
        axis.plot(
            [row["confidence"] for row in table],
            [row["right"] for row in table],
            marker="o",
            label=name,
        )
    axis.set_xlabel("confidence (mean in bin)")
    axis.set_ylabel("share of best spans that hold a gold answer")
    axis.set_title("Span reader on held-out SQuAD articles")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, default=Path("../shared/data/squad/dev-v1.1.json"))
    parser.add_argument("--model", type=Path, default=PACKAGED_FOLDER)
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/reader_quality.json"))
    args = parser.parse_args()

    articles = load_squad(args.squad)
    split = article_split([str(a["title"]) for a in articles])
    pool = paragraphs(articles, split.held_out)
    everything = squad_examples(articles, split.held_out)
    sample = random.Random(args.seed).sample(everything, min(args.questions, len(everything)))
    dense = SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    sets = passage_sets(sample, pool, dense)
    reader = SpanReader(args.model)
    reader.read("warm-up: who?", [(1, "Nobody.")])  # loading is not part of reading time

    results: dict[str, Any] = {"model": reader.name, "questions": len(sample), "seed": args.seed}
    every: list[Outcome] = []
    tables = {}
    for condition in CONDITIONS:
        outcomes = read_all(reader, sample, sets[condition], condition)
        every.extend(outcomes)
        # The confidence is the probability that the span holds a gold answer (its label).
        error, table = reliability([o.confidence for o in outcomes], [o.contains for o in outcomes])
        tables[condition] = table
        results[condition] = {
            **summary(outcomes),
            "confidence": quantiles([o.confidence for o in outcomes]),
            "refusals": refusals(outcomes),
            "ece": round(error, 4),
        }
        print(condition, json.dumps(results[condition]))
    error, table = reliability([o.confidence for o in every], [o.contains for o in every])
    results["calibration_all_conditions"] = {"ece": round(error, 4), "table": table}
    tables["all three"] = table

    tokenizer = reader_tokenizer(args.model)
    timings, sizes = [], []
    for example, found in list(zip(sample, sets["distractors"], strict=True))[
        : args.latency_samples
    ]:
        texts = chunk_sized(list(found), pool, tokenizer)
        sizes.extend(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        began = time.perf_counter()
        reader.read(example.question, list(enumerate(texts, start=1)))
        timings.append(time.perf_counter() - began)
    timings.sort()
    results["latency_5_passages"] = {
        "samples": len(timings),
        "passage_tokens_mean": round(statistics.mean(sizes), 1),
        "p50_s": round(timings[len(timings) // 2], 3),
        "p95_s": round(timings[int(0.95 * (len(timings) - 1))], 3),
        "threads": reader.threads,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print("latency", json.dumps(results["latency_5_passages"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    plot(tables, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
