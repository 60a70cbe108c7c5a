"""The query pipeline, top to bottom: rewrite -> retrieve -> rerank -> read -> route ->
generate -> verify. The small span reader answers when it is sure (rag/routing.py); the LLM
writes the rest.

answerer = Answerer(searcher, make_llm(settings), settings)
answer = answerer.ask("Who won Super Bowl 50?")
for event in answerer.stream("And who did they beat?", history=[...]):
    ...  # SourcesFound, then AnswerToken..., then AnswerDone
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING

import numpy as np

from rag.answerability import Answerability
from rag.errors import ConfigError
from rag.generation import LLM, Delta, Done, Message, complete
from rag.retrieval import Searcher, check_query
from rag.routing import Reader, choose_route, hint, reader_answer
from rag.settings import Settings
from rag.templates import render
from rag.text import CITATION, cited_numbers, marker_numbers
from rag.types import (
    Answer,
    AnswerDone,
    AnswerEvent,
    AnswerToken,
    Citation,
    Hit,
    SourcesFound,
    shown,
)
from rag.verification import FactCheckingVerifier, Verifier, check_sentences

if TYPE_CHECKING:
    from rag.reader import Span

logger = logging.getLogger(__name__)

REFUSAL_MARKER = "NOT_FOUND"
REFUSAL_TEXT = "The documents do not contain an answer to this question."
MAX_SENTENCES = 4
# Prompt budgeting without the LLM's tokenizer (a remote endpoint does not share it): English
# runs about 4 characters a token, numbers and odd text fewer, so 3 leaves a margin.
CHARS_PER_TOKEN = 3
SOURCE_HEADER = 80  # "[n] (from "name", page p)" and the quote marks, in characters
MIN_SOURCE_CHARS = 200


class Answerer:
    """Grounded, cited answers from one collection's searcher and one LLM."""

    def __init__(
        self,
        searcher: Searcher,
        llm: LLM,
        settings: Settings,
        verifier: Verifier | None = None,
        reader: Reader | None = None,
    ) -> None:
        self.searcher = searcher
        self.llm = llm
        self.settings = settings
        self.verifier = verifier or FactCheckingVerifier(
            searcher.embedder, wording=settings.verify_wording
        )
        self._reader = reader
        # Retrieval, evidence and verification use local models and one SQLite connection: one
        # thread at a time. Only the LLM calls, the slow part, overlap when threads share this.
        self._local = threading.Lock()

    def ask(self, question: str, history: Sequence[Message] = ()) -> Answer:
        """The finished answer (the stream, drained)."""
        for event in self.stream(question, history):
            if isinstance(event, AnswerDone):
                return event.answer
        raise AssertionError("the answer stream ended without AnswerDone")  # a bug, not input

    def stream(self, question: str, history: Sequence[Message] = ()) -> Iterator[AnswerEvent]:
        """Sources first, then tokens as the LLM writes them, then the checked answer."""
        check_query(question, self.settings.max_question_chars)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        query = self.rewrite(question, history) if history else question
        timings["rewrite_s"] = time.perf_counter() - started

        clock = time.perf_counter()
        with self._local:
            # Time spent waiting for another question's local stages (batch concurrency).
            timings["wait_s"] = time.perf_counter() - clock
            result = self.searcher.search(query, top_k=self.settings.context_chunks)
            searched = time.perf_counter()
            evidence = self.evidence(query, list(result.hits))
            timings["evidence_s"] = time.perf_counter() - searched
        sources = tuple(
            Citation(n, hit.chunk, hit.score) for n, hit in enumerate(result.hits, start=1)
        )
        # Stage by stage: first-stage retrieval, then the cross-encoder (0 when it is off).
        timings["retrieve_s"] = result.timings.get("retrieve_s", searched - clock)
        timings["rerank_s"] = result.timings.get("rerank_s", 0.0)
        yield SourcesFound(sources)

        def finish(text: str, refused: bool, **extra: object) -> AnswerDone:
            if refused:
                extra.setdefault("answered_by", "refused")
            timings["total_s"] = time.perf_counter() - started
            answer = Answer(
                question=question,
                query=query,
                text=text,
                refused=refused,
                sources=sources,
                citations=(),
                sentences=(),
                timings=timings,
                notices=result.notices,
            )
            return AnswerDone(_replace(answer, **extra))

        joint = self.answerability()
        if not sources or (joint is None and evidence < self.settings.min_evidence):
            # Too little support to ask the LLM: it would only invent an answer.
            logger.info("refusing: evidence %.3f < %.3f", evidence, self.settings.min_evidence)
            yield finish(REFUSAL_TEXT, True)
            return

        span: Span | None = None
        if self.settings.answer_mode != "llm":
            clock = time.perf_counter()
            with self._local:
                spans = self.reader.read(
                    query, [(c.n, c.chunk.text) for c in sources], top=1, ranked=True
                )
            timings["read_s"] = time.perf_counter() - clock
            span = spans[0] if spans else None
        answerable = None
        if joint is not None and span is not None:
            answerable = joint.probability(evidence, span.confidence)
        route = choose_route(span, self.settings, self.llm, answerable)
        confidence = None if self.settings.answer_mode == "llm" else _confidence(span)
        if route == "refused":
            logger.info(
                "refusing: evidence %.3f, the reader's confidence %.3f, answerable %s",
                evidence,
                confidence or 0.0,
                "n/a" if answerable is None else f"{answerable:.3f}",
            )
            yield finish(REFUSAL_TEXT, True, confidence=confidence, answerable=answerable)
            return
        if route == "reader" and span is not None:
            text, check, quote = reader_answer(span)
            timings["first_token_s"] = time.perf_counter() - started
            yield AnswerToken(text)
            cited = tuple(c for c in sources if c.n == span.n)
            yield finish(
                text,
                False,
                answered_by="reader",
                confidence=confidence,
                answerable=answerable,
                quote=quote,
                citations=cited,
                sentences=(check,),
            )
            return

        messages = self.messages(question, sources, hint=hint(span))
        clock = time.perf_counter()
        parts: list[str] = []
        usage = None
        for event in self.llm.stream(
            messages,
            max_tokens=self.settings.llm_max_tokens,
            temperature=self.settings.llm_temperature,
        ):
            if isinstance(event, Delta) and event.text:
                if not parts:
                    timings["first_token_s"] = time.perf_counter() - started
                parts.append(event.text)
                yield AnswerToken(event.text)
            elif isinstance(event, Done) and event.usage is not None:
                usage = {
                    "prompt_tokens": event.usage.prompt_tokens,
                    "completion_tokens": event.usage.completion_tokens,
                }
        timings["generate_s"] = time.perf_counter() - clock
        raw = "".join(parts).strip()
        if not raw or raw.upper().startswith(REFUSAL_MARKER) or raw.strip(". ") == REFUSAL_MARKER:
            yield finish(REFUSAL_TEXT, True, usage=usage)
            return

        text, dropped = drop_unknown_citations(raw, len(sources))
        clock = time.perf_counter()
        passages = {c.n: c.chunk.text for c in sources}
        with self._local:
            timings["wait_s"] += time.perf_counter() - clock
            clock = time.perf_counter()
            checks = check_sentences(
                text, passages, self.verifier, self.settings.min_support, question=query
            )
        timings["verify_s"] = time.perf_counter() - clock
        cited_ns = set(cited_numbers(text)) | {n for check in checks for n in check.citations}
        cited_sources = [c for c in sources if c.n in cited_ns]
        notices = list(result.notices)
        if dropped:
            listed = ", ".join(f"[{n}]" for n in dropped)
            notices.append(f"dropped citations to sources that were not given: {listed}")
        yield finish(
            text,
            False,
            confidence=confidence,
            answerable=answerable,
            citations=tuple(cited_sources),
            sentences=tuple(checks),
            usage=usage,
            dropped_citations=dropped,
            notices=tuple(notices),
        )

    @property
    def reader(self) -> Reader:
        """The small span reader (the packaged model unless one was given), loaded on first use."""
        if self._reader is None:
            from rag.reader import SpanReader  # loads ONNX Runtime: only when a question needs it

            self._reader = SpanReader.packaged()
        return self._reader

    def answerability(self) -> Answerability | None:
        """The model that decides refusals from evidence and the reader's confidence together,
        where it applies: a mode that runs the reader, `min_answerable` above 0, and the
        embedder and reader it was fitted with. None: the two separate gates decide."""
        if self.settings.answer_mode == "llm" or self.settings.min_answerable <= 0:
            return None
        model = _packaged_answerability()
        if model is None or not model.applies(self.searcher.embedder.name, self.reader.name):
            return None
        return model

    def rewrite(self, question: str, history: Sequence[Message]) -> str:
        """A follow-up question as a standalone query, written by the LLM from the conversation."""
        turns = "\n".join(f"{m.role}: {m.content}" for m in history[-6:])
        prompt = render("rewrite", history=turns, question=question)
        try:
            text, _ = complete(self.llm, [Message("user", prompt)], max_tokens=64, temperature=0.0)
        except Exception:  # a failed rewrite falls back to the question as asked
            logger.warning(
                "query rewrite failed; searching with the question as asked", exc_info=True
            )
            return question
        rewritten = text.strip().strip('"').splitlines()[0].strip() if text.strip() else ""
        # A weak model sometimes answers instead of rewriting: keep the rewrite only if plausible.
        if not rewritten or len(rewritten) > 4 * len(question) + 200:
            return question
        return rewritten

    def evidence(self, query: str, hits: list[Hit]) -> float:
        """Best bi-encoder cosine between the query and the retrieved chunks (0 when none)."""
        if not hits:
            return 0.0
        vectors = self.searcher.embedder.embed([query, *(hit.chunk.text for hit in hits)])
        return float(np.max(vectors[1:] @ vectors[0]))

    def messages(self, question: str, sources: Sequence[Citation], hint: str = "") -> list[Message]:
        """System rules, then the numbered sources, the question and the reader's hint (if any)
        in the user turn.

        Names and texts are quoted data: a file name cannot leave its quotes or start a line,
        and a text cannot close its quote block. Texts are cut, last source first, so that the
        prompt fits the LLM's context with room for the answer.
        """
        system = render("answer_system", refusal_marker=REFUSAL_MARKER, max_sentences=MAX_SENTENCES)
        s = self.settings
        room = (s.llm_context_tokens - s.llm_max_tokens) * CHARS_PER_TOKEN
        room -= len(system) + len(render("answer_user", sources="", question=question)) + len(hint)
        texts = fit_texts([c.chunk.text for c in sources], room - SOURCE_HEADER * len(sources))
        if not texts:
            raise ConfigError(
                f"the question leaves no room for sources in the LLM's context of "
                f"{s.llm_context_tokens} tokens (setting llm_context_tokens): shorten it"
            )
        blocks = "\n\n".join(
            render(
                "source",
                n=c.n,
                document=quoted_name(PurePath(c.chunk.source).name or c.chunk.source),
                page=c.chunk.page,
                text=_unquotable(text),
            )
            for c, text in zip(sources, texts, strict=False)
        )
        return [
            Message("system", system),
            Message("user", render("answer_user", sources=blocks, question=question) + hint),
        ]


