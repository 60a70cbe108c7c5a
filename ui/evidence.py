"""Which sentences of the cited passages support the answer, to be highlighted in them.

    marks = highlights(answer)   # {source n: (Highlight(start, end, span), ...)}

A reader's answer carries its own quote (the sentence that holds the span, and the span). For an
LLM's answer, each sentence the verifier found supported is matched to the sentence of each
passage it cites that shares the most of its words, after lower-casing and dropping common words
and citation markers: a measure a person can check by reading both, and cheap enough to run on
the chat's thread. Sentences the verifier did not find supported get no highlight: the passage
does not back them, and the reply lists them as unsupported. ui/messages.py renders the marks;
no Streamlit here.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from rag.text import CITATION, sentence_spans
from rag.types import Answer

_WORD = re.compile(r"\w+")
# Words too common to show that two sentences say the same thing.
_COMMON_WORDS = (
    "a an the and or but of to in on at by for with from as is are was were be been being it its "
    "this that these those he she they them his her their there which who whom what when where "
    "why how not no so than then also into onto over under about after before had has have do "
    "does did i we you our your"
)
_COMMON = frozenset(_COMMON_WORDS.split())
# The share of an answer sentence's words a passage sentence must hold to be shown as its support.
MIN_OVERLAP = 0.3


@dataclass(frozen=True)
class Highlight:
    """A sentence of a passage that supports the answer: character offsets into the passage's
    text, and the answer span inside it (a small reader's answer), if any."""

    start: int
    end: int
    span: tuple[int, int] | None = None


def words(text: str) -> set[str]:
    """The telling words of `text`: lower-cased, Unicode-normalised, no common words or `[n]`."""
    text = unicodedata.normalize("NFKC", CITATION.sub(" ", text)).casefold()
    return {w for w in _WORD.findall(text) if w not in _COMMON}


def best_sentence(claim: str, passage: str) -> tuple[int, int] | None:
    """The sentence of `passage` holding the largest share of `claim`'s telling words (the first
    of equals), or None when none holds at least MIN_OVERLAP of them."""
    wanted = words(claim)
    if not wanted:
        return None
    best, best_share = None, MIN_OVERLAP
    for start, end in sentence_spans(passage):
        share = len(wanted & words(passage[start:end])) / len(wanted)
        if share > best_share or (best is None and share >= best_share):
            best, best_share = (start, end), share
    return best


def highlights(answer: Answer) -> dict[int, tuple[Highlight, ...]]:
    """For each cited source [n], the sentences of its text that support the answer."""
    texts = {c.n: c.chunk.text for c in answer.sources}
    quote = answer.quote
    if answer.answered_by == "reader" and quote is not None and quote.n in texts:
        span = (quote.span_start, quote.span_end) if quote.span_end > quote.span_start else None
        return {quote.n: (Highlight(quote.start, quote.end, span),)}
    found: dict[int, list[Highlight]] = {}
    for sentence in answer.sentences:
        if not sentence.supported:
            continue
        for n in sentence.citations:
            if n not in texts:
                continue
            match = best_sentence(sentence.text, texts[n])
            marks = found.setdefault(n, [])
            if match is not None and Highlight(*match) not in marks:
                marks.append(Highlight(*match))
    return {n: tuple(sorted(marks, key=lambda m: m.start)) for n, marks in found.items() if marks}
