"""Each chunk's context line: the document's label and the heading above it, on real text."""

from __future__ import annotations

from pathlib import Path

import pytest
from pypdf import PdfReader

from ingest.chunking import Chunker
from ingest.context import document_label, heading_text, page_headings, with_context
from ingest.loaders import load_document
from rag.types import Document, Page


@pytest.fixture(scope="module")
def filing(shared_data: Path) -> Document:
    """The first eight pages of a real 10-K, as pypdf reads them."""
    path = shared_data / "financebench-dev" / "pdfs" / "LOCKHEEDMARTIN_2022_10K.pdf"
    reader = PdfReader(path)
    pages = tuple(Page(n, reader.pages[n - 1].extract_text()) for n in range(1, 9))
    return Document("id", str(path), "LMT Q4 2022 10K", "application/pdf", pages)


def test_run_together_file_names_are_split_by_the_documents_own_words(filing) -> None:
    # The filing writes "Lockheed Martin"; its file name runs the words together.
    assert document_label(filing) == "Lockheed Martin 2022 10K · LMT Q4 2022 10K"
    tagged = document_label(filing, {"sector": "Aerospace", "year": "2022"})
    assert tagged.endswith("· Aerospace")  # 2022 is in the label already


def test_a_title_that_names_nothing_is_left_out(filing) -> None:
    accession = Document("id", "/x/BOEING_2022_10K.pdf", "0000012927-23-000007", "", filing.pages)
    assert document_label(accession) == "BOEING 2022 10K"
    stem = Document("id", "/x/notes_v2.md", "notes_v2", "text/markdown", (Page(1, "x"),))
    assert document_label(stem) == "notes v2"


@pytest.mark.parametrize(
    ("line", "heading"),
    [
        ("Consolidated Statements of Cash Flows", "Consolidated Statements of Cash Flows"),
        (
            "ITEM 7. MANAGEMENT'S DISCUSSION AND ANALYSIS",
            "ITEM 7. MANAGEMENT'S DISCUSSION AND ANALYSIS",
        ),
        ("3.1 Encoder and Decoder Stacks", "3.1 Encoder and Decoder Stacks"),
        ("## Results", "Results"),
        ("Net sales increased 5% compared to 2021.", ""),
        ("2022 2021 2020", ""),
        ("| Net sales | $34,229 | $35,355 |", ""),
        ("the company and its subsidiaries", ""),
    ],
)
def test_headings(line: str, heading: str) -> None:
    assert heading_text(line) == heading


def test_chunks_carry_the_heading_above_them_and_keep_their_text(shared_data: Path) -> None:
    paper = load_document(shared_data / "pdfs" / "real" / "1706.03762.pdf")
    chunks = Chunker(120, 16).split(paper)
    label = document_label(paper)
    labelled = with_context(paper, chunks, label)
    assert [(c.id, c.text, c.start) for c in labelled] == [(c.id, c.text, c.start) for c in chunks]
    assert all(c.context.startswith(label) for c in labelled)
    # Every heading found on a page is the context of a chunk that starts after it.
    contexts = {c.context for c in labelled}
    found = [h for page in paper.pages for _, h in page_headings(page.text)]
    assert found and sum(f"{label} · {h}" in contexts for h in found) >= len(found) // 2


def test_a_heading_on_most_pages_is_a_running_header() -> None:
    pages = tuple(Page(n, f"Annual Report Summary\nWords on page {n}.") for n in range(1, 9))
    document = Document("id", "/x/r.md", "r", "text/markdown", pages)
    chunks = with_context(document, Chunker(50, 5).split(document), "r")
    assert {c.context for c in chunks} == {"r"}


def test_records_and_titles_already_on_the_page_add_nothing() -> None:
    page = Page(1, "# Super Bowl 50\n\nThe game was played in Santa Clara.")
    markdown = Document("id", "/x/sb50.md", "Super Bowl 50", "text/markdown", (page,))
    assert document_label(markdown) == "sb50"
    record = Document("id", "scifact:4983", "Microstructural development", "", (Page(1, "x"),))
    assert document_label(record, file_name=False) == "Microstructural development"
