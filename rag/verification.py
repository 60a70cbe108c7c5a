"""Check each answer sentence against the sources it cites: its topic, its facts, its form.

verifier = FactCheckingVerifier(embedder)
checks = check_sentences(answer_text, sources_by_n, verifier, threshold=0.46, question=question)
# [SentenceCheck(..., supported=False, reason='the sources do not say "1998"'), ...]

A bi-encoder measures topic, not truth: "Levi's Stadium hosted it in 1998" scores as high against
a passage that says 2016 as the true sentence does. So a sentence is supported when its topic
score reaches the threshold *and* every number, date and name it states is stated by its cited
passages (or by the question it answers) *and* it does not loop (rag/claims.py).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from rag.claims import missing_facts, new_phrases, repetition, text_keys, word_stems
from rag.embedding import Embedder
from rag.text import CITATION, cited_numbers, split_sentences
from rag.types import SentenceCheck


class Verifier(Protocol):
    name: str

    def support(self, claim: str, passages: list[str]) -> float:
        """How well the passages together support the claim, from 0 to 1."""
        ...


@dataclass(frozen=True)
class Verdict:
    """A support score (0..1) and, when the claim fails for a reason beyond its score, that reason
    in words a person reads."""

    support: float
    reason: str = ""
    # The topic score alone (the bi-encoder's), kept when a fact check sets `support` to 0.
    topic: float | None = None

    @property
    def rank(self) -> tuple[float, float]:
        """Order among passages: support first, then topic (the closest failing passage)."""
        return (self.support, self.support if self.topic is None else self.topic)


@runtime_checkable
class ExplainingVerifier(Verifier, Protocol):
    """A verifier that also says why a claim fails, and knows the question being answered."""

    def judge(self, claim: str, passages: list[str], question: str = "") -> Verdict:
        """The support of `claim` by `passages`; names in `question` need no source."""
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


class FactCheckingVerifier:
    """The bi-encoder's topic score, unless the claim loops or states a fact no cited passage does.

    verifier = FactCheckingVerifier(embedder)
    verifier.judge("Super Bowl 50 was played in 1998.", [passage]).reason
    # 'the sources do not say "1998"'

    Facts are numbers, dates and names (rag/claims.py); with `wording`, also runs of two or more
    words that neither the passages nor the question use ("the river Ruhr" where the passage says
    "the river Aare"): a paraphrase in other words than the sources' may then be flagged, and
    its reason names the words to check.

    A failed claim gets support 0. Passages are data: nothing written in them is followed, only
    their words are compared, and sentences that address a model ("ignore previous
    instructions", "you are now ...") are not read at all: they state nothing about the world, and
    even as topic they could lift a false claim over the threshold.
    """

    def __init__(self, embedder: Embedder, *, wording: bool = True) -> None:
        self.topic = BiEncoderVerifier(embedder)
        self.wording = wording
        self.name = f"facts{'+wording' if wording else ''}+bi-encoder:{embedder.name}"

    def support(self, claim: str, passages: list[str]) -> float:
        return self.judge(claim, passages).support

    def judge(self, claim: str, passages: list[str], question: str = "") -> Verdict:
        passages = [without_instructions(passage) for passage in passages]
        source = "\n".join(passages)
        topic = self.topic.support(claim, passages)
        loop = repetition(claim, f"{source}\n{question}")
        if loop:
            return Verdict(0.0, f'the sentence repeats "{loop}" again and again', topic)
        stated = text_keys(source) | text_keys(question)
        unsaid = [fact.text for fact in missing_facts(claim, stated)]
        if not unsaid and self.wording:
            unsaid = new_phrases(claim, word_stems(source) | word_stems(question))
        if unsaid:
            return Verdict(0.0, f"the sources do not say {_listed(unsaid)}", topic)
        return Verdict(topic, topic=topic)


# Sentences written to steer a language model, not to inform a reader.
_INSTRUCTION = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b[^.]{0,40}?\b(?:instructions?|prompts?)\b"
    r"|\byou are now\b|\bsystem prompt\b|\bnew instructions?\s*:"
    r"|\b(?:mark|treat|rate|score)\b[^.]{0,40}?\bas (?:supported|verified)\b",
    re.IGNORECASE,
)


def without_instructions(passage: str) -> str:
    """`passage` without the sentences that give a language model orders."""
    sentences = split_sentences(passage)
    if not any(_INSTRUCTION.search(sentence) for sentence in sentences):
        return passage
    return " ".join(s for s in sentences if not _INSTRUCTION.search(s))


def _listed(texts: list[str]) -> str:
    quoted = [f'"{text}"' for text in texts[:3]]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


def _windows(passage: str) -> list[str]:
    """Single sentences and adjacent pairs: a claim may merge two source sentences."""
    sentences = split_sentences(passage) or [passage]
    pairs = [f"{a} {b}" for a, b in itertools.pairwise(sentences)]
    return sentences + pairs


def check_sentences(
    answer: str,
    passages: Mapping[int, str],
    verifier: Verifier,
    threshold: float,
    question: str = "",
) -> list[SentenceCheck]:
    """Score every sentence of `answer` against the passages it cites; say why one fails.

    A sentence the LLM left uncited (small models often do) is scored against each passage; when
    one supports it, that passage becomes its citation, marked as inferred by the verifier. Names
    and numbers the `question` states need no source: the answer may repeat what was asked. A
    sentence said twice is flagged the second time.
    """
    checks = []
    said: set[str] = set()
    for sentence in split_sentences(answer):
        numbers = tuple(n for n in cited_numbers(sentence) if n in passages)
        claim = CITATION.sub("", sentence).strip()
        best = 0
        if numbers:
            verdict = _judge(verifier, claim, [passages[n] for n in numbers], question)
        else:
            scored = [
                (_judge(verifier, claim, [text], question), n) for n, text in passages.items()
            ]
            verdict, best = max(scored, key=lambda pair: pair[0].rank, default=(Verdict(0.0), 0))
        supported = verdict.support >= threshold and not verdict.reason
        reason = verdict.reason or _low_support(verdict.support, threshold, bool(numbers))
        key = " ".join(claim.lower().split())
        if key in said and supported:
            supported, reason = False, "the answer says this sentence twice"
        said.add(key)
        inferred = supported and not numbers
        found = numbers or ((best,) if inferred else ())
        checks.append(
            SentenceCheck(
                sentence, found, verdict.support, supported, inferred, "" if supported else reason
            )
        )
    return checks


def _judge(verifier: Verifier, claim: str, passages: list[str], question: str) -> Verdict:
    if isinstance(verifier, ExplainingVerifier):
        return verifier.judge(claim, passages, question)
    return Verdict(verifier.support(claim, passages))


def _low_support(support: float, threshold: float, cited: bool) -> str:
    where = "the cited sources" if cited else "no source"
    verb = "do not say this" if cited else "says this"
    return f"{where} {verb} (support {support:.2f}, below {threshold:.2f})"
