"""A PDF's page texts: read by PDFium, then OCR where the text layer is missing or garbage,
tables where the page is a table, then running lines and broken words.

    texts = pdfium_texts(raw, source, page_count)          # None per page PDFium could not read
    texts = finish_pages(raw, source, texts, ocr="auto")   # one text per page, "" for none

With PDFium (pypdfium2, C) reading the text, loading the 20 SEC filings here takes a tenth of the
CPU time it took with pypdf (54 s against 630 s), and PDFium keeps words apart where pypdf glues
or splits them (docs/ingest-throughput.md). pypdf still opens every PDF first (encryption,
repair, the page count and the title) and reads any page PDFium cannot (ingest/loaders.py).
PDFium also renders the pages to OCR and gives the character boxes that tables need.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from ingest import ocr
from ingest.layout import drop_running_lines, join_hyphens, vocabulary
from ingest.ocr import OcrError, OcrMode, Tesseract, garbled, needs_ocr
from ingest.tables import looks_tabular, page_with_tables

logger = logging.getLogger(__name__)

# PDFium is not thread-safe: every call into it in this process goes through this lock.
PDFIUM_LOCK = threading.RLock()
# Table pages read per document; past this (a PDF of thousands of tiny tables) pages stay text.
MAX_TABLE_PAGES = 400
_UNMAPPED = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# The page listener of each thread (ingest/pdf_child.py, the ingest job's progress bar).
_listeners = threading.local()
# page_done's `step` values, as a person reads them.
STEPS = {"text": "page", "ocr": "OCR, page", "tables": "tables, page"}


@contextmanager
def listening(callback: Callable[[str, int, int], None]) -> Iterator[None]:
    """Have `callback(step, done, total)` called on this thread each time a page's text is
    read (step "text"), OCRed ("ocr") or rebuilt for its tables ("tables"), until the block
    ends: `done` of the step's `total` pages. ingest/pdf_worker.py forwards the child's calls
    to the caller's listener; a reader that stops calling it is stuck."""
    previous = getattr(_listeners, "callback", None)
    _listeners.callback = callback
    try:
        yield
    finally:
        _listeners.callback = previous


def page_done(step: str, done: int, total: int) -> None:
    callback = getattr(_listeners, "callback", None)
    if callback is not None:
        callback(step, done, total)


def pdfium_texts(raw: bytes, source: str, page_count: int) -> list[str | None] | None:
    """Each page's text as PDFium reads it ("" for a page without text, None for one it cannot
    read), or None when PDFium will not open the file or counts its pages differently."""
    with _pdfium(raw, source, quiet=True) as pdf:
        if pdf is None or len(pdf) != page_count:
            return None
        texts: list[str | None] = []
        for index in range(page_count):
            try:
                texts.append(_page_text(pdf[index]))
            except Exception as e:  # noqa: BLE001 - pypdf reads this page instead
                logger.debug("%s: page %d: PDFium cannot read its text: %r", source, index + 1, e)
                texts.append(None)
            page_done("text", index + 1, page_count)
        return texts


def _page_text(page: Any) -> str:
    textpage = page.get_textpage()
    try:
        text = textpage.get_text_range()
    finally:
        textpage.close()
        page.close()
    # PDFium ends a line broken after a hyphen with U+FFFE and no line break; pypdf writes "-"
    # and a line break, which is what join_hyphens expects. Control characters are glyphs with
    # no Unicode value (math fonts): noise to a reader and to search.
    return _UNMAPPED.sub("", text.replace("\ufffe", "-\n"))


def finish_pages(raw: bytes, source: str, texts: list[str], ocr: OcrMode = "off") -> list[str]:
    """The pages' final texts: OCR where needed and possible, then layout fixes."""
    wanted = {n: why for n, text in enumerate(texts) if (why := needs_ocr(text, ocr))}
    if wanted:
        texts = _ocr_pages(raw, source, texts, wanted)
    tabular = [n for n, text in enumerate(texts) if n not in wanted and looks_tabular(text)]
    if tabular:
        texts = _table_pages(raw, source, texts, tabular)
    texts = drop_running_lines(texts)
    words = vocabulary(texts)
    return [join_hyphens(text, words) for text in texts]


