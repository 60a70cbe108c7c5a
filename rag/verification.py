"""Check each answer sentence against the sources it cites, with a small model.

verifier = BiEncoderVerifier(embedder)
checks = check_sentences(answer_text, sources_by_n, verifier, threshold=0.5)
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Protocol

import numpy as np

from rag.embedding import Embedder
from rag.types import SentenceCheck

CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
# A sentence ends at . ! or ? followed by space and something that can start a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_LEADING_CITATIONS = re.compile(r"^(?:\[\d+(?:\s*[,;]\s*\d+)*\]\s*)+[.;,]?\s*")


class Verifier(Protocol):
    name: str

    def support(self, claim: str, passages: list[str]) -> float:
        """How well the passages together support the claim, from 0 to 1."""
        ...


def split_sentences(text: str) -> list[str]:
    """Sentences of an answer; a citation-only fragment joins the sentence before it."""
    pieces = [p.strip() for p in _SENTENCE_END.split(text.strip()) if p.strip()]
    sentences: list[str] = []
    for piece in pieces:
        # Markers written after the full stop ("... 24-10. [1] Next ...") belong to the sentence
        # before them.
        lead = _LEADING_CITATIONS.match(piece)
        if sentences and lead:
            sentences[-1] = f"{sentences[-1]} {lead.group(0).strip()}"
            piece = piece[lead.end() :].strip()
        if piece:
            sentences.append(piece)
    return sentences


def cited_numbers(text: str) -> tuple[int, ...]:
    """Source numbers cited in `text`, in order of first appearance."""
    found: list[int] = []
    for group in CITATION.findall(text):
        for number in re.split(r"\s*[,;]\s*", group):
            if int(number) not in found:
                found.append(int(number))
    return tuple(found)


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
