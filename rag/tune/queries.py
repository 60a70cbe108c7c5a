"""The queries `rag tune` trains on: each with the chunks that answer it and what is relevant.

    queries = labelled_queries(searcher, read_queries(path), read_qrels(path))
    queries = question_queries(searcher, read_questions(path))   # a `rag eval hits` file
    queries = self_supervised_queries(collection, 2000)    # or llm_queries(collection, llm, 2000)

Queries come from labels (BEIR queries.jsonl + qrels .tsv), from a questions file with gold
passages, from the configured LLM (a question written for a passage, InPars / Promptagator style),
or self-supervised (the title of a document, or one of its sentences cut out of the passage with its
rarest words dropped, as the pseudo-query of that passage).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np
from bm25s.stopwords import STOPWORDS_EN
from tqdm import tqdm

from rag.collection import Collection
from rag.embedding import Embedder
from rag.errors import ConfigError
from rag.evaluation import is_gold_chunk
from rag.generation import LLM, Message, complete
from rag.questions import Question
from rag.retrieval import Searcher
from rag.templates import render
from rag.text import split_sentences
from rag.types import Chunk

logger = logging.getLogger(__name__)

# How synthetic queries are written. "auto" asks the LLM only when one other than the embedded
# 135M model is configured: that one writes poor queries at about a second each on a CPU.
SYNTHETIC_SOURCES: dict[str, str] = {
    "auto": "the LLM when llm_backend is not 'embedded', else self-supervised",
    "llm": "a question the configured LLM writes for each sampled passage",
    "self": "the document title, or a sentence cut out of the passage with its rarest words "
    "dropped",
}
# Share of a cut-out sentence's distinct content words dropped from its query, rarest first.
RARE_SHARE = 0.5
TITLE_ORIGIN = "self-title"
SPACE_BEFORE_MARK = re.compile(r"\s+([,.;:!?])")
WORD = re.compile(r"\w+(?:[-'.]\w+)*")
# Words too common to say anything about a passage (bm25s's English list, the one BM25 uses).
STOPWORDS = frozenset(STOPWORDS_EN)


@dataclass(frozen=True)
class TrainQuery:
    """A query with the chunks that answer it and what is judged relevant: documents (sources),
    or with `passages` the chunks themselves (chunk ids)."""

    qid: str
    text: str
    positives: tuple[int, ...]
    relevant: frozenset[str]
    origin: str  # "labelled" | "questions" | "llm" | "self" | "self-title"
    # The positive's text when it differs from the stored chunk (a cut-out sentence removed).
    positive_text: str | None = None
    passages: bool = False
    # The sentence cut out of the passage, for a query made from one.
    cut: str | None = None

    def unit(self, chunk: Chunk) -> str:
        """What relevance is judged on for this query: the chunk's document, or the chunk."""
        return chunk.id if self.passages else chunk.source

    def __repr__(self) -> str:
        return f"TrainQuery({self.qid!r}, {self.origin}, {len(self.positives)} positives)"


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


def prime(searcher: Searcher, texts: Sequence[str]) -> None:
    """Embed the queries about to be searched in one batch, when the searcher's embedder caches."""
    if isinstance(searcher.embedder, CachingEmbedder):
        searcher.embedder.prime(texts)


def chunks_by_key(collection: Collection) -> dict[int, Chunk]:
    """Every live chunk, by chunk key."""
    keys, _ = collection.store.live_texts()
    return collection.store.chunks([int(k) for k in keys])


# -- labels -------------------------------------------------------------------------------------


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
    prime(searcher, [text for qid, text in queries.items() if qid in qrels])
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
    prime(searcher, [q.question for q in usable])
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


def self_supervised_queries(
    collection: Collection, limit: int, seed: int = 0, rare_share: float = RARE_SHARE
) -> list[TrainQuery]:
    """A pseudo-query per sampled chunk: the document title (cut from the passage when it opens
    it), else one of its sentences cut out of the passage (inverse cloze task) with its rarest
    words dropped (`rare_share` of its distinct content words, fewest chunks first).

    A sentence cut out as it stands is found by the first stage almost every time, because the
    indexed chunk still holds it word for word: such queries teach little and guard nothing. With
    the words that only this passage and a few others use taken away, what is left has to be
    matched by meaning, as a person's question is. A sentence query is judged by passage: the
    chunks of its document that hold the sentence are relevant, the document's others are not."""
    rng = random.Random(seed)
    keys, texts = collection.store.live_texts()
    titles = {doc.source: doc.title for doc in collection.store.documents()}
    chunks = collection.store.chunks([int(key) for key in keys])
    sources = {key: chunk.source for key, chunk in chunks.items()}
    rarity = _chunk_frequencies(texts)
    by_source: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        by_source.setdefault(sources[int(key)], []).append(index)
    order = rng.sample(range(len(keys)), k=min(limit, len(keys)))
    seen_titles: set[str] = set()
    found: list[TrainQuery] = []
    for index in order:
        key, text = int(keys[index]), texts[index]
        source = sources[key]
        title = titles.get(source, "").strip()
        usable_title = (
            title and title not in seen_titles and len(title.split()) >= 4 and title != source
        )
        if usable_title and rng.random() < 0.5:
            seen_titles.add(title)
            passage = text[len(title) :].strip() if text.startswith(title) else text
            if len(passage.split()) >= 10:
                found.append(
                    TrainQuery(
                        f"self-{key}", title, (key,), frozenset({source}), TITLE_ORIGIN, passage
                    )
                )
            continue
        # From the chunk's own text, not its context line. A sentence joined with the marker
        # after it across a line break is not in the text as written, so it could not be cut out
        # of it; one across a blank line is a heading run into its paragraph, and one with a
        # pipe is a table row. Lines broken inside a sentence (a PDF's) are fine.
        sentences = [
            s
            for s in split_sentences(chunks[key].text)
            if 5 <= len(s.split()) <= 40
            and s in text
            and "\n\n" not in s
            and "|" not in s
            and not s.startswith("#")
        ]
        if len(sentences) < 2:
            continue
        sentence = rng.choice(sentences)
        query = without_rare_words(" ".join(sentence.split()), rarity, rare_share)
        passage = " ".join(text.replace(sentence, " ").split())
        if query is None or len(passage.split()) < 10:
            continue
        relevant = frozenset(
            chunks[int(keys[i])].id for i in by_source[source] if sentence in texts[i]
        )
        found.append(
            TrainQuery(f"self-{key}", query, (key,), relevant, "self", passage, True, sentence)
        )
    return found


def without_rare_words(sentence: str, rarity: Mapping[str, int], share: float) -> str | None:
    """The sentence without its rarest content words (`share` of the distinct ones, at least one,
    fewest chunks first), or None when fewer than three content words would be left."""
    words = WORD.findall(sentence)
    content = sorted(
        {w.lower() for w in words if w.lower() not in STOPWORDS},
        key=lambda w: (rarity.get(w, 0), w),
    )
    drop = set(content[: max(1, math.ceil(share * len(content)))]) if share > 0 else set()
    if len(content) - len(drop) < 3:
        return None
    kept = WORD.sub(lambda m: "" if m.group(0).lower() in drop else m.group(0), sentence)
    return SPACE_BEFORE_MARK.sub(r"\1", " ".join(kept.split()))


def _chunk_frequencies(texts: Sequence[str]) -> Counter[str]:
    """In how many chunks each lower-cased word occurs."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update({w.lower() for w in WORD.findall(text)})
    return counts


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


def _sources_of(collection: Collection, keys: Sequence[int]) -> dict[int, str]:
    return {key: chunk.source for key, chunk in collection.store.chunks(keys).items()}
