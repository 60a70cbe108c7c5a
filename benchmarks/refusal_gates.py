"""The two refusal gates of the answer pipeline, read once and replayed at any pair of thresholds.

    python benchmarks/squad_corpus.py --out .cache/squad-calibration --split calibration
    python benchmarks/refusal_gates.py --split calibration \
        --questions .cache/squad-calibration/questions.jsonl \
        --out benchmarks/results/refusal_gates_calibration.json

A question is refused before the reader runs when its evidence (the best bi-encoder cosine
between it and the retrieved chunks) is under `min_evidence`, and after, when the reader's
calibrated confidence is under `reader_refuse`. This reads every question once, recording both
signals and whether the reader's span is right, then replays the pipeline's decision at each
pair of thresholds. Answerable: the questions file (asked of `--collection`). Unanswerable:
questions about the split's articles that the demo corpus does not hold, asked of a collection
of the demo corpus (`--unanswerable-collection`). Use `--split calibration` to choose anything;
`--split held-out` (the questions of benchmarks/answer_routing.py) only to report.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from answer_routing import answerable, scores, unanswerable
from tqdm import tqdm

from rag.pipeline import Answerer
from rag.settings import Settings
from rag.squad import SPLITS
from rag.stack import Stack

EVIDENCE = (-1.0, 0.2, 0.25, 0.3, 0.35, 0.4)
CONFIDENCE = (0.0, 0.05, 0.1, 0.15, 0.2)


def signals(
    collection: str, questions: list[tuple[str, list[str]]], label: str
) -> list[dict[str, Any]]:
    """Per question: evidence, the reader's best span, its confidence, and whether it is right."""
    settings = Settings.load(progress=False)
    out = []
    with Stack.open(settings, collection) as stack:
        answerer = Answerer(stack.searcher, stack.llm, settings)
        for question, golds in tqdm(questions, desc=label, unit="q", mininterval=10):
            hits = list(stack.searcher.search(question, top_k=settings.context_chunks).hits)
            spans = answerer.reader.read(
                question, [(n, h.chunk.text) for n, h in enumerate(hits, 1)], top=1, ranked=True
            )
            span = spans[0] if spans else None
            graded = scores(span.text, golds) if span and golds else {}
            out.append(
                {
                    "evidence": answerer.evidence(question, hits),
                    "confidence": span.confidence if span else 0.0,
                    "exact": bool(graded.get("exact_match")),
                    "contains": bool(graded.get("contains_gold")),
                }
            )
    return out


def replay(
    answerable: list[dict[str, Any]],
    unanswerable: list[dict[str, Any]],
    min_evidence: float,
    reader_refuse: float,
) -> dict[str, float]:
    def answered(row: dict[str, Any]) -> bool:
        return row["evidence"] >= min_evidence and row["confidence"] >= reader_refuse

    def share(rows: list[dict[str, Any]], test: Any) -> float:
        return round(statistics.fmean(float(test(r)) for r in rows), 4) if rows else 0.0

    return {
        "min_evidence": min_evidence,
        "reader_refuse": reader_refuse,
        "exact_match": share(answerable, lambda r: answered(r) and r["exact"]),
        "contains_gold": share(answerable, lambda r: answered(r) and r["contains"]),
        "answerable_refused": share(answerable, lambda r: not answered(r)),
        "refused_by_evidence": share(answerable, lambda r: r["evidence"] < min_evidence),
        "unanswerable_refused": share(unanswerable, lambda r: not answered(r)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="squad-dev")
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--split", choices=SPLITS, required=True, help="for unanswerable ones")
    parser.add_argument("--unanswerable-collection", default="demo-plain")
    parser.add_argument("--unanswerable", type=int, default=200)
    parser.add_argument("--squad", type=Path, default=Path("../shared/data/squad/dev-v1.1.json"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    can = signals(args.collection, answerable(args.questions), "answerable")
    cannot = signals(
        args.unanswerable_collection,
        unanswerable(args.squad, args.unanswerable, seed=13, split=args.split),
        "unanswerable",
    )
    grid = [replay(can, cannot, e, c) for e, c in itertools.product(EVIDENCE, CONFIDENCE)]
    results = {
        "questions": str(args.questions),
        "split": args.split,
        "answerable": len(can),
        "unanswerable": len(cannot),
        "grid": grid,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("min_evidence reader_refuse  exact  contains  refused  unanswerable_refused")
    for row in grid:
        print(
            f"{row['min_evidence']:>12.2f} {row['reader_refuse']:>13.2f}  "
            f"{row['exact_match']:.3f}  {row['contains_gold']:.3f}     "
            f"{row['answerable_refused']:.3f}  {row['unanswerable_refused']:.3f}"
        )


if __name__ == "__main__":
    main()