def quoted_name(name: str) -> str:
    """A file name as prompt data: in double quotes, on one line, unable to open a quote block."""
    return '"' + _unquotable(shown(name)).replace('"', "'") + '"'


def _unquotable(text: str) -> str:
    # Source text may not close its own quote block and pose as the prompt.
    return text.replace(">>>", "> > >").replace("<<<", "< < <")


def fit_texts(texts: Sequence[str], room: int) -> list[str]:
    """`texts` in order, cut to `room` characters in all; a text that would get less than
    MIN_SOURCE_CHARS is dropped with the ones after it (a scrap of a source cannot support much)."""
    fitted: list[str] = []
    for text in texts:
        if room < MIN_SOURCE_CHARS:
            break
        fitted.append(text if len(text) <= room else text[: room - 1] + "…")
        room -= len(fitted[-1])
    return fitted


def drop_unknown_citations(text: str, count: int) -> tuple[str, tuple[int, ...]]:
    """Remove citations to sources outside 1..count; return the text and what was dropped."""
    dropped: list[int] = []

    def keep_known(match: re.Match[str]) -> str:
        numbers = marker_numbers(match)
        known = [n for n in numbers if 1 <= n <= count]
        dropped.extend(n for n in numbers if not 1 <= n <= count and n not in dropped)
        return f"[{', '.join(map(str, known))}]" if known else ""

    cleaned = CITATION.sub(keep_known, text)
    # "[5], [12], [38]." leaves "[5], , ." behind: fold the empty list items away.
    cleaned = re.sub(r"\s*,(?:\s*,)+", ",", cleaned)
    cleaned = re.sub(r",\s*([.;:!?]|$)", r"\1", cleaned)
    cleaned = re.sub(r"\s+([.,;])", r"\1", re.sub(r"[ \t]{2,}", " ", cleaned))
    return cleaned.strip(), tuple(dropped)


@functools.cache
def _packaged_answerability() -> Answerability | None:
    return Answerability.packaged()


def _confidence(span: Span | None) -> float:
    return span.confidence if span is not None else 0.0


def _replace(answer: Answer, **changes: object) -> Answer:
    from dataclasses import replace

    return replace(answer, **changes)  # type: ignore[arg-type]
