"""Search a collection: dense (FAISS), BM25, or both fused (by normalised scores, or by
reciprocal rank); then rerank.

searcher = Searcher(collection, settings)
result = searcher.search("what does the reranker do?")   # SearchResult, best hit first
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import PurePath
from typing import TYPE_CHECKING, get_args

import numpy as np

from rag.collection import Collection
from rag.embedding import Embedder, embedder_for
from rag.errors import ConfigError
from rag.filters import Where
from rag.glossary import Glossary
from rag.index import index_params
from rag.models import set_torch_threads
from rag.rerank import CROSS_ENCODER, Reranker, RerankerChoice, choose_reranker
from rag.settings import SearchMode, Settings
from rag.types import Chunk, Hit, SearchResult

# Passages' token embeddings for a MaxSim reranker (rag/token_cache.py), inside the collection.
RERANK_CACHE = "cache/reranker-tokens.sqlite"

if TYPE_CHECKING:
    from rag.lexical import LexicalIndex

logger = logging.getLogger(__name__)

SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)
# A printed page holds about 3,000 characters: the stretch of a page-less document that counts as
# one page for `chunks_per_page`.
TEXT_PAGE_CHARS = 3000
# Up to this many chunks in scope, a filtered dense search scores their stored vectors exactly.
EXACT_FILTER_LIMIT = 50_000


def check_query(text: str, limit: int) -> None:
    """Refuse an empty question or one over `limit` characters, in one line, before any model
    sees it: a pasted 100 KB "question" would otherwise hold the shared worker for minutes."""
    if not text.strip():
        raise ConfigError("the query is empty")
    if len(text) > limit:
        raise ConfigError(
            f"the question is {len(text):,} characters long; the limit is {limit:,} "
            "(setting max_question_chars): ask about one thing at a time"
        )


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[int, float]]:
    """Fuse ranked key lists: score(key) = sum over lists of weight / (k + rank), rank from 1
    (every weight 1 unless given)."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    return _best_first(scores)


def score_fusion(
    rankings: Sequence[tuple[Sequence[int], Sequence[float]]], weights: Sequence[float]
) -> list[tuple[int, float]]:
    """Fuse (keys, scores) lists by a weighted sum of min-max normalised scores: within each
    list its best candidate scores 1 and its last 0, and a key missing from a list gets 0 there.

    Unlike reciprocal rank, this keeps how far apart the candidates are: a chunk far ahead in one
    retriever stays ahead of chunks that both retrievers rank middling. A list whose candidates
    all score the same gives each of them 1."""
    scores: dict[int, float] = {}
    for (keys, values), weight in zip(rankings, weights, strict=True):
        if not len(keys):
            continue
        low, high = min(values), max(values)
        for key, value in zip(keys, values, strict=True):
            normalised = (value - low) / (high - low) if high > low else 1.0
            scores[key] = scores.get(key, 0.0) + weight * normalised
    return _best_first(scores)


def fuse_hybrid(
    settings: Settings,
    dense: tuple[Sequence[int], Sequence[float]],
    lexical: tuple[Sequence[int], Sequence[float]],
) -> list[tuple[int, float]]:
    """Hybrid search's (key, score) list, best first, from the dense and BM25 (keys, scores),
    joined as `settings` say (hybrid_fusion, dense_weight, rrf_k)."""
    weights = (settings.dense_weight, 1.0 - settings.dense_weight)
    if settings.hybrid_fusion == "rrf":
        return reciprocal_rank_fusion([dense[0], lexical[0]], settings.rrf_k, weights)
    return score_fusion([dense, lexical], weights)


def with_document_prior(hits: Sequence[Hit], weight: float) -> list[Hit]:
    """`hits` re-scored by `document_prior`, their documents being their chunks' sources."""
    if not weight:
        return list(hits)
    moved = document_prior(
        list(enumerate(hit.score for hit in hits)),
        {n: hit.chunk.source for n, hit in enumerate(hits)},
        weight,
    )
    return [replace(hits[n], score=score) for n, score in moved]


def document_prior(
    scored: Sequence[tuple[int, float]], document_of: Mapping[int, str], weight: float
) -> list[tuple[int, float]]:
    """(key, score) pairs re-scored as `(score + weight * best) / (1 + weight)`, `best` the best
    score of the key's document among them, best first (as they came for equal scores;
    `weight` 0: unchanged). A document's best key keeps its score; its others move towards it.

    Within a document the order stays; between documents, a page of the document that matches
    the question best goes ahead of a slightly better page of a document that matches less
    well. Over filings that share one vocabulary, fusing BM25 in brings pages of other filings
    between the right filing's pages; this keeps the right filing's together
    (docs/documents.md, "The document's score"). The order does not change when all scores are
    scaled or shifted alike, and hybrid scores stay within 0 to 1."""
    if not weight:
        return list(scored)
    best: dict[str, float] = {}
    for key, score in scored:
        document = document_of[key]
        best[document] = max(best.get(document, score), score)
    moved = [
        (key, (score + weight * best[document_of[key]]) / (1.0 + weight)) for key, score in scored
    ]
    return sorted(moved, key=lambda item: -item[1])


