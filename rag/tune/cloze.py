"""Held-out cut-out-sentence queries, judged over the collection as it would be without them.

    candidates = cloze_candidates(searcher, held_out, depth=30)   # as held_out_candidates
    changed = without_cuts(texts, held_out)                       # for a retriever's test

A sentence cut out of a passage is found by the first stage almost every time while the indexed
passage still holds it word for word (held-out nDCG@10 0.96 to 0.98), and a reranker that matches
tokens finds it too: a test every model passes. Here the held-out sentences are taken out of every
passage that holds them for the whole test. The first stage is rebuilt the way search runs it
(dense over the stored vectors, with the changed passages embedded again; BM25 over the texts as
changed; both fused as the settings say), and the reranker reads the passages as changed. The query
then has to find its passage by what the rest of the passage says, as a person's question does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rag.collection import Collection
from rag.embedding import Embedder
from rag.lexical import LexicalIndex
from rag.retrieval import Searcher, document_prior, fuse_hybrid
from rag.text import embedding_text
from rag.tune.heldout import Candidates, top_rows
from rag.tune.queries import TrainQuery


def cloze_candidates(
    searcher: Searcher, held_out: Sequence[TrainQuery], depth: int
) -> list[Candidates]:
    """The `depth` first-stage candidates of each held-out query over the collection without
    the held-out queries' cut-out sentences (see the module's docs)."""
    collection = searcher.collection
    keys, texts = collection.store.live_texts()
    cuts = [query.cut for query in held_out if query.cut]
    changed = without_cuts(texts, held_out)
    texts = [changed.get(row, text) for row, text in enumerate(texts)]
    vector_keys, vectors = stored_vectors(collection)
    if not np.array_equal(vector_keys, keys):
        raise RuntimeError("the collection changed while it was read")
    # `stored_vectors` built this array for us alone: changed in place.
    vectors = reembedded(vectors, changed, searcher.embedder, copy=False)
    lexical = LexicalIndex.build(keys, texts)
    queries = searcher.embedder.embed([query.text for query in held_out])
    first_depth = max(depth, searcher.settings.candidates)
    ranked: list[list[int]] = []
    for query, vector in zip(held_out, queries, strict=True):
        similarities = vectors @ vector
        top = top_rows(similarities, first_depth)
        lexical_scores, lexical_keys = lexical.search(query.text, first_depth)
        fused = fuse_hybrid(
            searcher.settings,
            ([int(keys[i]) for i in top], [float(similarities[i]) for i in top]),
            ([int(key) for key in lexical_keys], [float(s) for s in lexical_scores]),
        )[:first_depth]
        if prior := searcher.settings.document_prior:
            # As search does: each candidate's score moved towards its document's best.
            read = collection.store.chunks([key for key, _ in fused])
            sources = {key: chunk.source for key, chunk in read.items()}
            fused = document_prior([item for item in fused if item[0] in sources], sources, prior)
        ranked.append([key for key, _ in fused[:depth]])
    # Only the candidates' chunks are read (twice with the document prior), not the collection.
    chunks = collection.store.chunks(sorted({key for hits in ranked for key in hits}))
    changed_keys = {int(keys[row]) for row in changed}
    found = []
    for query, hits in zip(held_out, ranked, strict=True):
        found.append(
            Candidates(
                query,
                tuple(
                    _without(chunks[key].text, cuts) if key in changed_keys else chunks[key].text
                    for key in hits
                ),
                tuple(query.unit(chunks[key]) for key in hits),
            )
        )
    return found


def without_cuts(texts: Sequence[str], held_out: Sequence[TrainQuery]) -> dict[int, str]:
    """Row -> text without the held-out queries' cut-out sentences, for each of `texts` (a
    collection's live texts, in key order) that holds one."""
    cuts = [query.cut for query in held_out if query.cut]
    changed = {row: _without(text, cuts) for row, text in enumerate(texts)}
    return {row: text for row, text in changed.items() if text != texts[row]}


def reembedded(
    vectors: np.ndarray, changed: Mapping[int, str], embedder: Embedder, copy: bool = True
) -> np.ndarray:
    """`vectors` (a copy unless `copy=False`) with the `changed` rows embedded again from their
    new texts, as ingest embeds them."""
    out = vectors.copy() if copy else vectors
    rows = sorted(changed)
    if rows:
        out[rows] = embedder.embed([embedding_text(changed[row]) for row in rows])
    return out


def stored_vectors(collection: Collection) -> tuple[np.ndarray, np.ndarray]:
    """(keys, vectors) of every live chunk, in key order."""
    parts = list(collection.store.live_vectors(collection.embedder.dimension))
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros((0, collection.embedder.dimension))
    return np.concatenate([k for k, _ in parts]), np.concatenate([v for _, v in parts])


def _without(text: str, sentences: Sequence[str]) -> str:
    """`text` with each of `sentences` taken out where it stands."""
    for sentence in sentences:
        if sentence in text:
            text = text.replace(sentence, " ")
    return text
