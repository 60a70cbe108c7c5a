"""Gold-passage hit rate @k on real SQuAD articles (Markdown and PDF), through the real Searcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.pipeline import IngestJob
from ingest.squad import build_squad_corpus
from rag.collection import Collection
from rag.errors import ConfigError
from rag.evaluation import evaluate_hits, is_gold_hit, overlap, shingles
from rag.questions import Question, read_questions
from rag.retrieval import Searcher
from rag.settings import Settings
from rag.types import Chunk, Hit


@pytest.fixture(scope="module")
def squad(tmp_path_factory, shared_data: Path, minilm):
    """Articles 1 (Markdown) and 2 (PDF) of SQuAD dev, ingested; 40 sampled questions."""
    root = tmp_path_factory.mktemp("hits")
    corpus = build_squad_corpus(
        shared_data / "squad" / "dev-v1.1.json", root, articles=2, pdf_every=2, questions=40
    )
    settings = Settings.load(index_dir=root / "idx", progress=False, device="cpu", rerank=False)
    IngestJob(settings, embedder=minilm).run_files("squad", list(corpus.documents))
    collection = Collection.open(settings.index_dir, "squad")
    yield Searcher(collection, settings, embedder=minilm), read_questions(corpus.questions_file)
    collection.close()


def hit(text: str, source: str = "/docs/Super_Bowl_50.md", page: int = 1) -> Hit:
    chunk = Chunk("c", "d", source, page, 0, len(text), text)
    return Hit(chunk, 1.0, "hybrid")


PARAGRAPH = (
    "Super Bowl 50 was an American football game to determine the champion of the National "
    "Football League (NFL) for the 2015 season."
)


def test_overlap_is_one_when_one_text_lies_inside_the_other() -> None:
    assert shingles("One two three") == {("one", "two", "three")}
    assert overlap(PARAGRAPH, PARAGRAPH) == 1.0
    # PDF text: other line breaks and spacing, same words.
    assert overlap(PARAGRAPH.replace(" the ", "\nthe  "), PARAGRAPH) == 1.0
    longer = PARAGRAPH + " The American Football Conference champion Denver Broncos won."
    assert overlap(longer, PARAGRAPH) == 1.0
    assert overlap("The Broncos defeated the Panthers in Santa Clara.", PARAGRAPH) == 0.0
    assert overlap("", PARAGRAPH) == 0.0


def test_a_gold_hit_needs_the_gold_document_and_its_paragraph_or_page() -> None:
    question = Question("q", "Who?", document="Super_Bowl_50.md", page=1, paragraph=PARAGRAPH)
    assert is_gold_hit(hit(PARAGRAPH), question)
    assert not is_gold_hit(hit(PARAGRAPH, source="/docs/Warsaw.md"), question)
    assert not is_gold_hit(hit("The game was played in Santa Clara, California."), question)
    # Without a paragraph the page decides; without both, any chunk of the document.
    by_page = Question("q", "Who?", document="report.pdf", page=3)
    assert is_gold_hit(hit("anything", "/a/report.pdf", 3), by_page)
    assert not is_gold_hit(hit("anything", "/a/report.pdf", 4), by_page)
    assert is_gold_hit(hit("anything", "report.pdf", 9), Question("q", "?", document="report.pdf"))
    assert not is_gold_hit(hit(PARAGRAPH), Question("q", "Who?"))


def test_hit_rate_on_real_articles(squad) -> None:
    searcher, questions = squad
    scores = evaluate_hits(searcher, questions, progress=False)
    assert scores["questions"] == 40
    assert 0.0 <= scores["hit@1"] <= scores["hit@5"] <= scores["hit@10"] <= 1.0
    for k in (1, 5, 10):
        assert scores[f"hit@{k}"] <= scores[f"document_hit@{k}"]
    # Two articles only: the gold document is nearly always first, the paragraph often.
    assert scores["document_hit@1"] >= 0.9
    assert scores["hit@5"] >= 0.7
    assert 0 < scores["mrr@10"] <= 1
    ranks = {row["id"]: row["rank"] for row in scores["per_question"]}
    assert set(ranks) == {q.id for q in questions}
    found = sum(r is not None and r <= 5 for r in ranks.values())
    assert found / 40 == scores["hit@5"]
    pdf_questions = [q for q in questions if q.document and q.document.endswith(".pdf")]
    assert pdf_questions and any(ranks[q.id] for q in pdf_questions)


def test_hit_rate_needs_gold_documents(squad) -> None:
    searcher, _ = squad
    with pytest.raises(
        ConfigError, match=r"1 question\(s\) have no gold 'document' \(first: 'x'\)"
    ):
        evaluate_hits(searcher, [Question("x", "Who won?")], progress=False)
    with pytest.raises(ConfigError, match=r"k must be 1 or more \(got \[0, 5\]\)"):
        evaluate_hits(searcher, [], ks=(0, 5), progress=False)
