"""The reader measured on SQuAD questions, in the three situations a search hands it.

    sets = passage_sets(examples, pool, dense=embedder)      # gold, gold + 4 distractors, none
    outcomes = read_all(reader, examples, sets["distractors"])
    summary(outcomes)                                         # exact match, F1, contains gold

"gold": the gold paragraph alone. "distractors": the gold paragraph and the four paragraphs of the
same article a hybrid search ranks highest for the question. "none": the five paragraphs of the
pool a hybrid search ranks highest that hold none of the gold answers; the reader should find
nothing there, so these are the spans its confidence must keep low.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from rag.answer_eval import normalize, token_f1
from rag.embedding import Embedder
from rag.reader.calibration import candidate_features
from rag.reader.data import Example, Paragraph, related_paragraphs
from rag.reader.model import SpanReader, distinct

CONDITIONS = ("gold", "distractors", "none")


@dataclass(frozen=True)
class Outcome:
    """What the reader answered to one question: its best span's text (None: no span), the
    scores against the gold answers, and the best span's calibration features."""

    example: Example
    condition: str
    text: str | None
    confidence: float
    exact: bool
    f1: float
    contains: bool
    features: dict[str, float] | None


def span_scores(text: str, answers: Sequence[str]) -> tuple[bool, float, bool]:
    """Exact match, token F1 and "contains a gold answer" (SQuAD normalisation), best over
    the answers."""
    said = normalize(text)
    golds = [normalize(a) for a in answers]
    exact = any(said == gold for gold in golds)
    f1 = max((token_f1(text, a) for a in answers), default=0.0)
    contains = any(gold and f" {gold} " in f" {said} " for gold in golds)
    return exact, f1, contains


def passage_sets(
    examples: Sequence[Example],
    pool: Sequence[Paragraph],
    dense: Embedder | None,
    distractors: int = 4,
    seed: int = 13,
) -> dict[str, list[list[Paragraph]]]:
    """The passages each example is read against in each of CONDITIONS (the gold paragraph at a
    random place among its distractors, so order teaches nothing)."""
    rng = random.Random(seed)
    near = related_paragraphs(
        examples, pool, distractors, same_article=True, answerless=False, dense=dense
    )
    mixed = []
    for example, found in zip(examples, near, strict=True):
        passages = list(found)
        passages.insert(rng.randrange(len(passages) + 1), example.paragraph)
        mixed.append(passages)
    empty = related_paragraphs(
        examples, pool, distractors + 1, same_article=False, answerless=True, dense=dense
    )
    return {"gold": [[e.paragraph] for e in examples], "distractors": mixed, "none": empty}


def read_all(
    reader: SpanReader,
    examples: Sequence[Example],
    passages: Sequence[Sequence[Paragraph]],
    condition: str,
    with_features: bool = False,
    progress: bool = True,
) -> list[Outcome]:
    """The reader's best span for each example over its passages (numbered from 1)."""
    outcomes = []
    pairs = list(zip(examples, passages, strict=True))
    for example, found in tqdm(pairs, desc=f"reading ({condition})", disable=not progress):
        numbered = [(n, p.text) for n, p in enumerate(found, start=1)]
        features = None
        if with_features:
            texts = dict(numbered)
            candidates = reader.candidates(example.question, numbered)
            best = distinct(candidates, texts, 1)
            text = texts[best[0].n][best[0].start : best[0].end] if best else None
            if best:
                features = candidate_features(example.question, candidates, best, texts)[0]
            confidence = float("nan")
        else:
            spans = reader.read(example.question, numbered, top=1)
            text = spans[0].text if spans else None
            confidence = spans[0].confidence if spans else 0.0
        exact, f1, contains = span_scores(text, example.answers) if text else (False, 0.0, False)
        outcomes.append(
            Outcome(example, condition, text, confidence, exact, f1, contains, features)
        )
    return outcomes


def summary(outcomes: Sequence[Outcome]) -> dict[str, float | int]:
    """Exact match, F1 and contains-gold in percent, over `outcomes`."""
    if not outcomes:
        return {"questions": 0}
    return {
        "questions": len(outcomes),
        "exact_match": round(100 * float(np.mean([o.exact for o in outcomes])), 2),
        "f1": round(100 * float(np.mean([o.f1 for o in outcomes])), 2),
        "contains_gold": round(100 * float(np.mean([o.contains for o in outcomes])), 2),
    }
