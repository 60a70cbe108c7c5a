"""SQuAD articles as Markdown and PDF documents, and a question file with gold labels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ingest.loaders import load_document
from ingest.squad import (
    DEMO_ARTICLES,
    SPLITS,
    article_split,
    build_squad_corpus,
    file_stem,
    load_squad,
)
from rag.errors import ConfigError
from rag.questions import read_questions


def words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


@pytest.fixture(scope="module")
def squad_file(shared_data: Path) -> Path:
    return shared_data / "squad" / "dev-v1.1.json"


@pytest.fixture(scope="module")
def built(tmp_path_factory, squad_file: Path):
    """The first 4 articles: 3 Markdown files and article 4 as PDF, 60 questions."""
    return build_squad_corpus(
        squad_file, tmp_path_factory.mktemp("squad"), articles=4, questions=60
    )


def test_articles_become_markdown_and_every_fourth_a_pdf(built, squad_file: Path) -> None:
    corpus = built
    articles = load_squad(squad_file)[:4]
    names = [p.name for p in corpus.documents]
    assert names == [
        f"{file_stem(a['title'])}.{'pdf' if n == 4 else 'md'}" for n, a in enumerate(articles, 1)
    ]
    assert corpus.pdf_articles == (articles[3]["title"],)
    markdown = load_document(corpus.documents[0])
    assert markdown.title == articles[0]["title"].replace("_", " ")  # "Super Bowl 50"
    assert markdown.pages[0].text.startswith(f"# {markdown.title}\n\n")
    # Every paragraph is there, in order.
    paragraphs = [" ".join(p["context"].split()) for p in articles[0]["paragraphs"]]
    assert markdown.pages[0].text.split("\n\n")[1:] == paragraphs


def test_pdf_has_a_text_layer_and_each_gold_page_holds_its_paragraph(built) -> None:
    corpus = built
    pdf = load_document(corpus.documents[3])
    assert pdf.media_type == "application/pdf" and len(pdf.pages) > 3
    assert pdf.title == corpus.pdf_articles[0].replace("_", " ")
    pages = {page.number: words(page.text) for page in pdf.pages}
    records = [json.loads(line) for line in corpus.questions_file.read_text().splitlines()]
    in_pdf = [r for r in records if r["document"] == corpus.documents[3].name]
    assert in_pdf, "the sample should hold questions about the PDF article"
    for record in in_pdf:
        assert words(record["paragraph"]) in pages[record["page"]]


def test_question_file_is_a_fixed_sample_that_rag_batch_reads(
    built, squad_file: Path, tmp_path: Path
) -> None:
    corpus = built
    questions = read_questions(corpus.questions_file)
    assert len(questions) == corpus.questions == 60
    names = {p.name for p in corpus.documents}
    for question in questions:
        assert question.document in names and question.page is not None and question.paragraph
        assert isinstance(question.answer, tuple) and question.answer
        # Each gold answer is a span of its gold paragraph (after whitespace folding).
        assert all(" ".join(a.split()) in question.paragraph for a in question.answer)
        if question.document.endswith(".md"):
            assert question.page == 1
    # Same arguments, same bytes: the PDF and the sample do not change between builds.
    again = build_squad_corpus(squad_file, tmp_path, articles=4, questions=60)
    assert again.questions_file.read_bytes() == corpus.questions_file.read_bytes()
    assert (tmp_path / "docs" / corpus.documents[3].name).read_bytes() == (
        corpus.documents[3].read_bytes()
    )


def test_file_stem_keeps_titles_readable() -> None:
    assert file_stem("Sky_(United_Kingdom)") == "Sky_(United_Kingdom)"
    assert file_stem("AC/DC: live?") == "AC_DC_live"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"questions": 0}, r"questions must be at least 1 \(got 0\)"),
        ({"pdf_every": -1}, r"pdf_every must be 0 \(no PDFs\) or more \(got -1\)"),
        ({"articles": 1, "questions": 100_000}, r"asked for 100000 questions but the articles"),
    ],
)
def test_bad_arguments(squad_file: Path, tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_squad_corpus(squad_file, tmp_path, **kwargs)


def test_not_a_squad_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SQuAD file not found"):
        load_squad(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "1.1"}')
    with pytest.raises(ConfigError, match=r"bad.json is not a SQuAD v1.1 file \(KeyError"):
        load_squad(bad)


def test_article_split_is_fixed_disjoint_and_keeps_the_demo_out_of_training(
    squad_file: Path,
) -> None:
    titles = [str(article["title"]) for article in load_squad(squad_file)]
    split = article_split(titles)
    parts = [set(split.of(name)) for name in SPLITS]
    assert sum(map(len, parts)) == len(titles) == len(set().union(*parts))
    assert set(DEMO_ARTICLES) <= set(split.held_out)
    assert {"Packet_switching", "Force"} <= set(split.held_out)  # the other PDF articles
    assert split == article_split(titles)
    with pytest.raises(ConfigError, match="unknown split"):
        split.of("test")


def test_questions_can_come_from_one_split_only(squad_file: Path, tmp_path: Path) -> None:
    corpus = build_squad_corpus(squad_file, tmp_path, articles=6, questions=40, split="held-out")
    held_out = set(article_split([a["title"] for a in load_squad(squad_file)[:6]]).held_out)
    records = [json.loads(line) for line in corpus.questions_file.read_text().splitlines()]
    assert {r["article"] for r in records} <= held_out
    assert len(corpus.documents) == 6  # every article is still a document
