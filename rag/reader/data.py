"""SQuAD questions as the reader trains and is measured on them, and the passages that do not
hold their answer.

    articles = load_squad(path)
    examples = squad_examples(articles, split.train)
    pool = paragraphs(articles, split.train)
    negatives = related_paragraphs(examples, pool, k=4, answerless=True)   # per example

Negatives are the paragraphs a search would bring for the question (BM25, optionally fused with
the bi-encoder as the product's hybrid search does) that hold none of its gold answers: the hard
case of "the passages do not say it".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.answer_eval import normalize
from rag.embedding import Embedder
from rag.lexical import LexicalIndex
from rag.retrieval import reciprocal_rank_fusion

# Reciprocal rank fusion's constant, as the product's hybrid search uses it (rag/retrieval.py).
RRF_K = 60


@dataclass(frozen=True)
class Paragraph:
    """One SQuAD paragraph: its article, its place there, its text."""

    article: str
    index: int
    text: str


@dataclass(frozen=True)
class Example:
    """One SQuAD question with its gold paragraph and gold answers (char starts in it)."""

    id: str
    question: str
    paragraph: Paragraph
    answers: tuple[str, ...]
    starts: tuple[int, ...]

    @property
    def label(self) -> tuple[int, int]:
        """The answer to train on: the one most annotators gave (the first among ties), as
        [start, end) characters of the paragraph."""
        counts = Counter(self.answers)
        best = max(range(len(self.answers)), key=lambda i: (counts[self.answers[i]], -i))
        return self.starts[best], self.starts[best] + len(self.answers[best])


def paragraphs(articles: Iterable[dict[str, Any]], titles: Sequence[str]) -> list[Paragraph]:
    """The paragraphs of the articles named in `titles`, in file order."""
    wanted = set(titles)
    return [
        Paragraph(str(article["title"]), index, str(raw["context"]))
        for article in articles
        if article["title"] in wanted
        for index, raw in enumerate(article["paragraphs"])
    ]


def squad_examples(articles: Iterable[dict[str, Any]], titles: Sequence[str]) -> list[Example]:
    """The questions of the articles named in `titles`, in file order."""
    wanted = set(titles)
    out = []
    for article in articles:
        if article["title"] not in wanted:
            continue
        for index, raw in enumerate(article["paragraphs"]):
            paragraph = Paragraph(str(article["title"]), index, str(raw["context"]))
            for qa in raw["qas"]:
                out.append(
                    Example(
                        id=str(qa["id"]),
                        question=str(qa["question"]).strip(),
                        paragraph=paragraph,
                        answers=tuple(str(a["text"]) for a in qa["answers"]),
                        starts=tuple(int(a["answer_start"]) for a in qa["answers"]),
                    )
                )
    return out


def holds_answer(text: str, answers: Sequence[str]) -> bool:
    """Whether `text` contains any of `answers`, compared after SQuAD normalisation (word
    boundaries respected)."""
    padded = f" {normalize(text)} "
    return any(f" {normalize(answer)} " in padded for answer in answers if normalize(answer))


def related_paragraphs(
    examples: Sequence[Example],
    pool: Sequence[Paragraph],
    k: int,
    *,
    same_article: bool,
    answerless: bool,
    dense: Embedder | None = None,
    depth: int = 50,
) -> list[list[Paragraph]]:
    """For each example, the `k` paragraphs of `pool` a search ranks highest for its question,
    never its gold paragraph: from its own article only when `same_article`; holding none of its
    gold answers when `answerless`. Ranked by BM25, fused with `dense` by reciprocal rank when
    given (the product's hybrid search)."""
    keys = np.arange(len(pool), dtype=np.int64)
    lexical = LexicalIndex.build(keys, [p.text for p in pool])
    vectors = dense.embed([p.text for p in pool]) if dense is not None else None
    queries = dense.embed([e.question for e in examples]) if dense is not None else None
    rows_of: dict[str, list[int]] = {}
    for row, paragraph in enumerate(pool):
        rows_of.setdefault(paragraph.article, []).append(row)
    out = []
    for number, example in enumerate(examples):
        candidates = (
            np.asarray(rows_of.get(example.paragraph.article, []), dtype=np.int64)
            if same_article
            else keys
        )
        _, found = lexical.search(
            example.question, depth, allowed=candidates if same_article else None
        )
        rankings = [[int(key) for key in found]]
        if vectors is not None and queries is not None:
            scores = vectors @ queries[number]
            order = candidates[np.argsort(-scores[candidates], kind="stable")][:depth]
            rankings.append([int(key) for key in order])
        chosen: list[Paragraph] = []
        for key, _ in reciprocal_rank_fusion(rankings, k=RRF_K):
            paragraph = pool[key]
            if paragraph == example.paragraph or (
                answerless and holds_answer(paragraph.text, example.answers)
            ):
                continue
            chosen.append(paragraph)
            if len(chosen) == k:
                break
        out.append(chosen)
    return out
