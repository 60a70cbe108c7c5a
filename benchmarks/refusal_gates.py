"""The refusals of the answer pipeline, read once and replayed at any threshold; fits the
answerability model that ships (rag/answerability.py).

    python benchmarks/squad_corpus.py --out .cache/squad-calibration --split calibration
    python benchmarks/refusal_gates.py --split calibration \
        --questions .cache/squad-calibration/questions.jsonl \
        --fit rag/reader/model/answerability.json \
        --out benchmarks/results/refusal_gates_calibration.json

Two signals: the evidence (the best bi-encoder cosine between the question and the retrieved
chunks) and the reader's calibrated confidence. The two-gate rule refuses when the evidence is
under `min_evidence` or the confidence under `reader_refuse`; the joint rule when the probability
that the documents answer the question, from both signals, is under `min_answerable`. This reads
every question once, recording both signals and whether the reader's span is right, then replays
each rule at each threshold. `--fit` fits the joint model on these questions (and reports it
fitted on all articles but one, tested on that one, for each article in turn). Answerable: the
questions file (asked of `--collection`). Unanswerable: questions about the split's articles
that the demo corpus does not hold, asked of a collection of the demo corpus
(`--unanswerable-collection`). Use `--split calibration` to choose anything;
`--split held-out` (the questions of benchmarks/answer_routing.py) only to report.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from answer_routing import answerable, scores, unanswerable
from tqdm import tqdm

from rag.answerability import Answerability
from rag.pipeline import Answerer
from rag.settings import Settings
from rag.squad import SPLITS, load_squad
from rag.stack import Stack

EVIDENCE = (-1.0, 0.2, 0.25, 0.3, 0.35, 0.4)
CONFIDENCE = (0.0, 0.05, 0.1, 0.15, 0.2)
ANSWERABLE = (0.3, 0.4, 0.5, 0.6, 0.7)
Row = dict[str, Any]


def signals(
    collection: str, questions: list[tuple[str, list[str]]], label: str
) -> tuple[list[Row], dict[str, str]]:
    """Per question: evidence, the reader's best span, its confidence, and whether it is right;
    and the names of the embedder and reader that gave them."""
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
                    "question": question,
                    "evidence": answerer.evidence(question, hits),
                    "confidence": span.confidence if span else 0.0,
                    "exact": bool(graded.get("exact_match")),
                    "contains": bool(graded.get("contains_gold")),
                }
            )
        models = {"embedder": stack.searcher.embedder.name, "reader": answerer.reader.name}
    return out, models


def replay(
    answerable: list[Row], unanswerable: list[Row], answered: Callable[[Row], bool]
) -> dict[str, float]:
    """What a refusal rule `answered` (False: refused) does to both sets of questions."""

    def share(rows: list[Row], test: Any) -> float:
        return round(statistics.fmean(float(test(r)) for r in rows), 4) if rows else 0.0

    return {
        "exact_match": share(answerable, lambda r: answered(r) and r["exact"]),
        "contains_gold": share(answerable, lambda r: answered(r) and r["contains"]),
        "answerable_refused": share(answerable, lambda r: not answered(r)),
        "unanswerable_refused": share(unanswerable, lambda r: not answered(r)),
    }


def gates(min_evidence: float, reader_refuse: float) -> Callable[[Row], bool]:
    return lambda r: r["evidence"] >= min_evidence and r["confidence"] >= reader_refuse


def joint(model: Answerability, min_answerable: float) -> Callable[[Row], bool]:
    return lambda r: model.probability(r["evidence"], r["confidence"]) >= min_answerable


def fit(can: list[Row], cannot: list[Row], models: dict[str, str], **about: Any) -> Answerability:
    rows = can + cannot
    return Answerability.fit(
        [r["evidence"] for r in rows],
        [r["confidence"] for r in rows],
        [True] * len(can) + [False] * len(cannot),
        embedder=models["embedder"],
        reader=models["reader"],
        fitted_on={**about, "answerable": len(can), "unanswerable": len(cannot)},
    )


def leave_one_article_out(
    can: list[Row], cannot: list[Row], models: dict[str, str], min_answerable: float
) -> dict[str, Any]:
    """The joint rule fitted on all articles but one and replayed on that one, for each article;
    the counts summed over articles."""
    sums = {"exact": 0, "contains": 0, "refused": 0, "unanswerable_refused": 0}
    for article in sorted({r["article"] for r in can + cannot}):
        train = (
            [r for r in can if r["article"] != article],
            [r for r in cannot if r["article"] != article],
        )
        test = (
            [r for r in can if r["article"] == article],
            [r for r in cannot if r["article"] == article],
        )
        rule = joint(fit(*train, models), min_answerable)
        sums["exact"] += sum(rule(r) and r["exact"] for r in test[0])
        sums["contains"] += sum(rule(r) and r["contains"] for r in test[0])
        sums["refused"] += sum(not rule(r) for r in test[0])
        sums["unanswerable_refused"] += sum(not rule(r) for r in test[1])
    return {
        "min_answerable": min_answerable,
        "exact_match": round(sums["exact"] / len(can), 4),
        "contains_gold": round(sums["contains"] / len(can), 4),
        "answerable_refused": round(sums["refused"] / len(can), 4),
        "unanswerable_refused": round(sums["unanswerable_refused"] / len(cannot), 4),
    }


def articles(squad: Path) -> dict[str, str]:
    """Each SQuAD question's article title, by the question's text."""
    return {
        str(qa["question"]).strip(): str(article["title"])
        for article in load_squad(squad)
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="squad-dev")
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--split", choices=SPLITS, required=True, help="for unanswerable ones")
    parser.add_argument("--unanswerable-collection", default="demo-plain")
    parser.add_argument("--unanswerable", type=int, default=200)
    parser.add_argument("--squad", type=Path, default=Path("../shared/data/squad/dev-v1.1.json"))
    parser.add_argument("--fit", type=Path, help="fit the answerability model, write it here")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    can, models = signals(args.collection, answerable(args.questions), "answerable")
    cannot, _ = signals(
        args.unanswerable_collection,
        unanswerable(args.squad, args.unanswerable, seed=13, split=args.split),
        "unanswerable",
    )
    title = articles(args.squad)
    for row in can + cannot:
        row["article"] = title.get(row["question"], "?")
    results: dict[str, Any] = {
        "questions": str(args.questions),
        "split": args.split,
        "answerable": len(can),
        "unanswerable": len(cannot),
        "models": models,
    }
    if args.fit:
        model = fit(can, cannot, models, questions=str(args.questions), split=args.split)
        model.save(args.fit)
        results["fitted"] = {
            "coef": model.coef,
            "intercept": model.intercept,
            "evidence_floor": model.evidence_floor,
        }
        results["leave_one_article_out"] = [
            leave_one_article_out(can, cannot, models, t) for t in ANSWERABLE
        ]
    else:
        packaged = Answerability.packaged()
        if packaged is None or not packaged.applies(models["embedder"], models["reader"]):
            raise SystemExit("no packaged answerability model for these models: use --fit")
        model = packaged
    results["gates"] = [
        {"min_evidence": e, "reader_refuse": c, **replay(can, cannot, gates(e, c))}
        for e, c in itertools.product(EVIDENCE, CONFIDENCE)
    ]
    results["joint"] = [
        {"min_answerable": t, **replay(can, cannot, joint(model, t))} for t in ANSWERABLE
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("rule                              exact  contains  refused  unanswerable_refused")
    for row in results["gates"]:
        rule = f"min_evidence {row['min_evidence']:5.2f} reader_refuse {row['reader_refuse']:.2f}"
        print(f"{rule:<33} {_figures(row)}")
    for name in ("joint", "leave_one_article_out"):
        for row in results.get(name, []):
            print(f"{name} min_answerable {row['min_answerable']:.1f}".ljust(33), _figures(row))


def _figures(row: dict[str, Any]) -> str:
    return (
        f"{row['exact_match']:.3f}  {row['contains_gold']:.3f}     "
        f"{row['answerable_refused']:.3f}  {row['unanswerable_refused']:.3f}"
    )


if __name__ == "__main__":
    main()
