"""Training data for `rag tune`, drawn from a collection: queries, positives, mined negatives.

queries = labelled_queries(collection, read_queries(path), read_qrels(path))   # or synthetic ones
train, held_out = split_held_out(queries, 0.2)
examples = mine_negatives(searcher, train, negatives=3)            # query, positive, negatives
before, after, weight = evaluate_reranking(searcher, held_out, reranker)

Queries come from labels (BEIR queries.jsonl + qrels .tsv), from the configured LLM (a question
written for a passage, InPars / Promptagator style), or self-supervised (the title of a document, or
one of its sentences cut out of the passage, as the pseudo-query of that passage). Hard negatives
are chunks the collection's own dense and BM25 retrievers rank high that belong to no relevant
document. Held-out queries measure the model before and after training.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from rag.batch import Question
from rag.collection import Collection
from rag.embedding import Embedder
from rag.errors import ConfigError
from rag.evaluation import is_gold_chunk
from rag.generation import LLM, Message, complete
from rag.rerank import Fusion
from rag.retrieval import Searcher
from rag.templates import render
from rag.types import Chunk

logger = logging.getLogger(__name__)

# How synthetic queries are written. "auto" asks the LLM only when one other than the embedded
# 135M model is configured: that one writes poor queries at about a second each on a CPU.
SYNTHETIC_SOURCES: dict[str, str] = {
    "auto": "the LLM when llm_backend is not 'embedded', else self-supervised",
    "llm": "a question the configured LLM writes for each sampled passage",
    "self": "the document title or a sentence cut out of the passage",
}
FUSION_WEIGHTS = tuple(round(0.1 * n, 1) for n in range(11))
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])")


@dataclass(frozen=True)
class TrainQuery:
    """A query with the chunks that answer it and what is judged relevant: documents (sources),
    or with `passages` the chunks themselves (chunk ids)."""

    qid: str
    text: str
    positives: tuple[int, ...]
    relevant: frozenset[str]
    origin: str  # "labelled" | "questions" | "llm" | "self"
    # The positive's text when it differs from the stored chunk (a cut-out sentence removed).
    positive_text: str | None = None
    passages: bool = False

    def unit(self, chunk: Chunk) -> str:
        """What relevance is judged on for this query: the chunk's document, or the chunk."""
        return chunk.id if self.passages else chunk.source

    def __repr__(self) -> str:
        return f"TrainQuery({self.qid!r}, {self.origin}, {len(self.positives)} positives)"


@dataclass(frozen=True)
class Example:
    """One training row: a query, a passage that answers it and passages that do not."""

    query: str
    positive: str
    negatives: tuple[str, ...]

    def __repr__(self) -> str:
        return f"Example({self.query[:40]!r}, {len(self.negatives)} negatives)"

    def to_json(self) -> dict[str, Any]:
        return {"query": self.query, "positive": self.positive, "negatives": list(self.negatives)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Example:
        return cls(str(data["query"]), str(data["positive"]), tuple(data["negatives"]))


class CachingEmbedder:
    """An embedder that remembers query vectors: `prime` embeds many queries in one batched call,
    and the Searcher's one-query calls are then lookups (far faster than one call per query)."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self._cache: dict[str, np.ndarray] = {}

    def __repr__(self) -> str:
        return f"CachingEmbedder({self.inner!r}, {len(self._cache)} cached)"

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def prime(self, texts: Sequence[str]) -> None:
        """Embed the texts not seen yet, in one call."""
        todo = sorted({text for text in texts if text not in self._cache})
        if todo:
            self._cache.update(zip(todo, self.inner.embed(todo), strict=True))

    def embed(self, texts: list[str]) -> np.ndarray:
        self.prime(texts)
        return np.stack([self._cache[text] for text in texts]).astype(np.float32)


# -- reading labels -----------------------------------------------------------------------------


def read_queries(path: Path) -> dict[str, str]:
    """BEIR queries.jsonl: query id -> text."""
    if not path.is_file():
        raise ConfigError(f"queries file not found: {path}")
    found: dict[str, str] = {}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                found[str(record["_id"])] = str(record["text"])
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise ConfigError(f"{path} line {number}: not a BEIR query ({e})") from e
    return found


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR qrels .tsv (query-id, corpus-id, score): query id -> {document id: grade}."""
    if not path.is_file():
        raise ConfigError(f"qrels file not found: {path}")
    judgments: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle, delimiter="\t"):
            if len(row) < 3 or row[0] == "query-id":
                continue
            try:
                judgments.setdefault(row[0], {})[row[1]] = int(row[2])
            except ValueError as e:
                raise ConfigError(f"{path}: bad grade in row {row!r}") from e
    return judgments


