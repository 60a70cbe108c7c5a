"""Page previews: real PDF pages rendered by pdfium, and one clear line when they cannot be."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from ui.preview import PreviewError, is_pdf, page_png, render_page

ATTENTION = "1706.03762.pdf"  # "Attention Is All You Need": 15 US-letter pages


def test_renders_a_real_page_at_a_readable_size(real_pdfs: Path) -> None:
    image = render_page(real_pdfs / ATTENTION, 3)
    assert image.size == (918, 1188)  # 612 x 792 points at scale 1.5
    # A page of text: mostly white, with dark glyphs on it.
    grey = image.convert("L")
    histogram = grey.histogram()
    assert sum(histogram[200:]) > 0.8 * sum(histogram) and sum(histogram[:100]) > 1000


def test_png_is_cached_until_the_file_changes(real_pdfs: Path, tmp_path: Path) -> None:
    pdf = tmp_path / ATTENTION
    shutil.copy(real_pdfs / ATTENTION, pdf)
    png = page_png(pdf, 1)
    assert png.startswith(b"\x89PNG") and page_png(pdf, 1) is png
    assert Image.open(io.BytesIO(png)).size == (918, 1188)
    shutil.copy(real_pdfs / "1908.10084.pdf", pdf)  # replaced on disk: rendered afresh
    assert page_png(pdf, 1) != png


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    gone = tmp_path / "moved.pdf"
    with pytest.raises(
        PreviewError, match=r"cannot show page 2: .*moved\.pdf is not there any more"
    ):
        page_png(gone, 2)


def test_page_out_of_range_names_the_page_count(real_pdfs: Path) -> None:
    with pytest.raises(PreviewError, match=r"^1706\.03762\.pdf has 15 pages; there is no page 16$"):
        page_png(real_pdfs / ATTENTION, 16)
    with pytest.raises(PreviewError, match="there is no page 0"):
        render_page(real_pdfs / ATTENTION, 0)


def test_a_file_that_is_not_a_pdf_is_one_clear_line(tmp_path: Path) -> None:
    fake = tmp_path / "fake.pdf"
    fake.write_text("<html>not a pdf</html>")
    with pytest.raises(PreviewError, match=r"^cannot open fake\.pdf as a PDF: "):
        page_png(fake, 1)


def test_is_pdf() -> None:
    assert is_pdf("/a/b/Report.PDF") and is_pdf("x.pdf")
    assert not is_pdf("/a/b.pdf/notes.md") and not is_pdf("pdf")
