"""The answering stack, built one way for every face and job: a collection, its searcher, an LLM,
and the answerer over them.

    with Stack.open(settings, "papers") as stack:
        answer = stack.answerer.ask("What does the reranker do?")

`rag ask`, `rag batch`, the Ray batch workers and the benchmarks build theirs here; a caller that
holds a model already (a test's embedder, the chat's LLM client) passes it in.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from rag.collection import Collection
from rag.embedding import Embedder
from rag.generation import LLM, make_llm
from rag.pipeline import Answerer
from rag.rerank import Reranker
from rag.retrieval import Searcher
from rag.settings import Settings


@dataclass(frozen=True)
class Stack:
    """An open collection and what answers from it; close it (or use `with`) when done."""

    collection: Collection
    searcher: Searcher
    llm: LLM
    answerer: Answerer

    @classmethod
    def open(
        cls,
        settings: Settings,
        name: str,
        *,
        embedder: Embedder | None = None,
        reranker: Reranker | str | None = "auto",
        llm: LLM | None = None,
    ) -> Stack:
        """Open collection `name` from `settings.index_dir` and build its searcher (`embedder` and
        `reranker` as `Searcher` takes them), the LLM `settings` name (unless `llm` is given) and
        the answerer. A failure on the way closes the collection again."""
        collection = Collection.open(settings.index_dir, name)
        try:
            searcher = Searcher(collection, settings, embedder=embedder, reranker=reranker)
            llm = make_llm(settings) if llm is None else llm
            return cls(collection, searcher, llm, Answerer(searcher, llm, settings))
        except BaseException:
            collection.close()
            raise

    def close(self) -> None:
        self.collection.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