def _ocr_pages(raw: bytes, source: str, texts: list[str], wanted: dict[int, str]) -> list[str]:
    """OCR the `wanted` pages: rendered one after another (PDFium is single-threaded), read by
    up to `ocr.workers` tesseract processes at once, a few rendered pages ahead at most."""
    engine = Tesseract.find()
    if engine is None:
        return texts
    texts = list(texts)
    count = ocr.workers(len(wanted))
    with _pdfium(raw, source) as pdf, ThreadPoolExecutor(count) as pool:
        if pdf is None:
            return texts
        reading: deque[tuple[int, Future[str]]] = deque()
        done = 0

        def take() -> None:
            nonlocal done
            try:
                _take_ocr(texts, *reading.popleft(), source, engine)
            finally:
                done += 1
                page_done("ocr", done, len(wanted))

        for index, why in wanted.items():
            logger.info("%s: page %d: OCR (%s)", source, index + 1, why)
            try:
                image = ocr.page_image(pdf[index])
            except Exception as e:  # noqa: BLE001 - PDFium failing on one page costs that page
                logger.warning("%s: page %d: cannot render for OCR: %r", source, index + 1, e)
                done += 1
                page_done("ocr", done, len(wanted))
                continue
            reading.append((index, pool.submit(engine.read_image, image)))
            if len(reading) > count:
                take()
        while reading:
            take()
    return texts


def _take_ocr(
    texts: list[str], index: int, reading: Future[str], source: str, engine: Tesseract
) -> None:
    """Put a page's OCR text in `texts` when it is readable text; otherwise say why not."""
    try:
        found = _tidy(reading.result())
    except OcrError as e:
        logger.warning("%s: page %d: OCR failed: %s", source, index + 1, e)
        return
    if not found or garbled(found):
        # A script Tesseract has no model for reads as noise: better no text than that.
        if texts[index].strip() or found:
            logger.warning(
                "%s: page %d: OCR found no readable text (is the page in a language "
                "tesseract has a model for? languages: %s)",
                source,
                index + 1,
                engine.languages,
            )
        return
    texts[index] = found


def _table_pages(raw: bytes, source: str, texts: list[str], tabular: list[int]) -> list[str]:
    """Pages that look like tables rebuilt with Markdown tables (ingest/tables.py)."""
    if len(tabular) > MAX_TABLE_PAGES:
        logger.warning(
            "%s: %d pages look like tables; only the first %d are read as tables",
            source,
            len(tabular),
            MAX_TABLE_PAGES,
        )
        tabular = tabular[:MAX_TABLE_PAGES]
    texts = list(texts)
    with _pdfium(raw, source) as pdf:
        if pdf is None:
            return texts
        for done, index in enumerate(tabular, start=1):
            page_done("tables", done, len(tabular))
            try:
                rebuilt = page_with_tables(pdf[index])
            except Exception as e:  # noqa: BLE001 - a page PDFium cannot read keeps its text
                logger.debug("%s: page %d: no table pass: %r", source, index + 1, e)
                continue
            if rebuilt:
                texts[index] = rebuilt
    return texts


def _tidy(text: str) -> str:
    """Tesseract's output as the loader's text: no trailing spaces, at most one blank line."""
    lines = [line.rstrip() for line in text.replace("\f", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


@contextmanager
def _pdfium(raw: bytes, source: str, *, quiet: bool = False) -> Iterator[Any]:
    """The PDF opened with PDFium under `PDFIUM_LOCK`, or None (logged) when it will not open.
    `quiet`: say so at debug level only (pypdf reads the text instead, at no loss)."""
    import pypdfium2

    with PDFIUM_LOCK:
        try:
            pdf = pypdfium2.PdfDocument(raw)
        except Exception as e:  # noqa: BLE001 - pypdf read it; PDFium refusing costs only OCR
            if quiet:
                logger.debug("%s: PDFium cannot open it (%s); pypdf reads the text", source, e)
            else:
                logger.warning("%s: PDFium cannot open it (%s); no OCR or tables", source, e)
            yield None
            return
        try:
            yield pdf
        finally:
            pdf.close()
