"""Hostile questions: empty or huge ones get one clear line before any model runs, and the prompt
the LLM sees always fits its context, however long the sources are."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ingest.pipeline import IngestJob
from rag.collection import Collection
from rag.errors import ConfigError
from rag.generation import EmbeddedLLM
from rag.pipeline import CHARS_PER_TOKEN, Answerer, fit_texts
from rag.retrieval import Searcher
from rag.settings import Settings
from rag.types import Citation
from tests.conftest import write_squad_docs
from tests.hostile.faults import rag


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, squad_paragraphs, minilm) -> Path:
    root = tmp_path_factory.mktemp("ask")
    docs = write_squad_docs(root / "docs", squad_paragraphs, 6)
    settings = Settings.load(index_dir=root / "idx", progress=False)
    IngestJob(settings, embedder=minilm).run_files("c", docs)
    return root / "idx"


@pytest.mark.parametrize("command", ["ask", "search"])
@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("x" * 100_000, "Error: the question is 100,000 characters long; the limit is 4,000 "),
        ("   \n ", "Error: the query is empty"),
    ],
)
def test_a_huge_or_empty_question_is_one_line(
    corpus: Path, command: str, question: str, message: str
) -> None:
    done = rag(corpus, command, question, "-c", "c")
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(message)
    assert done.stdout == ""


def test_the_limit_is_a_setting(corpus: Path, minilm) -> None:
    settings = Settings.load(index_dir=corpus, progress=False, max_question_chars=20)
    collection = Collection.open(corpus, "c")
    try:
        searcher = Searcher(collection, settings, embedder=minilm, reranker=None)
        answerer = Answerer(searcher, EmbeddedLLM(), settings)
        with pytest.raises(ConfigError, match=r"limit is 20 \(setting max_question_chars\)"):
            answerer.ask("Which NFL team represented the AFC at Super Bowl 50?")
        assert searcher.search("Super Bowl 50").hits  # short enough
    finally:
        collection.close()


@pytest.mark.parametrize("context", [1024, 2048, 8192])
def test_the_prompt_fits_the_llm_context(corpus: Path, minilm, context: int) -> None:
    settings = Settings.load(
        index_dir=corpus, progress=False, llm_context_tokens=context, llm_max_tokens=256
    )
    collection = Collection.open(corpus, "c")
    try:
        searcher = Searcher(collection, settings, embedder=minilm, reranker=None)
        hits = searcher.search("Super Bowl 50", top_k=5).hits
    finally:
        collection.close()
    # Sources far longer than any context: each chunk's text repeated to 40,000 characters.
    sources = [
        Citation(n, replace(hit.chunk, text=(hit.chunk.text + " ") * 200), hit.score)
        for n, hit in enumerate(hits, start=1)
    ]
    messages = Answerer(searcher, EmbeddedLLM(), settings).messages("Who won?", sources)
    prompt = sum(len(m.content) for m in messages)
    assert prompt <= (context - 256) * CHARS_PER_TOKEN
    assert "[1] (from" in messages[1].content  # the best source is always there


def test_a_question_that_leaves_no_room_for_sources_is_refused(corpus: Path, minilm) -> None:
    settings = Settings.load(
        index_dir=corpus, progress=False, llm_context_tokens=512, llm_max_tokens=256
    )
    collection = Collection.open(corpus, "c")
    try:
        searcher = Searcher(collection, settings, embedder=minilm, reranker=None)
        hits = searcher.search("Super Bowl 50", top_k=1).hits
    finally:
        collection.close()
    answerer = Answerer(searcher, EmbeddedLLM(), settings)
    with pytest.raises(ConfigError, match=r"leaves no room for sources .* context of 512 tokens"):
        answerer.messages("why " * 900, [Citation(1, hits[0].chunk, hits[0].score)])


def test_fit_texts_cuts_the_last_and_drops_scraps() -> None:
    assert fit_texts(["a" * 300, "b" * 300], 1000) == ["a" * 300, "b" * 300]
    assert fit_texts(["a" * 300, "b" * 300], 499) == ["a" * 300]  # 199 left is a scrap
    assert fit_texts(["a" * 300, "b" * 300], 550) == ["a" * 300, "b" * 249 + "…"]
    assert fit_texts(["a" * 300], 100) == []
