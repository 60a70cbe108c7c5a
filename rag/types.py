"""The values that flow between stages: frozen, small, with short reprs."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Literal

from rag.text import embedding_text

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: anything that can break
# a line or move a terminal's cursor.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def sha256_hex(*parts: str | bytes) -> str:
    """SHA-256 over the parts, separated so that ("ab", "c") != ("a", "bc")."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8") if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


def shown(text: str) -> str:
    """`text` with control characters escaped (a newline as `\\n`), for one line of output.

    File names are data: a name holding a newline must not start a line of its own, in a prompt,
    a citation list or a log (`x.md\\n[9] forged.pdf` would pose as a ninth source).
    """
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)


def _short(text: str, limit: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Page:
    """One page of text as a reader numbers it (from 1)."""

    number: int
    text: str

    def __repr__(self) -> str:
        return f"Page({self.number}, {len(self.text)} chars)"


@dataclass(frozen=True)
class Document:
    """A loaded source: its pages of text and the SHA-256 of its raw content."""

    id: str
    source: str
    title: str
    media_type: str
    pages: tuple[Page, ...]
    # Pages that had no extractable text (image-only, scanned): reported, never indexed as empty.
    empty_pages: tuple[int, ...] = ()

    def __repr__(self) -> str:
        return f"Document({self.source!r}, {len(self.pages)} pages, id={self.id[:12]})"

    @property
    def text_chars(self) -> int:
        return sum(len(page.text) for page in self.pages)


@dataclass(frozen=True)
class Chunk:
    """A span of one page of one document: [start, end) character offsets into that page's text."""

    id: str
    document_id: str
    source: str
    page: int
    start: int
    end: int
    text: str
    # What a reader of the page knows and the text does not say (the document's name, the heading
    # above): indexed with the chunk, never quoted as part of it. See ingest/context.py.
    context: str = ""

    @property
    def indexed_text(self) -> str:
        """The text BM25 sees: the context line, then the chunk."""
        return f"{self.context}\n{self.text}" if self.context else self.text

    @property
    def embedded_text(self) -> str:
        """The text the bi-encoder sees: the indexed text, tables as plain rows."""
        return embedding_text(self.indexed_text)

    def __repr__(self) -> str:
        return (
            f"Chunk({self.source!r} p{self.page} [{self.start}:{self.end}] {_short(self.text)!r})"
        )

    @staticmethod
    def make_id(document_id: str, page: int, start: int, text: str) -> str:
        """Content-derived id: the same text at the same place always gets the same id."""
        return sha256_hex(document_id, str(page), str(start), text)


@dataclass(frozen=True)
class Hit:
    """A chunk found by a search, with the score of the last stage that ranked it."""

    chunk: Chunk
    score: float
    stage: str

    def __repr__(self) -> str:
        return f"Hit({self.score:.4f} {self.stage} {self.chunk!r})"

    def to_json(self) -> dict[str, object]:
        return {
            "document": self.chunk.source,
            "page": self.chunk.page,
            "chunk_id": self.chunk.id,
            "score": self.score,
            "text": self.chunk.text,
        }


@dataclass(frozen=True)
class SearchResult:
    """Hits best first, plus notices a person should see (say: reranking is off, and why)."""

    query: str
    hits: tuple[Hit, ...]
    notices: tuple[str, ...] = field(default=())
    # Seconds per stage: "retrieve_s" (first stage), and "rerank_s" when a reranker ran.
    timings: dict[str, float] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, object]:
        return {"hits": [hit.to_json() for hit in self.hits]}


@dataclass(frozen=True)
class Citation:
    """Source [n] as the answer cites it: where it is and what it says."""

    n: int
    chunk: Chunk
    score: float

    def to_json(self) -> dict[str, object]:
        return {
            "n": self.n,
            "document": self.chunk.source,
            "page": self.chunk.page,
            "chunk_id": self.chunk.id,
            "text": self.chunk.text,
        }


@dataclass(frozen=True)
class SentenceCheck:
    """One answer sentence, the sources it cites, and how well they support it (0..1)."""

    text: str
    citations: tuple[int, ...]
    support: float
    supported: bool
    # True when the LLM cited nothing and the verifier found the supporting source itself.
    inferred: bool = False
    # For an unsupported sentence: why, in words a person reads ('the sources do not say "1998"').
    reason: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "text": self.text,
            "citations": list(self.citations),
            "support": round(self.support, 4),
            "supported": self.supported,
            "inferred": self.inferred,
            "reason": self.reason,
        }


# Who wrote an answer: the small span reader (no LLM call), the LLM, or nobody (a refusal).
AnsweredBy = Literal["reader", "llm", "refused"]


@dataclass(frozen=True)
class Quote:
    """The sentence of source [n] that holds the answer: character offsets into the source's
    text, for the sentence and for the answer span inside it."""

    n: int
    start: int
    end: int
    span_start: int
    span_end: int

    def to_json(self) -> dict[str, object]:
        return {
            "n": self.n,
            "start": self.start,
            "end": self.end,
            "span_start": self.span_start,
            "span_end": self.span_end,
        }


@dataclass(frozen=True)
class Answer:
    """A grounded answer: its text with [n] markers, the sources it cites, and their checks.

    `answered_by` says who wrote it and `confidence` how sure the small reader was (a calibrated
    probability that its answer is right; None when the reader did not run), `answerable` how likely
    the documents answer the question at all (rag/answerability.py; None where that model did not
    decide). `quote` points at the sentence that holds a reader's answer.
    """

    question: str
    query: str
    text: str
    refused: bool
    sources: tuple[Citation, ...]
    citations: tuple[Citation, ...]
    sentences: tuple[SentenceCheck, ...]
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] | None = None
    dropped_citations: tuple[int, ...] = ()
    notices: tuple[str, ...] = ()
    answered_by: AnsweredBy = "llm"
    confidence: float | None = None
    answerable: float | None = None
    quote: Quote | None = None

    def __repr__(self) -> str:
        cited = len(self.citations)
        by = self.answered_by
        return f"Answer({_short(self.text, 60)!r}, by={by}, refused={self.refused}, {cited} cited)"

    def to_json(self) -> dict[str, object]:
        return {
            "question": self.question,
            "query": self.query,
            "answer": self.text,
            "refused": self.refused,
            "answered_by": self.answered_by,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "answerable": None if self.answerable is None else round(self.answerable, 4),
            "quote": None if self.quote is None else self.quote.to_json(),
            "citations": [c.to_json() for c in self.citations],
            "sentences": [s.to_json() for s in self.sentences],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "usage": self.usage,
            "dropped_citations": list(self.dropped_citations),
            "notices": list(self.notices),
        }


@dataclass(frozen=True)
class SourcesFound:
    """Stream event: the passages the answer will be written from (before any token)."""

    sources: tuple[Citation, ...]


@dataclass(frozen=True)
class AnswerToken:
    """Stream event: a piece of the answer text as the LLM writes it."""

    text: str


@dataclass(frozen=True)
class AnswerDone:
    """Stream event, always last: the finished, parsed and verified answer."""

    answer: Answer


AnswerEvent = SourcesFound | AnswerToken | AnswerDone
