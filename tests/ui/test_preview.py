"""Page previews: real PDF pages rendered by pdfium, and one clear line when they cannot be."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw

from ingest.pdf import PDFIUM_LOCK
from tests.ui.conftest import SMALL_PDF
from ui.preview import PreviewError, is_pdf, page_png, render_page, text_boxes

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


# -- the passage and its supporting sentences, marked on the page --------------------------------


def page_sentence(pdf: Path, page: int, needle: str) -> str:
    """The sentence holding `needle` on that page, as ingest reads it (the text a chunk quotes)."""
    from ingest.loaders import load_document
    from rag.text import split_sentences

    text = load_document(pdf).pages[page - 1].text
    return next(s for s in split_sentences(text) if needle in " ".join(s.split()))


def boxes_on(pdf: Path, page: int, texts: tuple[str, ...]) -> list[tuple[float, ...]]:
    import pypdfium2

    with PDFIUM_LOCK:
        document = pypdfium2.PdfDocument(pdf)
        try:
            return text_boxes(document[page - 1], texts)
        finally:
            document.close()


def changed_outside(plain: Image.Image, marked: Image.Image, boxes, pad: int = 3) -> bool:
    """Whether any pixel differs outside the (padded) boxes."""
    mask = Image.new("L", plain.size, 255)
    draw = ImageDraw.Draw(mask)
    for left, top, right, bottom in boxes:
        draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=0)
    diff = ImageChops.difference(plain.convert("RGB"), marked.convert("RGB")).convert("L")
    return ImageChops.multiply(diff, mask).getbbox() is not None


def test_the_quoted_sentence_is_marked_exactly_where_it_is(real_pdfs: Path) -> None:
    pdf = real_pdfs / SMALL_PDF
    sentence = page_sentence(pdf, 1, "we measure the practical utility of this approach")
    boxes = boxes_on(pdf, 1, (sentence,))
    # The sentence runs over five lines of the abstract's column: one box per line.
    assert len(boxes) == 5
    assert all(right - left > 20 and 8 < bottom - top < 30 for left, top, right, bottom in boxes)
    plain = render_page(pdf, 1)
    assert all(has_ink(plain, box) for box in boxes)
    marked = render_page(pdf, 1, marks=((), (sentence,)))
    assert marked.size == plain.size
    assert not changed_outside(plain, marked, boxes)
    diff = ImageChops.difference(plain.convert("RGB"), marked.convert("RGB"))
    for box in boxes:  # each line is tinted all along
        region = diff.crop(tuple(round(v) for v in box)).convert("L")
        assert sum(1 for v in region.getdata() if v) > 0.9 * region.width * region.height


def test_the_passage_is_marked_fainter_than_the_quote(real_pdfs: Path) -> None:
    pdf = real_pdfs / SMALL_PDF
    sentence = page_sentence(pdf, 1, "we measure the practical utility of this approach")
    passage = page_sentence(pdf, 1, "It has recently been observed") + " " + sentence
    png = page_png(pdf, 1, passage=passage, quotes=(sentence,))
    marked = Image.open(io.BytesIO(png)).convert("RGB")
    plain = render_page(pdf, 1).convert("RGB")
    quote_box = boxes_on(pdf, 1, (sentence,))[1]
    other_box = boxes_on(pdf, 1, (page_sentence(pdf, 1, "It has recently been observed"),))[0]
    assert not changed_outside(plain, marked, boxes_on(pdf, 1, (sentence, passage)))

    def tint(box) -> float:
        region = ImageChops.difference(plain, marked).crop(tuple(round(v) for v in box))
        return sum(region.convert("L").getdata()) / (region.width * region.height)

    assert 0 < tint(other_box) < tint(quote_box)
    assert page_png(pdf, 1, passage=passage, quotes=(sentence,)) is png  # cached


def test_a_sentence_not_on_the_page_leaves_it_plain(real_pdfs: Path) -> None:
    pdf = real_pdfs / SMALL_PDF
    elsewhere = (
        "Denver linebacker Von Miller was named Super Bowl MVP, recording five solo tackles."
    )
    assert boxes_on(pdf, 1, (elsewhere,)) == []
    assert page_png(pdf, 1, quotes=(elsewhere,)) == page_png(pdf, 1)
    # A sentence from page 2 is not drawn on page 1.
    other_page = page_sentence(pdf, 2, "")
    assert boxes_on(pdf, 1, (other_page,)) == [] and boxes_on(pdf, 2, (other_page,))


def test_a_demo_pdf_paragraph_is_found_on_its_page() -> None:
    """The demo's PDFs (rendered from SQuAD by ingest.squad.write_pdf): a question's gold sentence
    is marked on the page its question names, and on no other."""
    from rag.questions import read_questions
    from ui.demo import DEMO_CORPUS, DEMO_QUESTIONS

    question = next(q for q in read_questions(DEMO_QUESTIONS) if q.page and q.page > 1)
    pdf = DEMO_CORPUS / str(question.document)
    assert question.paragraph and question.page
    boxes = boxes_on(pdf, question.page, (question.paragraph,))
    assert boxes and all(0 <= box[0] < box[2] <= 893 for box in boxes)  # A4 is 595 pt wide
    assert all(0 <= box[1] < box[3] <= 1263 for box in boxes)  # and 842 pt high
    # Each box lies over the sentence's ink. (fpdf2 gives its pages' size only in the parent
    # node: boxes placed by a letter-size default would float above the text.)
    assert all(has_ink(render_page(pdf, question.page), box) for box in boxes)
    assert boxes_on(pdf, question.page - 1, (question.paragraph,)) == []


def has_ink(image: Image.Image, box) -> bool:
    """Whether dark pixels (glyphs) fill at least a tenth of the box's area."""
    region = image.convert("L").crop(tuple(round(v) for v in box))
    return sum(1 for v in region.getdata() if v < 128) > 0.1 * region.width * region.height
