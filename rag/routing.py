"""Who answers a question: the small span reader, the LLM, or nobody (setting `answer_mode`).

    route = choose_route(span, settings)        # "reader", "llm" or "refused"
    text, check, quote = reader_answer(span)    # when the reader's answer stands

The reader's confidence is a calibrated probability that its span is a right answer (rag/reader
fits it on SQuAD articles the reader was not trained on, with passages that do not hold the answer
among them), so the thresholds mean the same on any collection: at `reader_accept` (0.5) the span
is more likely right than wrong and stands. A question is refused before any LLM call when the
documents more likely do not answer it: a probability from the search's evidence and the reader's
confidence together (rag/answerability.py, setting `min_answerable`), or, where that model does
not apply, the reader's confidence alone under `reader_refuse` (0.1). In between, the LLM
answers, unless it is the embedded SmolLM2, which measured worse than the reader's unsure answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from rag.settings import Settings
from rag.templates import render
from rag.types import AnsweredBy, Quote, SentenceCheck

if TYPE_CHECKING:
    from rag.reader import Span


class Reader(Protocol):
    name: str

    def read(
        self,
        question: str,
        passages: Sequence[tuple[int, str]],
        top: int = 3,
        ranked: bool = False,
    ) -> list[Span]:
        """Best distinct answer spans over the passages, best first (`ranked`: the passages
        come in search order)."""
        ...


def choose_route(
    span: Span | None,
    settings: Settings,
    llm: object = None,
    answerable: float | None = None,
) -> AnsweredBy:
    """Who answers, from the reader's best span (None: it found none), the answer mode, the
    probability that the documents answer the question (rag/answerability.py; None where it does
    not apply, and the reader's confidence alone decides a refusal), and the LLM: one that says
    it is `weaker_than_reader` (the embedded SmolLM2) is not handed the questions the reader is
    unsure of, which the reader then answers, its confidence shown."""
    mode = settings.answer_mode
    if mode == "llm":
        return "llm"
    confidence = span.confidence if span is not None else 0.0
    if span is None:
        return "refused"
    if answerable is None and confidence < settings.reader_refuse:
        return "refused"
    if answerable is not None and answerable < settings.min_answerable:
        return "refused"
    if mode == "extractive" or confidence >= settings.reader_accept:
        return "reader"
    if getattr(llm, "weaker_than_reader", False):
        return "reader"
    return "llm"


def reader_answer(span: Span) -> tuple[str, SentenceCheck, Quote]:
    """The reader's span as the answer text with its citation, its check, and its quote.

    The span is quoted from source [n] character for character, so it is supported by
    construction; how likely it answers the question is the confidence, shown beside it.
    """
    text = f"{span.text} [{span.n}]"
    check = SentenceCheck(text, (span.n,), 1.0, True)
    quote = Quote(span.n, span.sentence_start, span.sentence_end, span.start, span.end)
    return text, check, quote


def hint(span: Span | None) -> str:
    """The reader's best guess for the LLM's prompt ("" when there is none)."""
    if span is None:
        return ""
    return render("answer_hint", n=span.n, span=" ".join(span.text.split()).replace('"', "'"))
