"""Running headers and footers, and words broken across lines, on real papers and filings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingest.layout import drop_running_lines, join_hyphens, running_lines, vocabulary
from ingest.loaders import load_document

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PDFS = DATA / "pdfs"
FILINGS = DATA / "financebench-dev" / "pdfs"

pytestmark = pytest.mark.skipif(not PDFS.is_dir(), reason=f"shared test data not found at {DATA}")


def test_running_header_and_page_numbers_of_a_filing_are_dropped() -> None:
    doc = load_document(FILINGS / "3M_2022_10K.pdf")
    starts = [page.text.split("\n")[0] for page in doc.pages]
    ends = [page.text.split("\n")[-1] for page in doc.pages]
    assert sum(s == "Table of Contents" for s in starts) < 0.05 * len(doc.pages)
    assert sum(e.strip().isdigit() for e in ends) < 0.1 * len(doc.pages)


def test_running_lines_need_most_pages() -> None:
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    bodies = [
        f"{w} starts here\nthen more {w}\nsome {w} words\nand so on\nmiddle {w}\n{w} more\n{w} end"
        for w in words
    ]
    pages = [f"Journal of Tests\n{body}\n{n}" for n, body in enumerate(bodies, start=1)]
    pages[3] = f"A one-off title\n{bodies[3]}\n4"
    assert running_lines(pages) == {"journaloftests", "#"}  # not "and so on": mid-page
    kept = drop_running_lines(pages)
    assert kept[0] == bodies[0] and kept[3] == f"A one-off title\n{bodies[3]}"


def test_a_page_that_is_only_its_repeated_line_is_kept() -> None:
    pages = ["habibi"] * 4
    assert drop_running_lines(pages) == pages


def test_hyphenated_words_are_joined_on_a_real_paper() -> None:
    text = load_document(PDFS / "real" / "BERT.pdf").pages[1].text
    assert "bidirectional pre-training" in text or "bidirectional\npre-training" in text
    assert "Taylor" in text and "Tay-\nlor" not in text
    assert not re.search(r"[a-z]-\n[a-z]", text)  # no word broken before a lower-case rest


def test_compounds_and_capitals_keep_their_hyphen() -> None:
    text = "a left-\nto-right model, the state-of-the-\nart, Non-\nEnglish text and informa-\ntion"
    words = vocabulary([text, "left-to-right"])
    assert join_hyphens(text, words) == (
        "a left-to-right\nmodel, the state-of-the-art,\nNon-\nEnglish text and information"
    )
