"""The chat's messages as typed values, kept in session state and rendered by type.

    history: list[ChatMessage] = [UserMessage("Who won?"), reply_for(answer)]
    conversation(history)   # the LLM messages a follow-up is rewritten with

A `UserMessage` is the question as typed; an `AssistantReply` is an answer as the chat shows it
(its text, who answered and how sure, the sources it cites with the sentences that support the
answer, the others the LLM was given, the sentences the verifier did not find supported); an
`ErrorMessage` is one line, already escaped for Markdown. No Streamlit here.
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection as Container
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import ClassVar

from rag.errors import RagError
from rag.generation import Message
from rag.types import Answer, AnsweredBy, Citation, Quote
from ui.evidence import Highlight, highlights
from ui.preview import is_pdf

# The sidebar always shows whether reranking is on, and why not: replies need not repeat it.
RERANK_OFF = "reranking is off"

_MARKDOWN_SPECIALS = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()<>#+-.!|~$:="})
_SPACES = re.compile(r"[^\S\n]+")


def plain(text: str) -> str:
    """`text` escaped so that Markdown elements (st.error, st.caption) show it literally."""
    return text.translate(_MARKDOWN_SPECIALS)


def inert(text: str) -> str:
    """`text` for st.markdown with HTML allowed, shown literally: HTML-escaped, then
    Markdown-escaped, on one line (`<br>` for line breaks), so no block can start."""
    escaped = plain(html.escape(text, quote=False))  # `&` stays bare: entities must survive
    return "<br>".join(_SPACES.sub(" ", line) for line in escaped.split("\n"))


def passage_markup(text: str, marks: Sequence[Highlight]) -> str:
    """`text` made inert, each highlighted sentence in <mark>, an answer span in <strong>."""
    parts, at = [], 0
    for mark in sorted(marks, key=lambda m: m.start):
        start, end = max(mark.start, at), min(mark.end, len(text))
        if start >= end:
            continue
        first, last = mark.span or (start, start)
        first, last = min(max(first, start), end), min(max(last, start), end)
        inner = inert(text[start:first])
        if first < last:
            inner += f"<strong>{inert(text[first:last])}</strong>"
        inner += inert(text[max(first, last) : end])
        parts += [inert(text[at:start]), f"<mark>{inner}</mark>"]
        at = end
    parts.append(inert(text[at:]))
    return "".join(parts)


@dataclass(frozen=True)
class SourceView:
    """One source as the chat shows it; `text` is document text and must be rendered as text
    (or as `markup`, which escapes it). `rank` of `of`: its place among the passages found, the
    retrieval score kept only for the tooltip; `highlights`: the sentences that support the
    answer."""

    number: int
    name: str
    path: str
    page: int
    score: float
    text: str
    rank: int = 1
    of: int = 1
    highlights: tuple[Highlight, ...] = ()

    @property
    def heading(self) -> str:
        return f"[{self.number}] {self.name} · page {self.page} · match {self.rank} of {self.of}"

    @property
    def tooltip(self) -> str:
        """The full path and the raw retrieval score, for whoever wants them."""
        return f"retrieval score {self.score:.3f} · {self.path}"

    @property
    def pdf(self) -> bool:
        return is_pdf(self.path)

    @property
    def markup(self) -> str:
        """The passage as inert HTML with its supporting sentences marked."""
        return passage_markup(self.text, self.highlights)

    @property
    def quotes(self) -> tuple[str, ...]:
        """The text of the highlighted sentences (found again on a PDF's page image)."""
        return tuple(self.text[h.start : h.end] for h in self.highlights)


@dataclass(frozen=True)
class UserMessage:
    """A question as the user typed it."""

    role: ClassVar[str] = "user"
    text: str


@dataclass(frozen=True)
class AssistantReply:
    """An answer as the chat shows it: text, cited and other sources, unsupported sentences,
    and the notices not shown before."""

    role: ClassVar[str] = "assistant"
    text: str
    refused: bool
    cited: tuple[SourceView, ...]
    others: tuple[SourceView, ...]
    unsupported: tuple[str, ...]
    notices: tuple[str, ...]
    answered_by: AnsweredBy = "llm"
    confidence: float | None = None  # the small reader's, calibrated; None: it did not run
    answerable: float | None = None  # that the documents answer it (rag/answerability.py)
    quote: Quote | None = None  # where a reader's answer is in its source (marked in `cited`)
    checked: int = 0  # answer sentences the verifier checked

    @property
    def who(self) -> str:
        """Who answered and how sure, in words: "Answered by the small reader, quoting source [2]
        · 87 % sure"."""
        sure = None if self.confidence is None else percent(self.confidence)
        if self.answered_by == "reader":
            quoted = f", quoting source [{self.cited[0].number}]" if self.cited else ""
            return f"Answered by the small reader{quoted}" + (f" · {sure} sure" if sure else "")
        if self.answered_by == "refused":
            reasons = [f"the small reader's best guess was {sure} sure"] if sure else []
            if sure and self.answerable is not None:
                reasons.append(f"{percent(self.answerable)} likely they do")
            why = f" ({'; '.join(reasons)})" if reasons else ""
            return f"Not answered: the sources do not seem to say{why}"
        line = "Written by the LLM from the sources"
        if sure:
            line += f" (the small reader was only {sure} sure)"
        if self.checked:
            supported = self.checked - len(self.unsupported)
            line += f" · {supported} of {self.checked} sentences backed by the sources they cite"
        return line


@dataclass(frozen=True)
class ErrorMessage:
    """What went wrong instead of an answer, one line of Markdown with any quoted value escaped."""

    role: ClassVar[str] = "assistant"
    markdown: str


ChatMessage = UserMessage | AssistantReply | ErrorMessage


def percent(probability: float) -> str:
    """A calibrated probability as a person reads it, "87 %": never 0 or 100, which it is not."""
    return f"{min(99, max(1, round(probability * 100)))} %"


def format_citation(
    citation: Citation, rank: int = 1, of: int = 1, marks: tuple[Highlight, ...] = ()
) -> SourceView:
    """The view of source [n]: file name up front, full path kept for a tooltip and the preview."""
    chunk = citation.chunk
    name = PurePath(chunk.source).name or chunk.source
    return SourceView(
        citation.n, name, chunk.source, chunk.page, citation.score, chunk.text, rank, of, marks
    )


def reply_for(answer: Answer, shown: Container[str] = ()) -> AssistantReply:
    """The assistant's reply for an answer, minus the notices already shown."""
    cited = {c.n for c in answer.citations}
    ranks = {c.n: rank for rank, c in enumerate(answer.sources, start=1)}
    marks = highlights(answer)

    def view(c: Citation) -> SourceView:
        rank = ranks.get(c.n, c.n)
        return format_citation(c, rank, max(len(answer.sources), rank), marks.get(c.n, ()))

    return AssistantReply(
        text=answer.text,
        refused=answer.refused,
        cited=tuple(view(c) for c in answer.citations),
        others=tuple(view(c) for c in answer.sources if c.n not in cited),
        unsupported=tuple(_one_line(s.text) for s in answer.sentences if not s.supported),
        notices=tuple(n for n in answer.notices if n not in shown and not n.startswith(RERANK_OFF)),
        answered_by=answer.answered_by,
        confidence=answer.confidence,
        answerable=answer.answerable,
        quote=answer.quote,
        checked=len(answer.sentences) if answer.answered_by == "llm" else 0,
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def error_message(error: RagError | str) -> ErrorMessage:
    """The one-line error a person sees, escaped: its text may quote names and values."""
    return ErrorMessage(plain(str(error)))


def conversation(history: Sequence[ChatMessage]) -> list[Message]:
    """The earlier questions and answers as LLM messages, so that a follow-up can be rewritten;
    a question that got an error instead of an answer is left out with it."""
    messages = []
    for question, reply in zip(history[::2], history[1::2], strict=False):
        if isinstance(question, UserMessage) and isinstance(reply, AssistantReply):
            messages += [Message("user", question.text), Message("assistant", reply.text)]
    return messages