def source_matcher(sources: Sequence[str]) -> Callable[[str], str | None]:
    """Map a qrels document id to a collection source: the source itself, a BEIR record source
    ("dataset:id"), or a file whose name without suffix is the id."""
    by_key: dict[str, str] = {}
    for source in sources:
        by_key.setdefault(source, source)
        if ":" in source:
            by_key.setdefault(source.rsplit(":", 1)[1], source)
        by_key.setdefault(Path(source).stem, source)
    return by_key.get


def labelled_queries(
    searcher: Searcher, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]]
) -> list[TrainQuery]:
    """Judged queries whose relevant documents are in the collection. The positive chunk of a
    relevant document is the one the first stage ranks highest for the query (else its first)."""
    collection = searcher.collection
    chunks = chunks_by_key(collection)
    chunks_of: dict[str, list[int]] = {}
    for key in sorted(chunks):
        chunks_of.setdefault(chunks[key].source, []).append(key)
    key_of = {chunk.id: key for key, chunk in chunks.items()}
    match = source_matcher(list(chunks_of))
    found: list[TrainQuery] = []
    missing = 0
    if isinstance(searcher.embedder, CachingEmbedder):
        searcher.embedder.prime([text for qid, text in queries.items() if qid in qrels])
    for qid, text in queries.items():
        relevant = {match(doc) for doc, grade in qrels.get(qid, {}).items() if grade > 0}
        relevant.discard(None)
        if not relevant:
            missing += qid in qrels
            continue
        sources = frozenset(source for source in relevant if source is not None)
        hits = searcher.retrieve(text, 100, "hybrid")
        best: dict[str, int] = {}
        for hit in hits:
            if hit.chunk.source in sources and hit.chunk.source not in best:
                best[hit.chunk.source] = key_of[hit.chunk.id]
        positives = tuple(best.get(source, chunks_of[source][0]) for source in sorted(sources))
        found.append(TrainQuery(qid, text, positives, sources, "labelled"))
    if missing:
        logger.info("%d judged queries name no document of this collection", missing)
    if not found:
        raise ConfigError(
            "no judged query names a document of this collection (qrels document ids must match "
            "the collection's sources, BEIR record ids or file names)"
        )
    return found


def question_queries(searcher: Searcher, questions: Sequence[Question]) -> list[TrainQuery]:
    """Questions with a gold passage (the `rag eval hits` file: `document`, and `paragraph` or
    `page`), judged at the passage level: the chunks of the gold document that hold the gold
    paragraph (or lie on the gold page) are relevant, the document's other chunks are not. The
    positive is the relevant chunk the first stage ranks highest."""
    collection = searcher.collection
    chunks = chunks_by_key(collection)
    by_name: dict[str, list[int]] = {}
    for key in sorted(chunks):
        by_name.setdefault(PurePath(chunks[key].source).name, []).append(key)
    usable = [q for q in questions if q.document and PurePath(q.document).name in by_name]
    if isinstance(searcher.embedder, CachingEmbedder):
        searcher.embedder.prime([q.question for q in usable])
    found: list[TrainQuery] = []
    for question in usable:
        name = PurePath(str(question.document)).name
        gold = [key for key in by_name[name] if is_gold_chunk(chunks[key], question)]
        if not gold:
            continue
        ids = {chunks[key].id: key for key in gold}
        hits = searcher.retrieve(question.question, 100, "hybrid")
        best = next((ids[hit.chunk.id] for hit in hits if hit.chunk.id in ids), gold[0])
        relevant = frozenset(ids)
        found.append(
            TrainQuery(question.id, question.question, (best,), relevant, "questions", None, True)
        )
    skipped = len(questions) - len(found)
    if skipped:
        logger.info("%d questions have no gold passage in this collection", skipped)
    if not found:
        raise ConfigError(
            "no question has a gold passage in this collection (each needs a 'document' naming "
            "one of its files, and a 'paragraph' or 'page' found in it)"
        )
    return found


