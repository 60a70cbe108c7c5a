"""Retrieval metrics: over judged queries (BEIR, by ranx), and gold-passage hit rate @k.

results = evaluate_retrieval(searcher, queries, qrels, doc_id_of)
results["hybrid"]["ndcg@10"]
scores = evaluate_hits(searcher, read_questions(Path("questions.jsonl")))
scores["hit@5"]
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePath
from typing import Any

from tqdm import tqdm

from rag.errors import ConfigError
from rag.questions import Question
from rag.retrieval import Searcher
from rag.types import Chunk, Hit

logger = logging.getLogger(__name__)

METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
# Config name -> (search mode, rerank?). The names are what `rag eval retrieval --json` prints.
CONFIGS: dict[str, tuple[str, bool]] = {
    "dense": ("dense", False),
    "bm25": ("bm25", False),
    "hybrid": ("hybrid", False),
    "dense+rerank": ("dense", True),
    "hybrid+rerank": ("hybrid", True),
}


def document_ranking(
    hits: list[Hit], doc_id_of: Callable[[str], str], depth: int
) -> dict[str, float]:
    """Chunk hits to a document ranking: each document ranked where its best chunk is."""
    ranking: dict[str, float] = {}
    for hit in hits:
        doc = doc_id_of(hit.chunk.source)
        if doc not in ranking:
            # Scores decrease with rank, so ranx sorts exactly as the hits were ranked.
            ranking[doc] = float(depth - len(ranking))
            if len(ranking) == depth:
                break
    return ranking


def evaluate_retrieval(
    searcher: Searcher,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    doc_id_of: Callable[[str], str],
    configs: list[str] | None = None,
    depth: int = 100,
    progress: bool = True,
) -> dict[str, dict[str, float]]:
    """Run each config over every query and score it with ranx; configs needing a reranker are
    skipped when the searcher has none."""
    from ranx import Qrels, Run, evaluate

    names = configs or list(CONFIGS)
    has_reranker = searcher.reranker_choice().reranker is not None
    # Chunks per document vary; fetch enough chunks that `depth` distinct documents come back.
    chunk_depth = depth * 3
    ranx_qrels = Qrels({qid: dict(docs) for qid, docs in qrels.items() if qid in queries})
    results: dict[str, dict[str, float]] = {}
    for name in names:
        mode, rerank = CONFIGS[name]
        if rerank and not has_reranker:
            logger.info("skipping %s: the collection has no reranker", name)
            continue
        run: dict[str, dict[str, float]] = {}
        for qid, text in tqdm(queries.items(), desc=name, unit="query", disable=not progress):
            hits = searcher.retrieve(text, chunk_depth, mode)
            if rerank:
                reranker = searcher.reranker_choice().reranker
                if reranker is not None:
                    head = reranker.rerank(text, hits[: searcher.settings.rerank_depth])
                    hits = head + hits[searcher.settings.rerank_depth :]
            run[qid] = document_ranking(hits, doc_id_of, depth) or {"<none>": 0.0}
        scores = evaluate(ranx_qrels, Run(run), list(METRICS), make_comparable=True)
        results[name] = {metric: round(float(scores[metric]), 4) for metric in METRICS}
    return results


HIT_KS = (1, 5, 10)
_WORD = re.compile(r"\w+")
# Word n-grams, so that line breaks, hyphen-free reflow and spacing in PDF text do not matter.
SHINGLE = 5
# A chunk "is" the gold paragraph when this share of the smaller one's n-grams is shared.
MIN_OVERLAP = 0.5


def shingles(text: str, n: int = SHINGLE) -> set[tuple[str, ...]]:
    """Lower-cased word n-grams of a text (the words themselves when it is shorter than n)."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def overlap(chunk: str, paragraph: str) -> float:
    """Shared word 5-grams over those of the shorter text: 1.0 when one lies inside the other."""
    a, b = shingles(chunk), shingles(paragraph)
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def is_gold_hit(hit: Hit, question: Question) -> bool:
    """Whether a retrieved chunk is the question's gold passage (see `is_gold_chunk`)."""
    return is_gold_chunk(hit.chunk, question)


def is_gold_chunk(chunk: Chunk, question: Question) -> bool:
    """Whether a chunk is the question's gold passage.

    The chunk must come from the gold document (same file name, any folder). Then, when the
    question carries its gold paragraph, the chunk and the paragraph share at least half of the
    shorter one's word 5-grams (the chunk lies mostly inside the paragraph, or holds most of it);
    otherwise, when it carries a gold page, the chunk is on that page; otherwise any chunk of the
    document counts.
    """
    if question.document is None:
        return False
    if PurePath(chunk.source).name != PurePath(question.document).name:
        return False
    if question.paragraph:
        return overlap(chunk.text, question.paragraph) >= MIN_OVERLAP
    if question.page is not None:
        return chunk.page == question.page
    return True


def evaluate_hits(
    searcher: Searcher,
    questions: Sequence[Question],
    ks: Sequence[int] = HIT_KS,
    mode: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Gold-passage hit rate at each k (and gold-document hit rate, MRR) through `searcher.search`.

    Each question is searched as `rag search` would (first stage, then the reranker when one is
    available), for the top max(ks) chunks. Questions without a gold document are refused.
    """
    if not ks or min(ks) < 1:
        raise ConfigError(f"k must be 1 or more (got {list(ks)})")
    if not questions:
        raise ConfigError("no questions to evaluate")
    unlabelled = [q.id for q in questions if not q.document]
    if unlabelled:
        raise ConfigError(
            f"{len(unlabelled)} question(s) have no gold 'document' (first: {unlabelled[0]!r}); "
            "hit rate needs document, and page or paragraph"
        )
    depth = max(ks)
    ranks: dict[str, int | None] = {}
    document_ranks: dict[str, int | None] = {}
    per_question = []
    for question in tqdm(questions, desc="hits", unit="q", disable=not progress):
        hits = searcher.search(question.question, top_k=depth, mode=mode).hits
        rank = next((r for r, h in enumerate(hits, 1) if is_gold_hit(h, question)), None)
        gold_name = PurePath(str(question.document)).name
        doc_rank = next(
            (r for r, h in enumerate(hits, 1) if PurePath(h.chunk.source).name == gold_name), None
        )
        ranks[question.id], document_ranks[question.id] = rank, doc_rank
        per_question.append({"id": question.id, "rank": rank, "document_rank": doc_rank})
    total = len(questions)

    def rate(found: dict[str, int | None], k: int) -> float:
        return round(sum(r is not None and r <= k for r in found.values()) / total, 4)

    scores: dict[str, Any] = {"questions": total}
    scores.update({f"hit@{k}": rate(ranks, k) for k in sorted(ks)})
    scores.update({f"document_hit@{k}": rate(document_ranks, k) for k in sorted(ks)})
    scores[f"mrr@{depth}"] = round(sum(1 / r for r in ranks.values() if r) / total, 4)
    scores["per_question"] = per_question
    return scores
