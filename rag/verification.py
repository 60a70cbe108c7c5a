"""Check each answer sentence against the sources it cites, with a small model.

verifier = BiEncoderVerifier(embedder)
checks = check_sentences(answer_text, sources_by_n, verifier, threshold=0.5)
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from rag.embedding import Embedder
from rag.text import CITATION, cited_numbers, split_sentences
from rag.types import SentenceCheck


class Verifier(Protocol):
    name: str

    def support(self, claim: str, passages: list[str]) -> float:
        """How well the passages together support the claim, from 0 to 1."""
        ...


class BiEncoderVerifier:
    """Support = best cosine between the claim and any sentence of the cited passages."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.name = f"bi-encoder:{embedder.name}"

    def support(self, claim: str, passages: list[str]) -> float:
        windows = [s for passage in passages for s in _windows(passage)]
        if not windows or not claim.strip():
            return 0.0
        vectors = self.embedder.embed([claim, *windows])
        best = float(np.max(vectors[1:] @ vectors[0]))
        return max(0.0, min(1.0, best))


def _windows(passage: str) -> list[str]:
    """Single sentences and adjacent pairs: a claim may merge two source sentences."""
    sentences = split_sentences(passage) or [passage]
    pairs = [f"{a} {b}" for a, b in itertools.pairwise(sentences)]
    return sentences + pairs


def check_sentences(
    answer: str, passages: Mapping[int, str], verifier: Verifier, threshold: float
) -> list[SentenceCheck]:
    """Score every sentence of `answer` against the passages it cites.

    A sentence the LLM left uncited (small models often do) is scored against each passage; when
    one supports it, that passage becomes its citation, marked as inferred by the verifier.
    """
    checks = []
    for sentence in split_sentences(answer):
        numbers = tuple(n for n in cited_numbers(sentence) if n in passages)
        claim = CITATION.sub("", sentence).strip()
        if numbers:
            score = verifier.support(claim, [passages[n] for n in numbers])
            checks.append(SentenceCheck(sentence, numbers, score, score >= threshold))
            continue
        scored = [(verifier.support(claim, [text]), n) for n, text in passages.items()]
        score, best = max(scored, default=(0.0, 0))
        supported = score >= threshold
        found = (best,) if supported else ()
        checks.append(SentenceCheck(sentence, found, score, supported, inferred=supported))
    return checks
