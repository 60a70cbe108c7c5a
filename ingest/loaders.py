"""Turn a source file (PDF, plain text, Markdown, HTML) into a `Document` of numbered pages.

Every failure a person can act on becomes a `LoadError` with a short reason; nothing from pypdf
escapes, because hostile or broken PDFs are normal input for an ingest job, not bugs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from bs4 import BeautifulSoup
from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, PyPdfError

from ingest import ocr as ocr_engine
from ingest import pdf_worker
from ingest.ocr import OcrMode
from ingest.pdf import finish_pages, page_done, pdfium_texts
from rag.errors import LoadError
from rag.settings import PdfText
from rag.types import Document, Page, sha256_hex

logger = logging.getLogger(__name__)

_MEDIA_TYPES = {
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
}
SUPPORTED_SUFFIXES: frozenset[str] = frozenset(_MEDIA_TYPES)

_MAX_REPLACEMENT_RATIO = 0.01
_MAX_CAUSE_CHARS = 120
_HASH_BLOCK = 1 << 20
_DROPPED_HTML_TAGS = ("script", "style", "noscript", "template", "head")
# Producers often put the file name or a placeholder in /Title; a stem is a better title than that.
_FILENAME_TITLE = re.compile(r"\.(pdf|docx?|odt|rtf|tex|dvi|ps|pptx?|xlsx?|indd)$", re.IGNORECASE)
_PLACEHOLDER_TITLES = frozenset({"untitled", "title", "document", "none", "unknown"})
_MD_HEADING = re.compile(r"^#[ \t]+(.+?)[ \t#]*$")
_MD_FENCE = re.compile(r"^\s*(```|~~~)")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# TeX fonts emit ligature glyphs; "ﬁlled" would never match a search for "filled".
_LIGATURES = str.maketrans(
    {"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"}
)


def sha256_file(path: Path) -> str:
    """Content hash of a file, streamed; equal to the `Document.id` that `load_document` gives."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    # sha256_hex ends every part with a NUL separator; the id of one part must match it.
    digest.update(b"\x00")
    return digest.hexdigest()


def load_document(
    path: Path,
    ocr: OcrMode = "off",
    pdf_text: PdfText = "pdfium",
    pdf_stall_s: float | None = None,
) -> Document:
    """Read a supported file once and return its pages of text, or raise `LoadError`.

    `ocr` applies to PDFs (ingest/ocr.py): "auto" reads pages without usable text with
    Tesseract, "force" every page, "off" none (the default here; the setting's default is auto).
    `pdf_text` is what reads a PDF's text layer: "pdfium", with pypdf for the pages PDFium cannot
    read, or "pypdf" alone (the `pdf_text` setting). With `pdf_stall_s`, a PDF is read in a child
    process (ingest/pdf_worker.py) that is stopped when no page is read for that many seconds:
    a crash or a hang in a parser then fails this file only.
    """
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in _MEDIA_TYPES:
        shown = f"'{suffix}'" if suffix else "(no extension)"
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise LoadError(source, f"unsupported file type {shown} (supported: {supported})")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise LoadError(source, f"cannot read file: {e.strerror or type(e).__name__}") from e
    if not raw or raw.isspace():
        raise LoadError(source, "empty file")
    media_type = _MEDIA_TYPES[suffix]
    if media_type == "application/pdf" and pdf_stall_s is not None and pdf_worker.SUPPORTED:
        title, pages, empty = pdf_worker.read_pdf(raw, source, ocr, pdf_text, pdf_stall_s)
    elif media_type == "application/pdf":
        title, pages, empty = load_pdf(raw, source, ocr, pdf_text)
    else:
        title, text = _load_text(raw, source, media_type)
        pages, empty = (Page(1, text),), ()
    return Document(
        id=sha256_hex(raw),
        source=source,
        title=title or path.stem,
        media_type=media_type,
        pages=pages,
        empty_pages=empty,
    )


def _normalise(text: str, *, strip_lines: bool = False) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    if strip_lines:
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _short_cause(error: BaseException) -> str:
    message = " ".join(str(error).split())
    if not isinstance(error, PyPdfError):
        # A bare KeyError or IndexError message ("'/Root'", "list index out of range")
        # needs its type to make sense.
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    message = message or type(error).__name__
    if len(message) > _MAX_CAUSE_CHARS:
        message = message[: _MAX_CAUSE_CHARS - 1] + "…"
    return message


_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved_level = logging.NOTSET
_quiet_warnings: warnings.catch_warnings[list[warnings.WarningMessage] | None] | None = None


@contextlib.contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """Silence pypdf's logger and warnings; restored when the last caller leaves."""
    global _quiet_depth, _quiet_saved_level, _quiet_warnings
    pypdf_logger = logging.getLogger("pypdf")
    # Counted so that overlapping loads in threads cannot leave pypdf silenced for good.
    with _quiet_lock:
        if _quiet_depth == 0:
            _quiet_saved_level = pypdf_logger.level
            pypdf_logger.setLevel(logging.CRITICAL + 1)
            _quiet_warnings = warnings.catch_warnings()
            _quiet_warnings.__enter__()
            warnings.simplefilter("ignore")
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                pypdf_logger.setLevel(_quiet_saved_level)
                if _quiet_warnings is not None:
                    _quiet_warnings.__exit__(None, None, None)
                    _quiet_warnings = None