# -- synthetic queries --------------------------------------------------------------------------


def self_supervised_queries(collection: Collection, limit: int, seed: int = 0) -> list[TrainQuery]:
    """A pseudo-query per sampled chunk: the document title (cut from the passage when it opens
    it), else one of its sentences, cut out of the passage (inverse cloze task)."""
    rng = random.Random(seed)
    keys, texts = collection.store.live_texts()
    titles = {doc.source: doc.title for doc in collection.store.documents()}
    sources = _sources_of(collection, [int(key) for key in keys])
    order = rng.sample(range(len(keys)), k=min(limit, len(keys)))
    seen_titles: set[str] = set()
    found: list[TrainQuery] = []
    for index in order:
        key, text = int(keys[index]), texts[index]
        source = sources[key]
        title = titles.get(source, "").strip()
        query, passage = None, text
        usable_title = (
            title and title not in seen_titles and len(title.split()) >= 4 and title != source
        )
        if usable_title and rng.random() < 0.5:
            query = title
            seen_titles.add(title)
            if text.startswith(title):
                passage = text[len(title) :].strip()
        else:
            sentences = [s for s in _SENTENCE_END.split(text) if 5 <= len(s.split()) <= 40]
            if len(sentences) >= 2:
                query = rng.choice(sentences)
                passage = " ".join(text.replace(query, " ").split())
        if query and len(passage.split()) >= 10:
            found.append(
                TrainQuery(
                    f"self-{key}", query, (key,), frozenset({source}), "self", positive_text=passage
                )
            )
    return found


def llm_queries(
    collection: Collection, llm: LLM, limit: int, seed: int = 0, progress: bool = True
) -> list[TrainQuery]:
    """A question the LLM writes for each sampled chunk; chunks it answers badly are skipped."""
    rng = random.Random(seed)
    keys, texts = collection.store.live_texts()
    order = [i for i in rng.sample(range(len(keys)), k=len(keys)) if len(texts[i].split()) >= 20]
    order = order[:limit]
    sources = _sources_of(collection, [int(keys[i]) for i in order])
    found: list[TrainQuery] = []
    for index in tqdm(order, desc="queries", unit="passage", disable=not progress):
        key, text = int(keys[index]), texts[index]
        prompt = render("tune_query", passage=text[:2000])
        reply, _ = complete(llm, [Message("user", prompt)], max_tokens=48, temperature=0.0)
        query = _clean_query(reply)
        if query is not None:
            found.append(TrainQuery(f"llm-{key}", query, (key,), frozenset({sources[key]}), "llm"))
    return found


def _clean_query(reply: str) -> str | None:
    """The first line of an LLM reply as a query, or None when it does not look like one."""
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    if not lines:
        return None
    query = re.sub(r"^(query|question)\s*:\s*", "", lines[0], flags=re.IGNORECASE)
    query = query.strip().strip("\"'`").strip()
    return query if 3 <= len(query.split()) <= 40 else None


# -- splitting and mining -----------------------------------------------------------------------


