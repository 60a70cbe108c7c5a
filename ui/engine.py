"""The chat's answering engine: one collection and its searchers, confined to one worker thread.

    engine = Engine(index_dir, "demo", settings)
    status = engine.status()                        # counts, embedder, why reranking is off
    for event in engine.answer(llm, settings, "Who won?", history=[]):
        ...                                         # SourcesFound, AnswerToken..., AnswerDone
    engine.close()

No Streamlit here: the app caches one engine per collection and renders what it yields. The
chat's calls into rag/ that build the answering stack are `build_searcher`, `build_answerer`
and `build_llm`; those that read the collection's manifest are `describe` and
`manifest_unchanged`. Nothing else in ui/ builds a searcher, an answerer or an LLM, or reads a
manifest.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, TypeVar

from rag.collection import MANIFEST, STORE, Collection
from rag.errors import RagError
from rag.generation import LLM, Message, make_llm
from rag.manifest import read_manifest
from rag.pipeline import Answerer
from rag.rerank import MaxSimReranker, Reranker
from rag.retrieval import Searcher
from rag.settings import Settings
from rag.tune.progress import TuneProgress
from rag.types import AnswerEvent

T = TypeVar("T")


# -- the chat's calls into rag/ that build the answering stack -----------------------------------


def build_searcher(
    collection: Collection, settings: Settings, shared: Searcher | None = None
) -> Searcher:
    """The searcher `settings` describe over `collection`.

    Given `shared`, the new searcher reuses its embedder and, when `settings.rerank` is on and
    `shared` resolved a reranker, that reranker, so that switching the search mode or reranking
    in the sidebar loads no model again.
    """
    if shared is None:
        return Searcher(collection, settings)
    choice = shared.reranker_choice()
    reranker = choice.reranker if settings.rerank and choice.reranker is not None else "auto"
    return Searcher(collection, settings, embedder=shared.embedder, reranker=reranker)


def build_answerer(searcher: Searcher, llm: LLM, settings: Settings) -> Answerer:
    """The answering pipeline over `searcher`, writing with `llm`."""
    return Answerer(searcher, llm, settings)


def build_llm(settings: Settings) -> LLM:
    """The LLM the settings name (a ConfigError, one line, when it cannot be made)."""
    return make_llm(settings)


# -- the chat's calls into rag/ that read the collection's manifest ------------------------------


@dataclass(frozen=True)
class CollectionStatus:
    """What the sidebar says about the open collection."""

    documents: int
    chunks: int
    embedder: str
    reranking_off: str | None  # why reranking is off, None when a reranker is in use
    reranker: str | None = None  # what the reranker in use is, in words


def describe(collection: Collection, searcher: Searcher) -> CollectionStatus:
    """Counts, embedder and reranker state (engine thread only: it reads SQLite and may load
    the reranker, once)."""
    documents, chunks = collection.store.counts()
    choice = searcher.reranker_choice()
    named = None if choice.reranker is None else reranker_name(collection, choice.reranker)
    return CollectionStatus(documents, chunks, collection.embedder.name, choice.reason, named)


def reranker_name(collection: Collection, reranker: Reranker) -> str:
    """What the reranker is, as the sidebar says it: its kind (a MaxSim late-interaction model
    or a cross-encoder), whether it is the collection's own, and its model's name."""
    kind = "MaxSim (late interaction)" if isinstance(reranker, MaxSimReranker) else "cross-encoder"
    registered = collection.registered_reranker()
    own = registered is not None and Path(registered.path) == Path(reranker.name)
    whose = ", this collection's own" if own else ""
    return f"{kind}{whose}: {PurePath(reranker.name).name or reranker.name}"


def manifest_unchanged(collection: Collection) -> bool:
    """Whether the manifest on disk is still the one `collection` was opened with."""
    try:
        return read_manifest(collection.path / MANIFEST) == collection.manifest
    except (OSError, RagError):
        return False


# -- the engine ---------------------------------------------------------------------------------


class Engine:
    """A collection and its Searcher, confined to one worker thread.

    The collection's SQLite connection refuses use from any thread but the one that opened it,
    and Streamlit runs each script rerun on a new thread; so opening and every call happen on
    this engine's own thread, which also serialises the sessions that share it.
    """

    def __init__(self, index_dir: Path, name: str, settings: Settings) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rag-{name}")
        self._searchers: dict[tuple[str, bool, tuple[str, ...]], Searcher] = {}
        try:
            self.collection, self.searcher = self.call(self._open, index_dir, name, settings)
            self._inode = _inode(self.collection.path)
        except BaseException:
            self._pool.shutdown(wait=False)
            raise

    @staticmethod
    def _open(index_dir: Path, name: str, settings: Settings) -> tuple[Collection, Searcher]:
        collection = Collection.open(index_dir, name)
        return collection, build_searcher(collection, settings)

    def current(self) -> bool:
        """False once the collection on disk was re-created or its manifest changed."""
        try:
            same_store = self._inode == _inode(self.collection.path)
        except OSError:
            return False
        return same_store and manifest_unchanged(self.collection)

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `func` on the engine's thread and return (or raise) what it does."""
        return self._pool.submit(func, *args, **kwargs).result()

    def stream(self, make: Callable[[], Iterator[T]]) -> Generator[T, None, None]:
        """Iterate `make()` on the engine's thread, yielding its items here as they come.

        Closing this iterator early (the user asked something else) stops the producer at its
        next item, so an abandoned answer does not hold the engine's thread to its end.
        """
        items: queue.Queue[tuple[str, Any]] = queue.Queue()
        stop = threading.Event()

        def pump() -> None:
            last: tuple[str, Any] = ("end", None)
            try:
                with contextlib.closing(make()) as produced:  # type: ignore[type-var]
                    for item in produced:
                        items.put(("item", item))
                        if stop.is_set():
                            break
            except Exception as e:  # noqa: BLE001 (raised again by the reading thread)
                last = ("error", e)
            finally:
                items.put(last)  # always: the reading thread must never wait forever

        self._pool.submit(pump)
        try:
            while True:
                kind, value = items.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()

    def status(self) -> CollectionStatus:
        """The open collection's counts, embedder and reranker state (the reranker resolved,
        and loaded, once)."""
        return self.call(describe, self.collection, self.searcher)

    def searcher_for(self, mode: str, rerank: bool, where: tuple[str, ...] = ()) -> Searcher:
        """A searcher with these retrieval settings and scope (`--where` strings), sharing the
        embedder and reranker (engine thread only)."""
        key = (mode, rerank, where)
        if key not in self._searchers:
            tuned = self.searcher.settings.model_copy(
                update={"search_mode": mode, "rerank": rerank, "where": where}
            )
            self._searchers[key] = build_searcher(self.collection, tuned, self.searcher)
        return self._searchers[key]

    def training(self) -> TuneProgress | None:
        """The collection's reranker training, when one is running or stopped unfinished (a
        file read: any thread)."""
        progress = TuneProgress.read(self.collection.path)
        return None if progress is None or progress.finished else progress

    def documents(self) -> list[str]:
        """The sources of the collection's documents, sorted (for the chat's picker)."""
        return self.call(lambda: [d.source for d in self.collection.store.documents()])

    def answer(
        self, llm: LLM, settings: Settings, question: str, history: Sequence[Message] = ()
    ) -> Generator[AnswerEvent, None, None]:
        """The answer's events as the Answerer yields them on the engine's thread: searching
        with `settings`' mode and reranking, writing with `llm`. Close it to abandon the answer."""

        def events() -> Iterator[AnswerEvent]:  # on the engine's thread: the searcher uses SQLite
            searcher = self.searcher_for(settings.search_mode, settings.rerank, settings.where)
            return build_answerer(searcher, llm, settings).stream(question, history)

        return self.stream(events)

    def close(self) -> None:
        self._pool.submit(self.collection.close)
        self._pool.shutdown(wait=True)


def _inode(collection_path: Path) -> int:
    return (collection_path / STORE).stat().st_ino
