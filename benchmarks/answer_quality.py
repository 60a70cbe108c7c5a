"""Answer timing and verifier support on SQuAD dev questions, with any LLM backend.

    python benchmarks/answer_quality.py --collection demo --questions 30      # embedded SmolLM2
    RAG_LLM_BACKEND=openai RAG_LLM_BASE_URL=http://127.0.0.1:8000/v1 \
        python benchmarks/answer_quality.py                                    # any endpoint

Questions are drawn with a fixed seed from the SQuAD articles that the collection holds (the demo
collection holds 8). For each question it records time to first token, total time, whether the
answer was refused, whether it contains the gold answer, and the share of answer sentences that the
verifier marks supported.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rag.settings import Settings
from rag.stack import Stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="demo")
    parser.add_argument("--squad", type=Path, default=Path("../shared/data/squad/dev-v1.1.json"))
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/answer_quality.json"))
    args = parser.parse_args()

    settings = Settings.load(progress=False, llm_max_tokens=args.max_tokens)
    stack = Stack.open(settings, args.collection)
    inside = {Path(d.source).stem.replace(" ", "_") for d in stack.collection.store.documents()}
    articles = json.loads(args.squad.read_text())["data"]
    pool = [
        (qa["question"], [a["text"] for a in qa["answers"]])
        for article in articles
        if article["title"] in inside
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]
    sample = random.Random(5).sample(pool, min(args.questions, len(pool)))

    llm, answerer = stack.llm, stack.answerer
    answerer.ask("warm-up: who won Super Bowl 50?")  # model load is not part of answer time
    rows = []
    for n, (question, gold) in enumerate(sample, start=1):
        answer = answerer.ask(question)
        sentences = answer.sentences
        rows.append(
            {
                "question": question,
                "answer": answer.text,
                "refused": answer.refused,
                "contains_gold": any(g.lower() in answer.text.lower() for g in gold),
                "sentences": len(sentences),
                "supported": sum(s.supported for s in sentences),
                "first_token_s": answer.timings.get("first_token_s"),
                "total_s": answer.timings["total_s"],
                "completion_tokens": (answer.usage or {}).get("completion_tokens"),
            }
        )
        print(
            f"{n:3d}/{len(sample)} {answer.timings['total_s']:6.1f}s refused={answer.refused} "
            f"supported={rows[-1]['supported']}/{len(sentences)}  {answer.text[:70]!r}"
        )

    answered = [r for r in rows if not r["refused"]]
    all_sentences = sum(r["sentences"] for r in answered)
    ttft = [r["first_token_s"] for r in answered if r["first_token_s"] is not None]
    tokens = sum(r["completion_tokens"] or 0 for r in answered)
    generate_time = sum(r["total_s"] for r in answered)
    summary = {
        "llm": llm.name,
        "collection": args.collection,
        "questions": len(rows),
        "refused": sum(r["refused"] for r in rows),
        "contains_gold_answer": round(sum(r["contains_gold"] for r in rows) / len(rows), 3),
        "supported_sentence_share": round(sum(r["supported"] for r in answered) / all_sentences, 3)
        if all_sentences
        else None,
        "first_token_s_p50": round(statistics.median(ttft), 2) if ttft else None,
        "total_s_p50": round(statistics.median(r["total_s"] for r in rows), 2),
        "total_s_max": round(max(r["total_s"] for r in rows), 2),
        "completion_tokens_per_s": round(tokens / generate_time, 2) if generate_time else None,
        "cpu_cores": os.cpu_count(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