def split_held_out(
    queries: Sequence[TrainQuery], fraction: float, limit: int | None = None
) -> tuple[list[TrainQuery], list[TrainQuery]]:
    """(train, held-out) by a hash of each query id: stable across runs and machines."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"held-out fraction must be between 0 and 1, got {fraction}")
    train: list[TrainQuery] = []
    held: list[TrainQuery] = []
    for query in queries:
        digest = hashlib.sha256(query.qid.encode("utf-8")).digest()
        bucket = int.from_bytes(digest[:4], "big") / 2**32
        (held if bucket < fraction else train).append(query)
    if limit is not None and len(held) > limit:
        train.extend(held[limit:])
        held = held[:limit]
    if not train or not held:
        raise ConfigError(
            f"{len(queries)} queries are too few to train on and hold some out; "
            "give more queries (--max-queries) or a different --held-out fraction"
        )
    return train, held


def mine_negatives(
    searcher: Searcher,
    queries: Sequence[TrainQuery],
    negatives: int,
    depth: int = 30,
    seed: int = 0,
    progress: bool = True,
) -> list[Example]:
    """One example per (query, positive), with `negatives` passages drawn from the dense and BM25
    top `depth` (interleaved) that are not relevant (nor of a relevant document, when relevance
    is judged by document)."""
    rng = random.Random(seed)
    collection = searcher.collection
    all_positives = sorted({key for query in queries for key in query.positives})
    positive_text = {k: c.text for k, c in collection.store.chunks(all_positives).items()}
    if isinstance(searcher.embedder, CachingEmbedder):
        searcher.embedder.prime([query.text for query in queries])
    examples: list[Example] = []
    for query in tqdm(queries, desc="mine negatives", unit="query", disable=not progress):
        pool: list[str] = []
        seen: set[str] = set()
        dense = searcher.retrieve(query.text, depth, "dense")
        lexical = searcher.retrieve(query.text, depth, "bm25")
        for pair in zip(dense, lexical, strict=False):
            for hit in pair:
                if query.unit(hit.chunk) not in query.relevant and hit.chunk.id not in seen:
                    seen.add(hit.chunk.id)
                    pool.append(hit.chunk.text)
        if len(pool) < negatives:
            continue
        for key in query.positives:
            text = query.positive_text or positive_text.get(key)
            if text:
                examples.append(Example(query.text, text, tuple(rng.sample(pool, negatives))))
    rng.shuffle(examples)
    return examples


# -- held-out evaluation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidates:
    """A held-out query's first-stage candidates, in first-stage order, with the unit each is
    judged on (its source, or its chunk id for passage-level queries)."""

    query: TrainQuery
    texts: tuple[str, ...]
    units: tuple[str, ...]


def held_out_candidates(
    searcher: Searcher, held_out: Sequence[TrainQuery], depth: int, mode: str = "hybrid"
) -> list[Candidates]:
    """The `depth` first-stage candidates of each held-out query (what a reranker sees)."""
    if isinstance(searcher.embedder, CachingEmbedder):
        searcher.embedder.prime([query.text for query in held_out])
    found = []
    for query in held_out:
        hits = searcher.retrieve(query.text, depth, mode)
        found.append(
            Candidates(
                query,
                tuple(hit.chunk.text for hit in hits),
                tuple(query.unit(hit.chunk) for hit in hits),
            )
        )
    return found


def reranking_samples(
    candidates: Sequence[Candidates], positive_text: Mapping[int, str]
) -> list[dict[str, Any]]:
    """sentence-transformers reranking-evaluator samples: query, positives, negatives."""
    samples = []
    for item in candidates:
        positives = [item.query.positive_text or positive_text[k] for k in item.query.positives]
        positives += [
            text
            for text, unit in zip(item.texts, item.units, strict=True)
            if unit in item.query.relevant and text not in positives
        ]
        negatives = [
            text
            for text, unit in zip(item.texts, item.units, strict=True)
            if unit not in item.query.relevant
        ]
        if positives and negatives:
            samples.append({"query": item.query.text, "positive": positives, "negative": negatives})
    return samples


def ndcg_at_10(
    rankings: Mapping[str, Sequence[str]], relevant: Mapping[str, frozenset[str]]
) -> float:
    """Mean nDCG@10 (by ranx) of rankings of units (sources, or chunk ids); a unit counts at its
    first (best) position."""
    from ranx import Qrels, Run, evaluate

    run: dict[str, dict[str, float]] = {}
    for qid, sources in rankings.items():
        ranking: dict[str, float] = {}
        for source in sources:
            if source not in ranking:
                ranking[source] = float(len(sources) - len(ranking))
        run[qid] = ranking or {"<none>": 0.0}
    qrels = Qrels({qid: dict.fromkeys(docs, 1) for qid, docs in relevant.items() if docs})
    return round(float(evaluate(qrels, Run(run), "ndcg@10", make_comparable=True)), 4)


@dataclass(frozen=True)
class RerankScores:
    """Held-out nDCG@10: first stage alone, the reranker alone, and fused at the best weight."""

    first_stage: float
    reranker: float
    fused: float
    weight: float
    queries: int

    def to_json(self) -> dict[str, Any]:
        return {
            "first_stage_ndcg@10": self.first_stage,
            "reranker_ndcg@10": self.reranker,
            "fused_ndcg@10": self.fused,
            "fusion_weight": self.weight,
            "queries": self.queries,
        }


class Scorer(Protocol):
    """What held-out evaluation needs from a reranker (CrossEncoderReranker has it)."""

    def score(self, query: str, texts: Sequence[str]) -> list[float]: ...


def evaluate_reranking(
    candidates: Sequence[Candidates], reranker: Scorer, progress: bool = True
) -> RerankScores:
    """Score the candidates once, then nDCG@10 of the first stage, the reranker, and the fusion
    at each of FUSION_WEIGHTS; the best fused weight wins (ties go to the lower weight)."""
    relevant = {item.query.qid: item.query.relevant for item in candidates}
    first = {item.query.qid: list(item.units) for item in candidates}
    scores: dict[str, list[float]] = {}
    for item in tqdm(candidates, desc="held-out", unit="query", disable=not progress):
        scores[item.query.qid] = reranker.score(item.query.text, item.texts)

    def ranked(weight: float | None) -> dict[str, list[str]]:
        out = {}
        for item in candidates:
            raw = scores[item.query.qid]
            fused = raw if weight is None else Fusion(weight).fuse(raw)
            order = sorted(range(len(raw)), key=lambda i: (-fused[i], i))
            out[item.query.qid] = [item.units[i] for i in order]
        return out

    by_weight = {weight: ndcg_at_10(ranked(weight), relevant) for weight in FUSION_WEIGHTS}
    best = max(FUSION_WEIGHTS, key=lambda w: (by_weight[w], -w))
    return RerankScores(
        first_stage=ndcg_at_10(first, relevant),
        reranker=ndcg_at_10(ranked(None), relevant),
        fused=by_weight[best],
        weight=best,
        queries=len(candidates),
    )


def dense_ndcg(
    query_vectors: np.ndarray,
    chunk_keys: np.ndarray,
    chunk_vectors: np.ndarray,
    chunk_of: Mapping[int, Chunk],
    queries: Sequence[TrainQuery],
    depth: int = 100,
) -> float:
    """Held-out nDCG@10 of exact inner-product search over the given chunk vectors (chunks by
    key: each query judges its own unit, the chunk's document or the chunk)."""
    scores = query_vectors @ chunk_vectors.T
    depth = min(depth, len(chunk_keys))
    rankings: dict[str, list[str]] = {}
    for row, query in enumerate(queries):
        top = np.argpartition(-scores[row], depth - 1)[:depth]
        top = top[np.argsort(-scores[row][top], kind="stable")]
        rankings[query.qid] = [query.unit(chunk_of[int(chunk_keys[i])]) for i in top]
    return ndcg_at_10(rankings, {query.qid: query.relevant for query in queries})


# -- helpers ------------------------------------------------------------------------------------


def _sources_of(collection: Collection, keys: Sequence[int]) -> dict[int, str]:
    return {key: chunk.source for key, chunk in collection.store.chunks(keys).items()}


def chunks_by_key(collection: Collection) -> dict[int, Chunk]:
    """Every live chunk, by chunk key."""
    keys, _ = collection.store.live_texts()
    return collection.store.chunks([int(k) for k in keys])
