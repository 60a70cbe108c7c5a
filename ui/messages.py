"""The chat's messages as typed values, kept in session state and rendered by type.

    history: list[ChatMessage] = [UserMessage("Who won?"), reply_for(answer)]
    conversation(history)   # the LLM messages a follow-up is rewritten with

A `UserMessage` is the question as typed; an `AssistantReply` is an answer as the chat shows it
(its text, the sources it cites, the others the LLM was given, the sentences the verifier did not
find supported); an `ErrorMessage` is one line, already escaped for Markdown. No Streamlit here.
"""

from __future__ import annotations

from collections.abc import Collection as Container
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import ClassVar

from rag.errors import RagError
from rag.generation import Message
from rag.types import Answer, Citation
from ui.preview import is_pdf

# The sidebar always shows whether reranking is on, and why not: replies need not repeat it.
RERANK_OFF = "reranking is off"

_MARKDOWN_SPECIALS = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()<>#+-.!|~$:="})


def plain(text: str) -> str:
    """`text` escaped so that Markdown elements (st.error, st.caption) show it literally."""
    return text.translate(_MARKDOWN_SPECIALS)


@dataclass(frozen=True)
class SourceView:
    """One source as the chat shows it; `text` is document text and must be rendered as text."""

    number: int
    name: str
    path: str
    page: int
    score: float
    text: str

    @property
    def heading(self) -> str:
        return f"[{self.number}] {self.name} · page {self.page} · score {self.score:.3f}"

    @property
    def pdf(self) -> bool:
        return is_pdf(self.path)


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


@dataclass(frozen=True)
class ErrorMessage:
    """What went wrong instead of an answer, one line of Markdown with any quoted value escaped."""

    role: ClassVar[str] = "assistant"
    markdown: str


ChatMessage = UserMessage | AssistantReply | ErrorMessage


def format_citation(citation: Citation) -> SourceView:
    """The view of source [n]: file name up front, full path kept for a tooltip and the preview."""
    chunk = citation.chunk
    name = PurePath(chunk.source).name or chunk.source
    return SourceView(citation.n, name, chunk.source, chunk.page, citation.score, chunk.text)


def reply_for(answer: Answer, shown: Container[str] = ()) -> AssistantReply:
    """The assistant's reply for an answer, minus the notices already shown."""
    cited = {c.n for c in answer.citations}
    return AssistantReply(
        text=answer.text,
        refused=answer.refused,
        cited=tuple(format_citation(c) for c in answer.citations),
        others=tuple(format_citation(c) for c in answer.sources if c.n not in cited),
        unsupported=tuple(_one_line(s.text) for s in answer.sentences if not s.supported),
        notices=tuple(n for n in answer.notices if n not in shown and not n.startswith(RERANK_OFF)),
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