def load_pdf(
    raw: bytes, source: str, ocr: OcrMode, pdf_text: PdfText
) -> tuple[str, tuple[Page, ...], tuple[int, ...]]:
    """A PDF's title, its pages with text and the numbers of those without, read in this
    process; `LoadError` for anything wrong with the file."""
    if b"%PDF-" not in raw[:1024]:
        raise LoadError(source, "malformed PDF: not a PDF file (no %PDF- header)")
    with _quiet_pypdf():
        try:
            return _read_pdf(raw, source, ocr, pdf_text)
        except LoadError:
            raise
        except Exception as e:  # any parser failure (RecursionError, KeyError, ...) means broken
            raise LoadError(source, f"malformed PDF: {_short_cause(e)}") from e


def _read_pdf(
    raw: bytes, source: str, ocr: OcrMode, pdf_text: PdfText
) -> tuple[str, tuple[Page, ...], tuple[int, ...]]:
    reader = PdfReader(io.BytesIO(raw))
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")
        except (DependencyError, NotImplementedError) as e:
            raise LoadError(source, f"unsupported encryption: {_short_cause(e)}") from e
        # An empty user *or owner* password opens without asking, as with poppler's tools.
        if opened == PasswordType.NOT_DECRYPTED:
            raise LoadError(source, "needs a password (encrypted PDF)")
    page_count = len(reader.pages)
    if page_count == 0:
        raise LoadError(source, "no pages")
    read: list[str | None] = [None] * page_count
    if pdf_text == "pdfium":
        read = pdfium_texts(raw, source, page_count) or read
    texts: list[str] = []
    failures: list[Exception] = []
    for number, text in enumerate(read, start=1):
        if not (text and text.strip()):
            # Not read by PDFium, or no text there: pypdf reads the page (an empty page is cheap).
            try:
                text = reader.pages[number - 1].extract_text()
            except Exception as e:  # noqa: BLE001 - one bad page must not cost the document
                logger.debug("%s: page %d: text extraction failed: %r", source, number, e)
                failures.append(e)
                text = ""
            page_done("text", number, page_count)
        texts.append(_normalise(text.translate(_LIGATURES), strip_lines=True))
    if len(failures) == page_count:
        raise LoadError(source, f"malformed PDF: {_short_cause(failures[0])}") from failures[0]
    texts = finish_pages(raw, source, texts, ocr)
    pages = [Page(n, text) for n, text in enumerate(texts, start=1) if text]
    empty = [n for n, text in enumerate(texts, start=1) if not text]
    if not pages:
        if ocr != "off" and ocr_engine.available():
            raise LoadError(source, "no text layer, and OCR found no text (image-only pages)")
        raise LoadError(source, "no text layer (scanned or image-only pages); run OCR first")
    return _pdf_title(reader), tuple(pages), tuple(empty)


def _pdf_title(reader: PdfReader) -> str:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # noqa: BLE001 - a broken /Info must not cost the text
        return ""
    if not isinstance(title, str):
        return ""
    title = " ".join(_CONTROL_CHARS.sub(" ", title).split())
    title = title.removeprefix("Microsoft Word - ")
    if (
        not title
        or len(title) > 300
        or "\ufffd" in title
        or title.lower() in _PLACEHOLDER_TITLES
        or _FILENAME_TITLE.search(title)
    ):
        return ""
    return title


def _decode(raw: bytes, source: str) -> str:
    try:
        # utf-8-sig is utf-8 that also drops a leading byte-order mark.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    text = raw.decode("utf-8-sig", errors="replace")
    # A few stray bytes in a long UTF-8 file are worth keeping; a file in another encoding is not.
    if text.count("\ufffd") >= _MAX_REPLACEMENT_RATIO * max(len(text), 1):
        raise LoadError(source, "not UTF-8 text")
    return text


def _load_text(raw: bytes, source: str, media_type: str) -> tuple[str, str]:
    decoded = _decode(raw, source)
    if media_type == "text/html":
        title, text = _html_text(decoded)
    else:
        text = _normalise(decoded)
        title = _markdown_title(text) if media_type == "text/markdown" else ""
    if not text:
        raise LoadError(source, "empty file (no text)")
    return title, text


def _markdown_title(text: str) -> str:
    in_fence = False
    for line in text.split("\n"):
        # A "# comment" inside a fenced code block is code, not a heading.
        if _MD_FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (match := _MD_HEADING.match(line)):
            return match.group(1).strip()
    return ""


def _html_text(html: str) -> tuple[str, str]:
    soup = BeautifulSoup(html, "html.parser")
    title = ""
    for tag_name in ("title", "h1"):
        tag = soup.find(tag_name)
        if tag is not None and (found := " ".join(tag.get_text(" ").split())):
            title = found
            break
    for tag in soup.find_all(_DROPPED_HTML_TAGS):
        tag.decompose()
    # Source indentation in HTML is not content, so every line is stripped on both sides.
    lines = (line.strip() for line in soup.get_text("\n").split("\n"))
    return title, _normalise("\n".join(lines))
