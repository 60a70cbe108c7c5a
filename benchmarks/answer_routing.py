"""Who answers, and how well: the small reader alone, the LLM alone, and the routing (`auto`).

    python benchmarks/squad_corpus.py --out .cache/squad-held-out --split held-out
    rag ingest .cache/squad-held-out/docs --collection squad-dev
    rag ingest ui/demo_corpus --collection demo-plain
    python benchmarks/answer_routing.py --collection squad-dev --unanswerable-collection demo-plain

Answerable: the held-out question file (500 questions about SQuAD articles the reader never saw,
over all 48 articles as Markdown and PDF). Unanswerable: questions about held-out articles that
the demo corpus (8 other articles) does not hold, asked of a collection of the demo corpus. Each
mode answers the same questions with the same searcher; `--llm-questions` bounds the LLM-alone run
(the embedded LLM takes seconds a question on 2 cores). Writes
benchmarks/results/answer_routing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tqdm import tqdm

from rag.answer_eval import normalize, token_f1
from rag.pipeline import Answerer
from rag.questions import read_questions
from rag.settings import Settings
from rag.squad import DEMO_ARTICLES, article_split, load_squad
from rag.stack import Stack
from rag.text import CITATION

MODES = ("extractive", "auto", "llm")


def scores(answer: str, golds: Sequence[str]) -> dict[str, float]:
    """Exact match, token F1 and contains-gold of one answer against all its gold answers."""
    text = CITATION.sub(" ", answer)
    return {
        "exact_match": max(float(normalize(text) == normalize(g)) for g in golds),
        "f1": max(token_f1(text, g) for g in golds),
        "contains_gold": max(
            float(bool(normalize(g)) and normalize(g) in normalize(text)) for g in golds
        ),
    }


def run(
    answerer: Answerer, questions: Sequence[tuple[str, list[str]]], label: str
) -> list[dict[str, Any]]:
    rows = []
    for question, golds in tqdm(questions, desc=label, unit="q"):
        started = time.perf_counter()
        answer = answerer.ask(question)
        elapsed = time.perf_counter() - started
        row: dict[str, Any] = {
            "question": question,
            "answer": answer.text,
            "gold": list(golds),
            "answered_by": answer.answered_by,
            "confidence": answer.confidence,
            "llm_called": "generate_s" in answer.timings,
            "seconds": round(elapsed, 4),
            "first_token_s": answer.timings.get("first_token_s"),
        }
        zero = {"exact_match": 0.0, "f1": 0.0, "contains_gold": 0.0}
        row.update(zero if answer.refused or not golds else scores(answer.text, golds))
        rows.append(row)
    return rows


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str, subset: Sequence[dict[str, Any]] = rows) -> float | None:
        return round(statistics.fmean(r[key] for r in subset), 4) if subset else None

    by_reader = [r for r in rows if r["answered_by"] == "reader"]
    seconds = sorted(r["seconds"] for r in by_reader) or [0.0]
    first_tokens = {
        who: [r["first_token_s"] for r in rows if r["answered_by"] == who and r["first_token_s"]]
        for who in ("reader", "llm")
    }
    return {
        "questions": len(rows),
        "exact_match": mean("exact_match"),
        "f1": mean("f1"),
        "contains_gold": mean("contains_gold"),
        "refused": round(sum(r["answered_by"] == "refused" for r in rows) / len(rows), 4),
        "answered_by_reader": round(len(by_reader) / len(rows), 4),
        "without_llm_call": round(sum(not r["llm_called"] for r in rows) / len(rows), 4),
        "reader_exact_match": mean("exact_match", by_reader),
        "reader_seconds_p50": round(statistics.median(seconds), 4),
        "reader_seconds_p95": round(seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))], 4),
        **{
            f"first_token_p50_s_{who}": round(statistics.median(values), 4)
            for who, values in first_tokens.items()
            if values
        },
    }


def answerable(path: Path) -> list[tuple[str, list[str]]]:
    """Each question of a question file with its gold answers."""
    return [
        (q.question, list(q.answer) if isinstance(q.answer, tuple) else [str(q.answer)])
        for q in read_questions(path)
    ]


def unanswerable(
    squad: Path, count: int, seed: int, split: str = "held-out"
) -> list[tuple[str, list[str]]]:
    """Questions about the split's articles outside the demo corpus (asked of the demo corpus),
    drawn with `seed` (at most as many as there are)."""
    articles = load_squad(squad)
    titles = set(article_split([str(a["title"]) for a in articles]).of(split)) - set(DEMO_ARTICLES)
    pool: list[tuple[str, list[str]]] = [
        (str(qa["question"]).strip(), [])
        for article in articles
        if article["title"] in titles
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]
    return random.Random(seed).sample(pool, min(count, len(pool)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="squad-dev")
    parser.add_argument(
        "--questions", type=Path, default=Path(".cache/squad-held-out/questions.jsonl")
    )
    parser.add_argument("--unanswerable-collection", default="demo-plain")
    parser.add_argument("--unanswerable", type=int, default=200)
    parser.add_argument("--squad", type=Path, default=Path("../shared/data/squad/dev-v1.1.json"))
    parser.add_argument("--llm-questions", type=int, default=150)
    parser.add_argument(
        "--limit", type=int, default=0, help="only the first N answerable questions"
    )
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/answer_routing.json"))
    parser.add_argument(
        "--rows", type=Path, help="also write every answerable question's row here (JSON Lines)"
    )
    args = parser.parse_args()

    settings = Settings.load(progress=False)
    questions = answerable(args.questions)[: args.limit or None]
    results: dict[str, Any] = {
        "settings": {
            "reader_accept": settings.reader_accept,
            "reader_refuse": settings.reader_refuse,
            "min_answerable": settings.min_answerable,
            "min_evidence": settings.min_evidence,
            "llm_backend": settings.llm_backend,
            "search_mode": settings.search_mode,
        }
    }
    rows: dict[str, list[dict[str, Any]]] = {}
    with Stack.open(settings, args.collection) as stack:
        for mode in args.modes:
            answerer = Answerer(
                stack.searcher, stack.llm, settings.model_copy(update={"answer_mode": mode})
            )
            asked = questions[: args.llm_questions] if mode == "llm" else questions
            rows[mode] = run(answerer, asked, f"answerable, {mode}")
            results[f"answerable/{mode}"] = summary(rows[mode])
    if "llm" in rows and "auto" in rows:
        # The reader's answers in auto against the LLM's on the same questions.
        llm_by_question = {r["question"]: r for r in rows["llm"]}
        pairs = [
            (r, llm_by_question[r["question"]])
            for r in rows["auto"]
            if r["answered_by"] == "reader" and r["question"] in llm_by_question
        ]
        if pairs:
            results["reader_vs_llm_on_the_same_questions"] = {
                "questions": len(pairs),
                "reader_exact_match": round(
                    statistics.fmean(a["exact_match"] for a, _ in pairs), 4
                ),
                "llm_exact_match": round(statistics.fmean(b["exact_match"] for _, b in pairs), 4),
                "reader_contains_gold": round(
                    statistics.fmean(a["contains_gold"] for a, _ in pairs), 4
                ),
                "llm_contains_gold": round(
                    statistics.fmean(b["contains_gold"] for _, b in pairs), 4
                ),
            }
    if args.unanswerable:
        asked = unanswerable(args.squad, args.unanswerable, seed=13)
        with Stack.open(settings, args.unanswerable_collection) as stack:
            for mode in [m for m in args.modes if m != "llm"]:
                answerer = Answerer(
                    stack.searcher, stack.llm, settings.model_copy(update={"answer_mode": mode})
                )
                unanswered = run(answerer, asked, f"unanswerable, {mode}")
                results[f"unanswerable/{mode}"] = {
                    "questions": len(unanswered),
                    "refused": round(
                        sum(r["answered_by"] == "refused" for r in unanswered) / len(unanswered), 4
                    ),
                    "refused_without_llm_call": round(
                        sum(
                            r["answered_by"] == "refused" and not r["llm_called"]
                            for r in unanswered
                        )
                        / len(unanswered),
                        4,
                    ),
                }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.rows:
        with args.rows.open("w", encoding="utf-8") as out:
            for mode, mode_rows in rows.items():
                for row in mode_rows:
                    out.write(json.dumps({"mode": mode, **row}) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
