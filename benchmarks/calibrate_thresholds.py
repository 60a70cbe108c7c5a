"""Calibrate the refusal threshold (`min_evidence`) and the verifier threshold (`min_support`).

    python benchmarks/calibrate_thresholds.py --collection demo

Evidence: the demo collection holds 8 SQuAD dev articles. Questions about those articles are
answerable, and questions about 8 other articles are not. The score is what `Answerer.evidence`
computes: the best bi-encoder cosine between the question and the retrieved chunks. Support:
"question + gold answer" stands in for an answer sentence. It is scored by the verifier against
its gold paragraph (supported) and against a retrieved paragraph of another article (not).
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from rag.collection import Collection
from rag.retrieval import Searcher
from rag.settings import Settings
from rag.verification import BiEncoderVerifier


def best_threshold(positives: list[float], negatives: list[float]) -> tuple[float, float]:
    """The cut that maximises balanced accuracy, and that accuracy."""
    best = (0.0, 0.0)
    for cut in np.linspace(0, 1, 201):
        tpr = np.mean(np.array(positives) >= cut)
        tnr = np.mean(np.array(negatives) < cut)
        accuracy = (tpr + tnr) / 2
        if accuracy > best[1]:
            best = (float(cut), float(accuracy))
    return best


def describe(values: list[float]) -> dict[str, float]:
    quantiles = np.percentile(values, [5, 25, 50, 75, 95])
    return {
        f"p{p}": round(float(q), 3) for p, q in zip([5, 25, 50, 75, 95], quantiles, strict=True)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="demo")
    parser.add_argument("--squad", type=Path, default=Path("../shared/data/squad/dev-v1.1.json"))
    parser.add_argument("--per-side", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/thresholds.json"))
    args = parser.parse_args()

    settings = Settings.load(device="cpu", progress=False)
    collection = Collection.open(settings.index_dir, args.collection)
    searcher = Searcher(collection, settings, reranker=None)
    inside = {Path(d.source).stem.replace(" ", "_") for d in collection.store.documents()}
    articles = json.loads(args.squad.read_text())["data"]
    rng = random.Random(13)

    def questions(keep) -> list[tuple[str, str, str]]:
        found = [
            (qa["question"], qa["answers"][0]["text"], paragraph["context"])
            for article in articles
            if keep(article["title"])
            for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]
        ]
        return rng.sample(found, min(args.per_side, len(found)))

    answerable = questions(lambda title: title in inside)
    outside_titles = sorted({a["title"] for a in articles} - inside)[:8]
    unanswerable = questions(lambda title: title in outside_titles)

    def evidence(question: str) -> float:
        hits = searcher.retrieve(question, settings.context_chunks)
        vectors = searcher.embedder.embed([question, *(h.chunk.text for h in hits)])
        return float(np.max(vectors[1:] @ vectors[0])) if hits else 0.0

    positive = [evidence(q) for q, _, _ in answerable]
    negative = [evidence(q) for q, _, _ in unanswerable]
    cut, accuracy = best_threshold(positive, negative)
    # The product's rule: refuse before asking the LLM only where 90% of answerable questions
    # still pass; the LLM's own NOT_FOUND answer is the second line of defence.
    keep90 = float(np.percentile(positive, 10))
    refused_unanswerable = float(np.mean(np.array(negative) < keep90))

    verifier = BiEncoderVerifier(searcher.embedder)
    supported = [verifier.support(f"{q} {a}", [context]) for q, a, context in answerable]
    other = [
        verifier.support(f"{q} {a}", [searcher.retrieve(q, 1)[0].chunk.text])
        for q, a, _ in unanswerable
    ]
    support_cut, support_accuracy = best_threshold(supported, other)

    record = {
        "collection": args.collection,
        "evidence": {
            "answerable": describe(positive),
            "unanswerable": describe(negative),
            "best_balanced_threshold": cut,
            "balanced_accuracy": round(accuracy, 3),
            "threshold_keeping_90pct_answerable": round(keep90, 3),
            "unanswerable_refused_at_that_threshold": round(refused_unanswerable, 3),
        },
        "support": {
            "supported": describe(supported),
            "unsupported": describe(other),
            "threshold": support_cut,
            "balanced_accuracy": round(support_accuracy, 3),
        },
        "questions_per_side": args.per_side,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
