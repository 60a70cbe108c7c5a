"""Chunks of a real 15-page PDF: each inside one page, located by its offsets, within its size,
neighbours overlapping by at most the overlap."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest

from ingest.chunking import Chunker
from ingest.loaders import load_document
from rag.errors import ConfigError
from rag.types import Chunk, Document


@pytest.fixture(scope="module")
def paper(shared_data: Path) -> Document:
    return load_document(shared_data / "pdfs" / "real" / "1706.03762.pdf")


def same_page_neighbours(chunks: list[Chunk]) -> list[tuple[Chunk, Chunk]]:
    return [(a, b) for a, b in itertools.pairwise(chunks) if a.page == b.page]


def test_no_chunk_crosses_a_page_and_offsets_locate_the_text(paper: Document) -> None:
    chunks = Chunker(80, 10).split(paper)
    pages = {page.number: page.text for page in paper.pages}
    assert len(pages) == 15 and {c.page for c in chunks} == set(pages)
    for chunk in chunks:
        assert pages[chunk.page][chunk.start : chunk.end] == chunk.text
        assert chunk.document_id == paper.id and chunk.source == paper.source
    # In reading order, and together they hold every word of every page.
    assert [(c.page, c.start) for c in chunks] == sorted((c.page, c.start) for c in chunks)
    for number, text in pages.items():
        covered = [False] * len(text)
        for chunk in (c for c in chunks if c.page == number):
            covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
        assert all(covered[i] or char.isspace() for i, char in enumerate(text)), number


def test_chunks_keep_to_their_size_and_overlap(paper: Document) -> None:
    chunks = Chunker(80, 10).split(paper)
    assert max(len(c.text.split()) for c in chunks) <= 80
    pages = {page.number: page.text for page in paper.pages}
    neighbours = same_page_neighbours(chunks)
    overlapping = [(a, b) for a, b in neighbours if b.start < a.end]
    assert overlapping, "no two neighbours share text"
    for a, b in overlapping:
        assert len(pages[a.page][b.start : a.end].split()) <= 10
    without = Chunker(80, 0).split(paper)
    assert all(b.start >= a.end for a, b in same_page_neighbours(without))


def test_sizes_are_counted_in_the_embedders_tokens(paper: Document, minilm) -> None:
    chunker = Chunker(240, 32, tokenizer=minilm.tokenizer)
    chunks = chunker.split(paper)
    lengths = [len(minilm.tokenizer.tokenize(c.text)) for c in chunks]
    assert max(lengths) <= 240 and sum(lengths) / len(lengths) > 120
    assert chunker.describe().unit == "tokens"


def test_counting_a_long_paragraph_says_nothing_about_the_models_limit(
    shared_data: Path, minilm
) -> None:
    # Counting tokens is not running the model: transformers' "Token indices sequence length is
    # longer than the specified maximum" warning meant nothing to a user and reached the terminal.
    from transformers import AutoTokenizer
    from transformers.utils import logging as transformers_logging

    # A fresh copy of the packaged one: a tokenizer gives this warning once in its life.
    tokenizer = AutoTokenizer.from_pretrained(minilm.tokenizer.name_or_path)
    # The RAG paper has paragraphs of over 500 tokens, which the splitter measures whole.
    paper = load_document(shared_data / "pdfs" / "real" / "2005.11401.pdf")
    heard: list[str] = []

    class Listen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            heard.append(record.getMessage())

    library = transformers_logging.get_logger()
    listen, level = Listen(), transformers_logging.get_verbosity()
    library.addHandler(listen)
    transformers_logging.set_verbosity_warning()
    try:
        chunks = Chunker(240, 32, tokenizer=tokenizer).split(paper)
    finally:
        library.removeHandler(listen)
        transformers_logging.set_verbosity(level)
    assert chunks and not [m for m in heard if "sequence length" in m]
    assert tokenizer.model_max_length == 256  # the caller's tokenizer is untouched


def test_ids_are_stable_and_overlap_must_be_smaller_than_size(paper: Document) -> None:
    assert Chunker(80, 10).split(paper) == Chunker(80, 10).split(paper)
    with pytest.raises(ConfigError, match=r"chunk overlap \(80\) must be smaller than size \(80\)"):
        Chunker(80, 80)
