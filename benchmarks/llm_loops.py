"""Does the embedded LLM loop? Its answers to demo questions, with and without the loop guards.

    python benchmarks/llm_loops.py                 # 20 questions, before and after
    python benchmarks/llm_loops.py --questions 2 --configs after

Builds the demo collection (ui/demo_corpus, reranking off) under `--index-dir` once, then answers
the two questions of issue 14, one that asks for a list, and questions drawn with a fixed seed
from ui/demo_questions.jsonl with the embedded SmolLM2 through the real pipeline, once per
decoding:

- before: no repetition penalty, no n-gram ban, no sentence limit, no stop at a looping sentence
  (the decoding until issue 14);
- after: the defaults of rag.decoding.Decoding (settings llm_repetition_penalty,
  llm_no_repeat_ngram, llm_max_sentences).

For each answer: tokens generated, whether it loops (a run of four words said three times or
more, or a sentence that repeats a phrase beyond what any source sentence says), its sentences and
[n] markers, whether it contains a gold answer, what the verifier flags and passes (and what it
would pass on facts alone, without the wording check), and the time. Writes
benchmarks/results/llm_loops.json (or `--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ingest.pipeline import IngestJob
from rag.claims import Loops
from rag.decoding import Decoding
from rag.generation import EmbeddedLLM, Message, complete
from rag.models import set_torch_threads
from rag.settings import Settings
from rag.stack import Stack
from rag.text import CITATION, split_sentences
from rag.verification import FactCheckingVerifier, check_sentences
from ui.demo import demo_files

ISSUE_QUESTIONS = [
    ("Where did Super Bowl 50 take place?", ["Santa Clara, California", "Levi's Stadium"]),
    ("Which NFL team represented the AFC at Super Bowl 50?", ["Denver Broncos"]),
    # Not a SQuAD question: it asks for a list, where the model loops most (no gold answer).
    ("List the earlier Super Bowls mentioned.", []),
]
CONFIGS = {
    "before": Decoding(
        repetition_penalty=1.0, no_repeat_ngram=0, max_sentences=0, stop_at_loops=False
    ),
    "after": Decoding(),
}


def questions(count: int, seed: int = 7) -> list[tuple[str, list[str]]]:
    """The issue's two questions, then demo questions drawn with a fixed seed."""
    rows = [json.loads(line) for line in Path("ui/demo_questions.jsonl").read_text().splitlines()]
    asked = {q for q, _ in ISSUE_QUESTIONS}
    pool = [(r["question"], list(r["answer"])) for r in rows if r["question"] not in asked]
    drawn = random.Random(seed).sample(pool, max(0, count - len(ISSUE_QUESTIONS)))
    return (ISSUE_QUESTIONS + drawn)[:count]


def max_4gram(text: str) -> int:
    """How often the most repeated run of four words occurs in `text`."""
    words = re.findall(r"\w+", CITATION.sub("", text).lower())
    grams = Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
    return max(grams.values(), default=0)


def normalised(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def answer_row(stack: Stack, question: str, gold: list[str]) -> dict[str, Any]:
    answer = stack.answerer.ask(question)
    sources = "\n".join(c.chunk.text for c in answer.sources)
    # The same answer checked on facts alone (no wording check), for what wording adds.
    facts = FactCheckingVerifier(stack.searcher.embedder, wording=False)
    passages = {c.n: c.chunk.text for c in answer.sources}
    min_support = stack.answerer.settings.min_support
    by_facts = check_sentences(answer.text, passages, facts, min_support, question=answer.query)
    loops = Loops(sources)
    sentences = split_sentences(answer.text)
    return {
        "question": question,
        "answer": answer.text,
        "refused": answer.refused,
        "tokens": (answer.usage or {}).get("completion_tokens", 0),
        "generate_s": round(answer.timings.get("generate_s", 0.0), 2),
        "sentence_loops": any(loops.find(s) for s in sentences),
        "max_4gram_repeats": max_4gram(answer.text),
        "sentences": len(sentences),
        "cites": bool(CITATION.search(answer.text)),
        "contains_gold": any(normalised(g) in normalised(answer.text) for g in gold),
        "flagged": [s.reason for s in answer.sentences if not s.supported],
        "supported": [s.text for s in answer.sentences if s.supported],
        "supported_on_facts_alone": []
        if answer.refused
        else [s.text for s in by_facts if s.supported],
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    answered = [r for r in rows if not r["refused"]]
    return {
        "questions": len(rows),
        "refused": len(rows) - len(answered),
        "tokens_mean": round(statistics.mean(r["tokens"] for r in answered), 1),
        "tokens_max": max(r["tokens"] for r in answered),
        "loops": sum(r["max_4gram_repeats"] >= 3 or r["sentence_loops"] for r in answered),
        "over_4_sentences": sum(r["sentences"] > 4 for r in answered),
        "with_markers": sum(r["cites"] for r in answered),
        "contains_gold": sum(r["contains_gold"] for r in rows),
        "generate_s_median": round(statistics.median(r["generate_s"] for r in answered), 2),
        "sentences_checked": sum(r["sentences"] for r in answered),
        "supported": sum(len(r["supported"]) for r in answered),
        "supported_on_facts_alone": sum(len(r["supported_on_facts_alone"]) for r in answered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--index-dir", type=Path, default=Path("/tmp/rag-llm-loops"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/llm_loops.json"))
    # One torch thread: on a shared machine two threads that wait for a busy core stall every step.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_torch_threads(args.threads)

    settings = Settings.load(index_dir=args.index_dir, progress=False, rerank=False, device="cpu")
    IngestJob(settings).run_files("demo", demo_files())
    asked = questions(args.questions)
    results: dict[str, Any] = {
        "settings": {"llm_max_tokens": settings.llm_max_tokens, "torch_threads": args.threads}
    }
    for name in args.configs:
        llm = EmbeddedLLM(device="cpu", decoding=CONFIGS[name])
        with Stack.open(settings, "demo", reranker=None, llm=llm) as stack:
            complete(llm, [Message("user", "Hi")], max_tokens=4, temperature=0.0)  # load it
            rows = []
            for question, gold in asked:
                rows.append(answer_row(stack, question, gold))
                print(name, json.dumps(rows[-1], ensure_ascii=False), flush=True)
        results[name] = {"decoding": vars(CONFIGS[name]), "summary": summary(rows), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v["summary"] for k, v in results.items() if k in CONFIGS}, indent=2))


if __name__ == "__main__":
    main()
