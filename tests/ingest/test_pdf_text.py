"""Who reads a PDF's text layer: PDFium by default, pypdf for whatever PDFium cannot read."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pypdf
import pypdfium2
import pytest

import ingest.pdf
from ingest.loaders import load_document
from ingest.sources import file_sources

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PDFS = DATA / "pdfs"
FILINGS = DATA / "financebench-dev" / "pdfs"

pytestmark = pytest.mark.skipif(
    not PDFS.is_dir(), reason=f"shared test data not found at {DATA} (see shared/data/README.md)"
)

_WORD = re.compile(r"[^\W\d_]+")
# Two words run together by a text extractor: "theCompany", "toEmployee".
_GLUED = re.compile(r"\b(?:the|of|to|and)[A-Z][a-z]{3,}\b")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffe]")


def _words(text: str) -> Counter[str]:
    return Counter(word.lower() for word in _WORD.findall(text))


@pytest.mark.parametrize("name", ["1706.03762.pdf", "BERT.pdf", "2005.11401.pdf"])
def test_pdfium_and_pypdf_read_the_same_pages_and_words(name: str) -> None:
    path = PDFS / "real" / name
    ours = load_document(path)
    theirs = load_document(path, pdf_text="pypdf")
    assert [p.number for p in ours.pages] == [p.number for p in theirs.pages]
    a = _words(" ".join(p.text for p in ours.pages))
    b = _words(" ".join(p.text for p in theirs.pages))
    shared = sum((a & b).values())
    # Measured: 0.98 to 1.00 both ways; what differs is mostly symbols in formulas.
    assert shared >= 0.95 * sum(a.values())
    assert shared >= 0.95 * sum(b.values())


def test_line_end_hyphens_are_joined_and_no_marker_or_control_character_is_left() -> None:
    raw_first_page = pypdfium2.PdfDocument(PDFS / "real" / "BERT.pdf")[0]
    assert "representa\ufffetion" in raw_first_page.get_textpage().get_text_range()
    doc = load_document(PDFS / "real" / "BERT.pdf")
    assert "language representation model" in " ".join(doc.pages[0].text.split())
    for page in doc.pages:
        assert not _CONTROL.search(page.text), page.number


@pytest.mark.skipif(not FILINGS.is_dir(), reason="financebench-dev not found")
def test_words_that_pypdf_runs_together_stay_apart() -> None:
    path = FILINGS / "MGMRESORTS_2018_10K.pdf"
    pypdf_page = pypdf.PdfReader(path).pages[121].extract_text()
    assert len(_GLUED.findall(pypdf_page)) >= 3  # "toEmployee", "theSpecified", ...
    page = next(p for p in load_document(path).pages if p.number == 122)
    assert not _GLUED.findall(page.text)
    assert "to Employee" in " ".join(page.text.split())


def test_a_file_pdfium_will_not_open_is_read_by_pypdf() -> None:
    # The owner password is empty, so pypdf opens it; PDFium asks for the user password.
    path = PDFS / "broken" / "r6-user-password.pdf"
    with pytest.raises(pypdfium2.PdfiumError):
        pypdfium2.PdfDocument(path)
    doc = load_document(path)
    assert doc.pages and doc.pages == load_document(path, pdf_text="pypdf").pages


def test_a_page_pdfium_cannot_read_is_read_by_pypdf(monkeypatch: pytest.MonkeyPatch) -> None:
    path = PDFS / "real" / "BERT.pdf"
    by_pdfium = load_document(path).pages
    by_pypdf = load_document(path, pdf_text="pypdf").pages
    assert by_pdfium[1].text != by_pypdf[1].text
    read_page = ingest.pdf._page_text
    calls = []

    def fails_on_page_2(page: Any) -> str:
        calls.append(1)
        if len(calls) == 2:
            raise pypdfium2.PdfiumError("injected: cannot read this page")
        return read_page(page)

    monkeypatch.setattr(ingest.pdf, "_page_text", fails_on_page_2)
    pages = load_document(path).pages
    assert pages[1] == by_pypdf[1]
    assert pages[0] == by_pdfium[0] and pages[2:] == by_pdfium[2:]


def test_the_setting_reaches_the_loader() -> None:
    path = PDFS / "real" / "BERT.pdf"
    sources, _ = file_sources([path], pdf_text="pypdf")
    assert sources[0].load().pages == load_document(path, pdf_text="pypdf").pages
    sources, _ = file_sources([path])
    assert sources[0].load().pages == load_document(path).pages
    assert load_document(path).pages != load_document(path, pdf_text="pypdf").pages