def _best_first(scores: dict[int, float]) -> list[tuple[int, float]]:
    # Ties break on the key so the same input always gives the same order.
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def per_page_limit(hits: Sequence[Hit], per_page: int) -> list[Hit]:
    """`hits` in order, keeping at most `per_page` of any one page of any one document (0: all).

    Neighbouring chunks of one page overlap and say much the same; five results from five pages
    find the evidence page more often than three of the same page (docs/documents.md). A
    document without pages (Markdown, text, HTML: all "page 1") counts as pages of
    TEXT_PAGE_CHARS characters, so a long article is not cut to one chunk."""
    if not per_page:
        return list(hits)
    seen: dict[tuple[str, int, int], int] = {}
    kept = []
    for hit in hits:
        page = page_key(hit.chunk)
        if seen.get(page, 0) < per_page:
            seen[page] = seen.get(page, 0) + 1
            kept.append(hit)
    return kept


def page_key(chunk: Chunk) -> tuple[str, int, int]:
    """(document, page, stretch): the page a chunk is on, for a PDF; for a document without
    pages, its stretch of about a printed page's length."""
    if PurePath(chunk.source).suffix.lower() == ".pdf":
        return (chunk.document_id, chunk.page, 0)
    return (chunk.document_id, chunk.page, chunk.start // TEXT_PAGE_CHARS)


class Searcher:
    """Retrieval over one collection, with an optional reranking stage (MaxSim or cross-encoder)."""

    def __init__(
        self,
        collection: Collection,
        settings: Settings,
        embedder: Embedder | None = None,
        reranker: Reranker | str | None = "auto",
    ) -> None:
        collection.check_embedder(settings.embedding_model)
        if embedder is not None:
            collection.check_embedder(embedder.name)
        set_torch_threads(settings.torch_threads)
        self.collection = collection
        self.settings = settings
        self._own_embedder = embedder is None
        self.embedder: Embedder = embedder or embedder_for(settings, collection.embedder.name)
        self._params = index_params(settings)
        self._reranker_arg = reranker
        self._reranker_choice: RerankerChoice | None = None
        self._allowed: dict[Where, tuple[int, np.ndarray]] = {}
        # Words a question's terms add to it for the first stage; a bad glossary fails here.
        self.glossary = Glossary.load(settings.query_glossaries)
        # The settings' scope (`--where`) unless a call gives its own; a bad one fails here.
        self.where = Where.parse(settings.where)

    def reranker_choice(self) -> RerankerChoice:
        """Which reranker search uses (resolved once): the one given, the collection's own, or
        the configured one; or none, with the reason reranking is off."""
        if self._reranker_choice is None:
            if self._reranker_arg == "auto":
                registered = self.collection.registered_reranker()
                self._reranker_choice = choose_reranker(
                    registered.path if registered else None,
                    self.settings.reranker,
                    self.settings.rerank,
                    self.settings.device,
                    self.settings.rerank_max_length,
                    registered.fusion if registered else None,
                    registered.kind if registered else CROSS_ENCODER,
                    cache=self.collection.path / RERANK_CACHE,
                    cache_mb=self.settings.rerank_cache_mb,
                )
            elif self._reranker_arg is None or isinstance(self._reranker_arg, str):
                self._reranker_choice = RerankerChoice(None, "reranking is off")
            else:
                self._reranker_choice = RerankerChoice(self._reranker_arg)
        return self._reranker_choice

    def warm_reranker(self, progress: bool = False) -> int:
        """Encode every live chunk for the reranker's cache (a MaxSim reranker with one), so
        that first questions rerank as fast as later ones; how many were encoded (0: nothing to
        do, or a reranker without a cache)."""
        reranker = self.reranker_choice().reranker
        warm = getattr(reranker, "warm", None)
        if warm is None:
            return 0
        keys, _ = self.collection.store.live_texts()
        chunks = self.collection.store.chunks(keys.tolist())
        return int(warm([chunk.text for chunk in chunks.values()], progress=progress))

    def retrieve(
        self, query: str, k: int, mode: str | None = None, where: Where | None = None
    ) -> list[Hit]:
        """First-stage hits (no reranking), best first, at most k; with `where`, only chunks it
        allows, chosen before ranking so that a scoped search still gets its k best."""
        mode = mode or self.settings.search_mode
        if mode not in SEARCH_MODES:
            raise ConfigError(f"unknown search mode {mode!r} (valid: {', '.join(SEARCH_MODES)})")
        check_query(query, self.settings.max_question_chars)
        where = self.where if where is None else where
        allowed = self.allowed_keys(where)
        if allowed is not None and not len(allowed):
            return []
        query = self.glossary.expand(query)
        depth = max(k, self.settings.candidates)
        if mode == "dense":
            keys, scores = self._dense(query, k, allowed)
            return self._hits(keys, scores, "dense")
        if mode == "bm25":
            keys, scores = self._lexical(self.collection.lexical_index(), query, k, allowed)
            return self._hits(keys, scores, "bm25")
        dense = self._dense(query, depth, allowed)
        lexical = self._lexical(self.collection.lexical_index(), query, depth, allowed)
        prior = self.settings.document_prior
        fused = fuse_hybrid(self.settings, dense, lexical)[: depth if prior else k]
        hits = self._hits([key for key, _ in fused], [score for _, score in fused], "hybrid")
        return with_document_prior(hits, prior)[:k]

    def allowed_keys(self, where: Where | None) -> np.ndarray | None:
        """The chunk keys `where` allows (None: no filter), cached for the store's generation."""
        if not where:
            return None
        generation = self.collection.store.generation
        cached = self._allowed.get(where)
        if cached is None or cached[0] != generation:
            cached = (generation, self.collection.store.live_keys_where(where))
            self._allowed = {where: cached}
        return cached[1]

    def search(
        self,
        query: str,
        top_k: int | None = None,
        mode: str | None = None,
        rerank: bool = True,
        where: Where | None = None,
    ) -> SearchResult:
        """Retrieve, rerank the top `rerank_depth` when a reranker is available, keep at most
        `chunks_per_page` chunks of any one page (the best ones), cut to top_k."""
        top_k = top_k or self.settings.top_k
        per_page = self.settings.chunks_per_page
        # Room to skip a page's further chunks and still fill top_k.
        depth = max(top_k, self.settings.candidates) if per_page else top_k
        notices: list[str] = []
        where = self.where if where is None else where
        allowed = self.allowed_keys(where)
        if where and allowed is not None and not len(allowed):
            notices.append(f"no chunk matches --where {where.describe()}")
        if added := self.glossary.additions(query):
            notices.append(f"also searched for the glossary's words: {'; '.join(added)}")
        choice = self.reranker_choice() if rerank else RerankerChoice(None, None)
        started = time.perf_counter()
        if choice.reranker is None:
            if choice.reason:
                notices.append(choice.reason)
            hits = per_page_limit(self.retrieve(query, depth, mode, where), per_page)
            timings = {"retrieve_s": time.perf_counter() - started}
            return SearchResult(query, tuple(hits[:top_k]), tuple(notices), timings)
        rerank_depth = self.settings.rerank_depth
        candidates = self.retrieve(query, max(depth, rerank_depth), mode, where)
        retrieved = time.perf_counter()
        head = choice.reranker.rerank(query, candidates[:rerank_depth])
        timings = {
            "retrieve_s": retrieved - started,
            "rerank_s": time.perf_counter() - retrieved,
        }
        # Below the reranked head, first-stage order fills the places repeated pages left.
        ranked = per_page_limit([*head, *candidates[rerank_depth:]], per_page) if per_page else head
        return SearchResult(query, tuple(ranked[:top_k]), tuple(notices), timings)

    def _dense(
        self, query: str, k: int, allowed: np.ndarray | None = None
    ) -> tuple[list[int], list[float]]:
        index = self.collection.dense_index(self._params)
        current = self.collection.embedder.name
        if current != self.embedder.name:
            # `rag tune retriever` swapped the collection's embedder while this searcher lived.
            if not self._own_embedder:
                self.collection.check_embedder(self.embedder.name)
            self.embedder = embedder_for(self.settings, current)
        vector = self.embedder.embed([query])
        if allowed is not None:
            return self._dense_within(vector[0], k, allowed, index.size)
        scores, keys = index.search(vector, k)
        found = [
            (int(key), float(score))
            for key, score in zip(keys[0], scores[0], strict=True)
            if key >= 0
        ]
        return [key for key, _ in found], [score for _, score in found]

    def _dense_within(
        self, vector: np.ndarray, k: int, allowed: np.ndarray, size: int
    ) -> tuple[list[int], list[float]]:
        """Exact top k among the allowed chunks: scored from their stored vectors when they are
        few, else the index searched ever deeper until k allowed ones are found."""
        if len(allowed) <= EXACT_FILTER_LIMIT:
            vectors = self.collection.store.vectors(allowed, len(vector))
            scores = vectors @ vector
            order = np.argsort(-scores, kind="stable")[:k]
            return [int(allowed[i]) for i in order], [float(scores[i]) for i in order]
        index = self.collection.dense_index(self._params)
        depth = 4 * k
        while True:
            scores, keys = index.search(vector[None, :], min(depth, size))
            keep = np.isin(keys[0], allowed)
            if keep.sum() >= k or depth >= size:
                found = list(zip(keys[0][keep][:k], scores[0][keep][:k], strict=True))
                return [int(key) for key, _ in found], [float(score) for _, score in found]
            depth *= 4

    @staticmethod
    def _lexical(
        index: LexicalIndex, query: str, k: int, allowed: np.ndarray | None = None
    ) -> tuple[list[int], list[float]]:
        scores, keys = index.search(query, k, allowed)
        return [int(key) for key in keys], [float(score) for score in np.asarray(scores)]

    def _hits(self, keys: Sequence[int], scores: Sequence[float], stage: str) -> list[Hit]:
        chunks = self.collection.store.chunks(keys)
        return [
            Hit(chunk=chunks[key], score=score, stage=stage)
            for key, score in zip(keys, scores, strict=True)
            if key in chunks
        ]
