"""A PDF page as a PNG image, for the chat's "Show page" preview of a source, with the passage
and the sentences that support the answer marked on it.

    png = page_png("/data/papers/attention.pdf", 3)   # bytes; pages count from 1
    png = page_png(path, 3, passage=chunk_text, quotes=("The sentence that answers.",))

Rendered with pdfium (pypdfium2) and cached by path, page, scale, marks and the file's size and
mtime, so a file replaced on disk is rendered afresh. Marks are found in the page's text layer by
their letters and digits alone (so line breaks, hyphenation and ligatures do not matter), and
drawn as translucent boxes over PDFium's character boxes, one per line; text not found on the page
is simply not marked.
"""

from __future__ import annotations

import functools
import io
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from ingest.pdf import PDFIUM_LOCK
from rag.errors import RagError
from rag.text import sentence_spans

if TYPE_CHECKING:
    import pypdfium2
    from PIL.Image import Image

SCALE = 1.5  # 72 dpi * 1.5: a letter page is about 918 x 1188 pixels
# Translucent fills (RGBA): the whole passage in light blue, the supporting sentences in yellow.
PASSAGE_FILL = (66, 133, 244, 40)
QUOTE_FILL = (255, 200, 0, 110)
# Shorter text (in letters and digits) is too likely to be found in the wrong place.
MIN_FIND = 12

Box = tuple[float, float, float, float]  # left, top, right, bottom in pixels of the rendered page


class PreviewError(RagError):
    """A page cannot be shown: the file is gone, is not a PDF, or has no such page."""


def is_pdf(source: str) -> bool:
    """Whether a chunk's source is a PDF file (the only kind with pages to show)."""
    return PurePath(source).suffix.lower() == ".pdf"


def render_page(
    path: str | Path, page: int, scale: float = SCALE, marks: Sequence[Sequence[str]] = ()
) -> Image:
    """Page `page` (from 1) of the PDF at `path` as a PIL image; `marks` pairs with FILLS: the
    texts found on the page are drawn over in that fill."""
    import pypdfium2

    path = Path(path)
    if not path.is_file():
        raise _missing(path, page)
    # pdfium is not thread-safe: Streamlit sessions run on threads, and ingest of an upload
    # reads PDFs with it in the same process.
    with PDFIUM_LOCK:
        try:
            pdf = pypdfium2.PdfDocument(path)
        except pypdfium2.PdfiumError as e:
            raise PreviewError(f"cannot open {path.name} as a PDF: {e}") from e
        try:
            if not 1 <= page <= len(pdf):
                raise PreviewError(f"{path.name} has {len(pdf)} pages; there is no page {page}")
            pdf_page = pdf[page - 1]
            try:
                image = pdf_page.render(scale=scale).to_pil()
                boxes = [text_boxes(pdf_page, texts, scale) for texts in marks]
            finally:
                pdf_page.close()
        finally:
            pdf.close()
    return draw_boxes(image, zip(boxes, FILLS, strict=False))


FILLS = (PASSAGE_FILL, QUOTE_FILL)


def page_png(
    path: str | Path,
    page: int,
    scale: float = SCALE,
    *,
    passage: str = "",
    quotes: Sequence[str] = (),
) -> bytes:
    """Page `page` of the PDF at `path` as PNG bytes, `passage` (its sentences) and `quotes`
    marked where they are found on it; PreviewError with one line if it cannot be shown."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise _missing(path, page) from None
    marks: tuple[tuple[str, ...], ...] = ()
    if passage or quotes:
        sentences = tuple(passage[a:b] for a, b in sentence_spans(passage))
        marks = (sentences, tuple(quotes))
    return _cached_png(str(path), page, scale, marks, (stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _cached_png(
    path: str,
    page: int,
    scale: float,
    marks: tuple[tuple[str, ...], ...],
    _version: tuple[int, int],
) -> bytes:
    buffer = io.BytesIO()
    render_page(path, page, scale, marks).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _letters(text: str) -> Iterable[str]:
    """The letters and digits `text` reads as, case-folded and compatibility-normalised."""
    return (c for c in unicodedata.normalize("NFKC", text).casefold() if c.isalnum())


def text_boxes(page: pypdfium2.PdfPage, texts: Iterable[str], scale: float = SCALE) -> list[Box]:
    """Pixel boxes, one per line, over each of `texts` where it is found on `page` (caller holds
    PDFIUM_LOCK); a rotated page gets none rather than boxes in the wrong place."""
    wanted = [t for t in ("".join(_letters(text)) for text in texts) if len(t) >= MIN_FIND]
    if not wanted or page.get_rotation() % 360:
        return []
    import pypdfium2.raw as pdfium_c

    textpage = page.get_textpage()
    try:
        letters, index = [], []
        for i in range(textpage.count_chars()):
            # One character at a time: the page's whole text need not index like its characters.
            for letter in _letters(chr(pdfium_c.FPDFText_GetUnicode(textpage, i))):
                letters.append(letter)
                index.append(i)
        found = "".join(letters)
        # The page's effective box (a crop or media box may be inherited from its parents).
        left, _, _, top = page.get_bbox()
        boxes: list[Box] = []
        for text in wanted:
            at = found.find(text)
            if at < 0:
                continue
            chars = [
                textpage.get_charbox(i) for i in range(index[at], index[at + len(text) - 1] + 1)
            ]
            for x0, y0, x1, y1 in _lines(chars):
                boxes.append(
                    (
                        (x0 - left) * scale,
                        (top - y1) * scale,
                        (x1 - left) * scale,
                        (top - y0) * scale,
                    )
                )
        return boxes
    finally:
        textpage.close()


def _lines(
    chars: Sequence[tuple[float, float, float, float]],
) -> list[tuple[float, float, float, float]]:
    """Character boxes (PDF points: left, bottom, right, top) merged into one box per line."""
    lines: list[list[float]] = []
    for x0, y0, x1, y1 in chars:
        if x1 <= x0 or y1 <= y0:
            continue  # a space or a generated line break: no ink
        line = lines[-1] if lines else None
        height = min(y1 - y0, line[3] - line[1]) if line else 0.0
        same_line = line is not None and min(y1, line[3]) - max(y0, line[1]) > 0.5 * height
        if line is not None and same_line and x0 >= line[0] - height:
            line[:] = [min(line[0], x0), min(line[1], y0), max(line[2], x1), max(line[3], y1)]
        else:
            lines.append([x0, y0, x1, y1])
    return [(a, b, c, d) for a, b, c, d in lines]


def draw_boxes(
    image: Image, marks: Iterable[tuple[Sequence[Box], tuple[int, int, int, int]]]
) -> Image:
    """`image` with each group of boxes filled, translucent, in its colour."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    drawn = image.convert("RGBA")
    for boxes, fill in marks:
        if not boxes:
            continue
        # One layer per colour: boxes that overlap (padded lines) do not darken twice.
        layer = PILImage.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        for box in boxes:
            draw.rectangle(_padded(box), fill=fill)
        drawn = PILImage.alpha_composite(drawn, layer)
    return drawn.convert("RGB") if drawn.mode != image.mode else drawn


def _padded(box: Box, pad: float = 1.5) -> Box:
    return (box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad)


def _missing(path: Path, page: int) -> PreviewError:
    return PreviewError(
        f"cannot show page {page}: {path} is not there any more (moved or deleted since it was "
        "ingested)"
    )
