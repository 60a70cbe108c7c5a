"""A PDF page as a PNG image, for the chat's "Show page" preview of a source.

    png = page_png("/data/papers/attention.pdf", 3)   # bytes; pages count from 1

Rendered with pdfium (pypdfium2) and cached by path, page, scale and the file's size and mtime,
so a file replaced on disk is rendered afresh.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from ingest.pdf import PDFIUM_LOCK
from rag.errors import RagError

if TYPE_CHECKING:
    from PIL.Image import Image

SCALE = 1.5  # 72 dpi * 1.5: a letter page is about 918 x 1188 pixels


class PreviewError(RagError):
    """A page cannot be shown: the file is gone, is not a PDF, or has no such page."""


def is_pdf(source: str) -> bool:
    """Whether a chunk's source is a PDF file (the only kind with pages to show)."""
    return PurePath(source).suffix.lower() == ".pdf"


def render_page(path: str | Path, page: int, scale: float = SCALE) -> Image:
    """Page `page` (from 1) of the PDF at `path` as a PIL image."""
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
                return pdf_page.render(scale=scale).to_pil()
            finally:
                pdf_page.close()
        finally:
            pdf.close()


def page_png(path: str | Path, page: int, scale: float = SCALE) -> bytes:
    """Page `page` of the PDF at `path` as PNG bytes; PreviewError with one line if it cannot."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise _missing(path, page) from None
    return _cached_png(str(path), page, scale, (stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _cached_png(path: str, page: int, scale: float, _version: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    render_page(path, page, scale).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _missing(path: Path, page: int) -> PreviewError:
    return PreviewError(
        f"cannot show page {page}: {path} is not there any more (moved or deleted since it was "
        "ingested)"
    )
