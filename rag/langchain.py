"""Use a collection inside LangChain: a `BaseRetriever` over the project's search.

retriever = CollectionRetriever.from_collection("papers", top_k=4)
docs = retriever.invoke("what is retrieval-augmented generation?")
docs[0].metadata  # {"source": ..., "page": ..., "chunk_id": ..., "score": ...}
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LangChainDocument
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from rag.collection import Collection
from rag.retrieval import Searcher
from rag.settings import Settings


class CollectionRetriever(BaseRetriever):
    """Hybrid retrieval plus reranking (when available) as a LangChain retriever."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: Searcher
    top_k: int = 5
    mode: str | None = None

    @classmethod
    def from_collection(
        cls, name: str, settings: Settings | None = None, **kwargs: Any
    ) -> CollectionRetriever:
        """Open collection `name` under the settings' index folder."""
        settings = settings or Settings.load()
        collection = Collection.open(settings.index_dir, name)
        return cls(searcher=Searcher(collection, settings), **kwargs)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[LangChainDocument]:
        result = self.searcher.search(query, top_k=self.top_k, mode=self.mode)
        return [
            LangChainDocument(
                page_content=hit.chunk.text,
                metadata={
                    "source": hit.chunk.source,
                    "page": hit.chunk.page,
                    "chunk_id": hit.chunk.id,
                    "score": hit.score,
                    "start": hit.chunk.start,
                    "end": hit.chunk.end,
                },
            )
            for hit in result.hits
        ]
