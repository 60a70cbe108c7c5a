"""How the reader should weigh a span's passage rank and its length: one reading, many choices.

    python benchmarks/squad_corpus.py --out .cache/squad-calibration --split calibration
    python benchmarks/reader_priors.py --questions .cache/squad-calibration/questions.jsonl \
        --out benchmarks/results/reader_priors_calibration.json

Each question is searched as the answer pipeline searches (top `context_chunks` chunks of the
collection), the reader proposes its candidate spans once, and the best span is then chosen
again under each pair of priors: a span in the passage ranked r of length t tokens is ranked by
`margin - rank_prior * ln(r) - length_prior * ln(t)` (rag/reader/model.py `RANK_PRIOR` is the
first; the second is tried here). Exact match and contains-gold of the chosen span, with no
refusal, so only the choice of span is measured. Choose on the calibration articles' questions;
the held-out ones are for the final report only.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from answer_routing import answerable, scores
from tqdm import tqdm

from rag.reader import SpanReader
from rag.settings import Settings
from rag.stack import Stack

RANK_PRIORS = (0.0, 1.0, 2.0, 3.0)
LENGTH_PRIORS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)


def readings(
    collection: str, questions: list[tuple[str, list[str]]], reader: SpanReader
) -> list[dict[str, Any]]:
    """Per question: its gold answers and every candidate span's passage rank, length, margin
    and text."""
    settings = Settings.load(progress=False)
    out = []
    with Stack.open(settings, collection) as stack:
        for question, golds in tqdm(questions, desc="reading", unit="q", mininterval=10):
            hits = stack.searcher.search(question, top_k=settings.context_chunks).hits
            passages = [(n, hit.chunk.text) for n, hit in enumerate(hits, start=1)]
            texts = dict(passages)
            out.append(
                {
                    "gold": golds,
                    "candidates": [
                        (c.n, c.tokens, c.margin, texts[c.n][c.start : c.end])
                        for c in reader.candidates(question, passages)
                    ],
                }
            )
    return out


def choose(candidates: list[Any], rank_prior: float, length_prior: float) -> str:
    """The text of the best candidate under the two priors ("" when there is none)."""
    if not candidates:
        return ""
    best = max(
        candidates,
        key=lambda c: c[2] - rank_prior * math.log(c[0]) - length_prior * math.log(c[1]),
    )
    return str(best[3])


def grade(rows: list[dict[str, Any]], rank_prior: float, length_prior: float) -> dict[str, float]:
    graded = [scores(choose(r["candidates"], rank_prior, length_prior), r["gold"]) for r in rows]
    return {
        key: round(statistics.fmean(g[key] for g in graded), 4)
        for key in ("exact_match", "contains_gold")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="squad-dev")
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--reader", type=Path, help="a reader folder (default: the packaged one)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    reader = SpanReader(args.reader) if args.reader else SpanReader.packaged()
    rows = readings(args.collection, answerable(args.questions), reader)
    grid = [
        {"rank_prior": r, "length_prior": t, **grade(rows, r, t)}
        for r, t in itertools.product(RANK_PRIORS, LENGTH_PRIORS)
    ]
    results = {
        "questions": str(args.questions),
        "reader": str(reader.folder),
        "count": len(rows),
        "grid": grid,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    for row in grid:
        print(
            f"rank {row['rank_prior']:.1f}  length {row['length_prior']:.2f}  "
            f"exact {row['exact_match']:.3f}  contains {row['contains_gold']:.3f}"
        )


if __name__ == "__main__":
    main()
