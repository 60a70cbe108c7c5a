"""The collections a server answers from, opened once and shared by every request.

    library = Library(settings)
    result = library.search("papers", "what is BM25?", SearchOptions(top_k=5))
    for event in library.answer("papers", "Who trains the reranker?"):
        ...                          # SourcesFound, AnswerToken..., AnswerDone (as the chat)

Each collection is opened with `rag.stack.Stack`, as `rag ask` opens it, and kept while its store
and manifest files are the same ones: a collection deleted and made again, here or by another
replica, or given a new reranker or embedder by `rag tune`, is opened afresh. A stack replaced
that way is not closed under the requests still using it: its SQLite connection closes when
the last of them lets go.

Requests run on many threads at once: SQLite connections are in serialised mode and FAISS reads
are safe, while the local models (the embedder, the reranker) are wrapped so that one thread at a
time runs each; the LLM calls, the slow part, overlap.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag.collection import MANIFEST, STORE, Collection
from rag.embedding import Embedder, embedder_for
from rag.errors import ConfigError
from rag.filters import DOCUMENT_KEYS, PAGE_KEY, Where
from rag.generation import LLM, Message, make_llm
from rag.pipeline import Answerer
from rag.rerank import Reranker
from rag.retrieval import Searcher
from rag.settings import DEFAULT_EMBEDDER, Settings
from rag.stack import Stack
from rag.types import AnswerEvent, Hit, SearchResult

logger = logging.getLogger(__name__)

# Searchers and answerers kept per collection for distinct (mode, rerank, where) requests.
MAX_VARIANTS = 32


class LockedEmbedder:
    """An embedder that one thread at a time may run (a Hugging Face tokenizer shared by threads
    fails with "Already borrowed"); its other attributes are the wrapped embedder's."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            return self.inner.embed(texts)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.inner, attribute)


class LockedReranker:
    """A reranker that one thread at a time may run."""

    def __init__(self, inner: Reranker) -> None:
        self.inner = inner
        self.name = inner.name
        self._lock = threading.Lock()

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        with self._lock:
            return self.inner.rerank(query, hits)


@dataclass(frozen=True)
class SearchOptions:
    """What one search request may change: how many, which retriever, reranking, the scope."""

    top_k: int | None = None
    mode: str | None = None
    rerank: bool = True
    where: tuple[str, ...] = ()


@dataclass
class Served:
    """One open collection: its stack, the store file it was opened on, and its variants."""

    stack: Stack
    identity: tuple[int, ...]
    reranker: Reranker | None
    answerers: OrderedDict[tuple[str, ...], Answerer] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    filter_keys: tuple[int, frozenset[str]] | None = None


