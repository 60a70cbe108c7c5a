"""Tables on real financial statements (FinanceBench filings) as Markdown, chunked by rows."""

from __future__ import annotations

import re
from pathlib import Path

import pypdfium2
import pytest

from ingest.chunking import Chunker
from ingest.loaders import load_document
from ingest.tables import looks_tabular, page_with_tables
from rag.types import Document, Page

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FILINGS = DATA / "financebench-dev" / "pdfs"

pytestmark = pytest.mark.skipif(not FILINGS.is_dir(), reason=f"no filings at {FILINGS}")


def table_page(name: str, number: int) -> str:
    text = page_with_tables(pypdfium2.PdfDocument(FILINGS / name)[number - 1])
    assert text is not None
    return text


def test_income_statement_rows_keep_labels_and_columns() -> None:
    text = table_page("3M_2022_10K.pdf", 48)
    assert "| (Millions, except per share amounts) | 2022 | 2021 | 2020 |" in text
    assert "| Net sales | $34,229 | $35,355 | $32,184 |" in text
    assert "| Gain on business divestitures | (2,724) | — | (389) |" in text
    assert "Consolidated Statement of Income" in text  # the caption above stays prose


def test_balance_sheet_with_dot_leaders() -> None:
    text = table_page("ADOBE_2015_10K.pdf", 59)
    assert "| Cash and cash equivalents | $876,560 | $1,117,400 |" in text
    assert "November 27, 2015" in text.split("\n| ---")[0]


def test_prose_page_is_not_a_table() -> None:
    doc = load_document(FILINGS / "3M_2022_10K.pdf")
    prose = doc.pages[2].text
    assert not looks_tabular(prose)


def test_loader_puts_tables_in_the_page_text() -> None:
    page = load_document(FILINGS / "3M_2022_10K.pdf").pages[47]
    assert page.number == 48
    assert "| Net sales | $34,229 | $35,355 | $32,184 |" in page.text


def test_a_table_is_chunked_by_rows_under_its_header() -> None:
    text = table_page("3M_2022_10K.pdf", 48)
    doc = Document("id", "3m.pdf", "3M", "application/pdf", (Page(48, text),))
    chunks = Chunker(60, 10).split(doc)
    tables = [c for c in chunks if c.text.startswith("|")]
    assert len(tables) >= 3
    header = "| (Millions, except per share amounts) | 2022 | 2021 | 2020 |\n" + "| --- " * 4 + "|"
    rows = [line for line in text.split("\n") if line.startswith("| ") and "---" not in line]
    seen = []
    for chunk in tables:
        # The first piece starts with the header; each later one has it as its context, so
        # it is indexed under its column labels and still quotes the page exactly.
        if chunk is tables[0]:
            assert chunk.text.startswith(header + "\n") and chunk.context == ""
            body = chunk.text.split("\n")[2:]
        else:
            assert chunk.context == header
            assert chunk.indexed_text == f"{header}\n{chunk.text}"
            body = chunk.text.split("\n")
        assert all(re.fullmatch(r"\|.*\|", line) for line in body)  # whole rows only
        assert text[chunk.start : chunk.end] == chunk.text
        seen.extend(body)
    assert seen == rows[1:]  # every row once, in order
    assert any("Net sales" in c.text for c in tables)


def test_prose_around_a_table_is_chunked_as_before() -> None:
    prose = "Words before the table. " * 5
    table = "| | 2022 |\n| --- | --- |\n| Net sales | 1 |\n"
    doc = Document("id", "x.pdf", "x", "application/pdf", (Page(1, prose + "\n\n" + table),))
    chunks = Chunker(80, 10).split(doc)
    assert [c.text for c in chunks] == [prose.strip(), table.strip()]
    assert chunks[1].start == len(prose) + 2