class Library:
    """Open collections by name, with one LLM and one embedder per model shared by all."""

    def __init__(
        self, settings: Settings, *, embedder: Embedder | None = None, llm: LLM | None = None
    ) -> None:
        self.settings = settings
        self._embedders: dict[str, LockedEmbedder] = {}
        if embedder is not None:
            self._embedders[embedder.name] = LockedEmbedder(embedder)
        self._llm = llm
        self._served: dict[str, Served] = {}
        self._lock = threading.Lock()

    # -- shared models ---------------------------------------------------------------------

    def embedder(self, name: str | None = None) -> Embedder:
        """The bi-encoder `name` (the settings' or the default when None), loaded once."""
        name = name or self.settings.embedding_model or DEFAULT_EMBEDDER
        with self._lock:
            if name not in self._embedders:
                self._embedders[name] = LockedEmbedder(embedder_for(self.settings, name))
            return self._embedders[name]

    def given_embedder(self) -> Embedder | None:
        """The embedder the server was started with, if any (ingest jobs use it too)."""
        return next(iter(self._embedders.values()), None) if self._embedders else None

    def llm(self) -> LLM:
        """The LLM the settings name, made once."""
        with self._lock:
            if self._llm is None:
                self._llm = make_llm(self.settings)
            return self._llm

    # -- collections -----------------------------------------------------------------------

    def served(self, name: str) -> Served:
        """Collection `name`, open (opened now, or again when its store was replaced)."""
        with self._lock:
            current = self._served.get(name)
        identity = _identity(self.settings, name)
        if current is not None and current.identity == identity:
            return current
        with Collection.open(self.settings.index_dir, name) as probe:
            embedder = self.embedder(probe.embedder.name)
        stack = Stack.open(self.settings, name, embedder=embedder, llm=self.llm())
        try:
            choice = stack.searcher.reranker_choice()
            reranker = LockedReranker(choice.reranker) if choice.reranker else None
            if reranker is not None:
                searcher = Searcher(
                    stack.collection, self.settings, embedder=embedder, reranker=reranker
                )
                stack = Stack(stack.collection, searcher, stack.llm, self._answerer(searcher))
        except BaseException:
            stack.close()
            raise
        fresh = Served(stack, identity, reranker)
        with self._lock:
            old = self._served.get(name)
            if old is not None and old.identity == fresh.identity:
                fresh.stack.close()  # another request opened it meanwhile
                return old
            self._served[name] = fresh
        return fresh

    def forget(self, name: str) -> None:
        """Stop serving collection `name` (before it is deleted); requests still using it
        finish on the files they have open."""
        with self._lock:
            self._served.pop(name, None)

    def close(self) -> None:
        with self._lock:
            served, self._served = list(self._served.values()), {}
        for entry in served:
            entry.stack.close()

    # -- queries ---------------------------------------------------------------------------

    def search(self, name: str, query: str, options: SearchOptions) -> SearchResult:
        """Search collection `name` as `rag search` does, with a checked scope."""
        served = self.served(name)
        where = self.check_where(served, options.where)
        return served.stack.searcher.search(
            query, top_k=options.top_k, mode=options.mode, rerank=options.rerank, where=where
        )

    def answer(
        self,
        name: str,
        question: str,
        history: Sequence[Message] = (),
        where: tuple[str, ...] = (),
    ) -> Iterator[AnswerEvent]:
        """The answer's events, as `rag ask` and the chat get them, scoped by `where`."""
        served = self.served(name)
        self.check_where(served, where)
        return self._answerer_for(served, where).stream(question, history)

    def check_where(self, served: Served, items: Sequence[str]) -> Where:
        """`items` parsed, refusing a key that no document of the collection has: a misspelt
        key must not quietly match nothing, nor be ignored."""
        where = Where.parse(items)
        known = self._filter_keys(served)
        unknown = sorted({key for key, _ in where.metadata} - known)
        if unknown:
            listing = ", ".join(sorted(known | DOCUMENT_KEYS | {PAGE_KEY}))
            raise ConfigError(
                f"unknown filter key {unknown[0]!r} for collection "
                f"{served.stack.collection.name!r} (known: {listing})"
            )
        return where

    def _filter_keys(self, served: Served) -> frozenset[str]:
        """The metadata keys the collection's live documents have (title, type... and --meta)."""
        store = served.stack.collection.store
        generation = store.generation
        cached = served.filter_keys
        if cached is None or cached[0] != generation:
            keys = {key.lower() for doc in store.documents() for key in doc.fields}
            cached = (generation, frozenset(keys))
            served.filter_keys = cached
        return cached[1]

    def _answerer_for(self, served: Served, where: tuple[str, ...]) -> Answerer:
        if not where:
            return served.stack.answerer
        with served.lock:
            answerer = served.answerers.get(where)
            if answerer is None:
                scoped = self.settings.model_copy(update={"where": where})
                searcher = Searcher(
                    served.stack.collection,
                    scoped,
                    embedder=served.stack.searcher.embedder,
                    reranker=served.reranker or "auto",
                )
                answerer = Answerer(searcher, served.stack.llm, scoped)
                served.answerers[where] = answerer
                while len(served.answerers) > MAX_VARIANTS:
                    served.answerers.popitem(last=False)
            served.answerers.move_to_end(where)
            return answerer

    def _answerer(self, searcher: Searcher) -> Answerer:
        return Answerer(searcher, self.llm(), self.settings)


def _identity(settings: Settings, name: str) -> tuple[int, ...]:
    """Which files collection `name` is now: the store's inode, and the manifest's inode and
    modification time (it is replaced whole when the collection is made or retuned)."""
    folder = settings.index_dir / name
    try:
        store, manifest = (folder / STORE).stat(), (folder / MANIFEST).stat()
    except OSError:
        return (-1,)
    return (store.st_ino, manifest.st_ino, manifest.st_mtime_ns)
