"""Text for PDF pages that have none, or only garbage: garbled-text detection and Tesseract OCR.

    if needs_ocr(text, mode="auto"):
        engine = Tesseract.find()          # None when the binary is not installed
        text = engine.read(pdf_page) if engine else text

Tesseract runs as the `tesseract` binary (Debian's `tesseract-ocr`), one page image through its
stdin, so no Python binding is needed. Pages are rendered with PDFium (pypdfium2) at 300 dpi, or
less when that would pass `MAX_PIXELS`: a poster-sized page costs what a letter page costs.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import shutil
import subprocess
import threading
import unicodedata
from dataclasses import dataclass
from typing import Any

from rag.models import usable_cores
from rag.settings import OcrMode

logger = logging.getLogger(__name__)

__all__ = [
    "INSTALL_HINT",
    "OcrError",
    "OcrMode",
    "Tesseract",
    "garbled",
    "needs_ocr",
    "page_image",
    "workers",
]
INSTALL_HINT = (
    "tesseract is not installed, so PDF pages without usable text are not OCRed; install it "
    "with `apt-get install tesseract-ocr` (Debian, Ubuntu) or `brew install tesseract` (macOS), "
    'or set ocr = "off"'
)

DPI = 300
# 300 dpi on a US letter page is 8.4 million pixels; a larger page is rendered smaller instead.
MAX_PIXELS = 9_000_000
# A page Tesseract has not finished in this long is given up (reported), not waited for.
PAGE_TIMEOUT_S = 120.0
# Tesseract processes run at once for one document, at most (see `workers`).
MAX_WORKERS = 4
# Models that are not scripts a page is written in.
_NOT_LANGUAGES = frozenset({"osd", "equ"})
_MAX_LANGUAGES = 3

# --- garbled text ------------------------------------------------------------------------------

_MIN_LETTERS = 80
# Replacement, private-use and unassigned characters: text whose font has no Unicode map.
_MAX_BAD_RATIO = 0.05
# Share of vowels among Latin letters: 0.35 to 0.45 in English, French, German, Spanish, Italian
# (at least 0.26 on every page of pdfs/real and financebench-dev but 1908.10084, at 0.07);
# text whose glyph codes map to the wrong letters (a shifted alphabet) has far fewer.
_MIN_VOWEL_RATIO = 0.18
# Share of Latin-letter words with a vowel: below this the words are not words of any language.
_MIN_VOWELLED_WORDS = 0.6
_VOWELS = frozenset("aeiouyàáâäãåèéêëìíîïòóôöõùúûüýÿæœ")
_WORD = re.compile(r"[^\W\d_]+")


def garbled(text: str) -> str | None:
    """Why a page's extracted text is not text a reader would recognise, or None when it is.

    Counted on letters, so it holds for any script: replacement and private-use characters
    (fonts without a Unicode map), and for Latin text, too few vowels (glyphs mapped to the
    wrong letters). Short pages are never called garbled: too little to judge.
    """
    letters = [c for c in text if c.isalpha()]
    if len(letters) < _MIN_LETTERS:
        return None
    visible = sum(1 for c in text if not c.isspace())
    bad = sum(1 for c in text if _is_bad_char(c))
    if bad > _MAX_BAD_RATIO * visible:
        return f"{bad} of {visible} characters are unmapped glyphs"
    latin = [c.lower() for c in letters if "LATIN" in unicodedata.name(c, "")]
    if len(latin) < 0.8 * len(letters):
        return None
    vowels = sum(1 for c in latin if c in _VOWELS)
    if vowels < _MIN_VOWEL_RATIO * len(latin):
        return f"only {vowels / len(latin):.0%} of its letters are vowels"
    words = [w.lower() for w in _WORD.findall(text) if len(w) >= 3]
    if len(words) >= 20:
        vowelled = sum(1 for w in words if not _VOWELS.isdisjoint(w))
        if vowelled < _MIN_VOWELLED_WORDS * len(words):
            return f"only {vowelled} of {len(words)} words have a vowel"
    return None


def _is_bad_char(c: str) -> bool:
    if c == "\ufffd":
        return True
    if "\uf000" <= c <= "\uf0ff":
        # Symbol and Wingdings glyphs (bullets, math in slides) mapped to private use, as
        # Microsoft's fonts do: a page of prose with a formula in it is not garbage.
        return False
    category = unicodedata.category(c)
    return category in ("Co", "Cn", "Cs") or (category == "Cc" and c not in "\n\t")


def needs_ocr(text: str, mode: OcrMode) -> str | None:
    """Why a page's text should come from OCR under `mode`, or None to keep it."""
    if mode == "off":
        return None
    if mode == "force":
        return "ocr = force"
    if not text.strip():
        return "no text layer"
    reason = garbled(text)
    return f"garbled text ({reason})" if reason else None


# --- Tesseract ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tesseract:
    """The tesseract binary and the languages it reads pages in.

    engine = Tesseract.find()
    text = engine.read(pdfium_page) if engine else ""
    """

    binary: str
    languages: str

    @classmethod
    def find(cls) -> Tesseract | None:
        """The installed tesseract, or None; says how to install it once per PATH."""
        binary = shutil.which("tesseract")
        if binary is None:
            _say_missing(os.environ.get("PATH", ""))
            return None
        return _engine(binary)

    def read(self, page: Any) -> str:
        """The text of a pypdfium2 page, rendered at most at `MAX_PIXELS`, through Tesseract.

        Raises OcrError with a one-line reason when Tesseract fails or times out.
        """
        return self.read_image(page_image(page))

    def read_image(self, image: bytes) -> str:
        """The text of a page image (PNG bytes, from `page_image`) through Tesseract.

        Needs no PDFium, so several run at once from threads: each is its own process.
        Raises OcrError with a one-line reason when Tesseract fails or times out.
        """
        # One OpenMP thread per call: on a busy machine Tesseract's own threads wait for cores
        # and run slower than one (see docs/documents.md).
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        command = [self.binary, "stdin", "stdout", "-l", self.languages, "--psm", "3"]
        try:
            done = subprocess.run(
                command,
                input=image,
                capture_output=True,
                timeout=PAGE_TIMEOUT_S,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise OcrError(f"tesseract took over {PAGE_TIMEOUT_S:.0f}s") from e
        except OSError as e:
            raise OcrError(f"tesseract could not run: {e.strerror or e}") from e
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise OcrError(f"tesseract failed: {message[-1] if message else done.returncode}")
        return done.stdout.decode("utf-8", "replace")


def available() -> bool:
    """Whether a tesseract binary is on PATH (without saying anything when it is not)."""
    return shutil.which("tesseract") is not None


class OcrError(Exception):
    """Tesseract could not read one page; the message is one line."""


def workers(pages: int) -> int:
    """How many tesseract processes to run at once for `pages` pages: one per core this process
    may use, at most `MAX_WORKERS` (each holds a rendered page, about 9 MB, in memory)."""
    return max(1, min(pages, usable_cores(), MAX_WORKERS))


def page_image(page: Any) -> bytes:
    """A pypdfium2 page rendered for OCR (see `render`), as PNG bytes."""
    buffer = io.BytesIO()
    render(page).save(buffer, format="PNG")
    return buffer.getvalue()


def render(page: Any) -> Any:
    """A PIL image of a pypdfium2 page at `DPI`, or smaller so it has at most `MAX_PIXELS`."""
    width, height = page.get_size()  # PDF points, 72 per inch
    scale = DPI / 72
    area = max(width * height, 1.0)
    scale = min(scale, (MAX_PIXELS / area) ** 0.5)
    return page.render(scale=scale, grayscale=True).to_pil()


_said_lock = threading.Lock()
_said_for: set[str] = set()


def _say_missing(path: str) -> None:
    with _said_lock:
        if path in _said_for:
            return
        _said_for.add(path)
    logger.warning(INSTALL_HINT)


@functools.cache
def _engine(binary: str) -> Tesseract | None:
    """The languages this tesseract has models for: English first, at most a few."""
    try:
        done = subprocess.run(
            [binary, "--list-langs"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        logger.warning("tesseract at %s does not run (%s); PDF pages are not OCRed", binary, e)
        return None
    listed = done.stdout.decode("utf-8", "replace").splitlines()[1:]
    found = [name.strip() for name in listed if name.strip() and name.strip() not in _NOT_LANGUAGES]
    if not found:
        logger.warning("tesseract at %s has no language models; PDF pages are not OCRed", binary)
        return None
    ordered = sorted(found, key=lambda name: (name != "eng", name))[:_MAX_LANGUAGES]
    return Tesseract(binary, "+".join(ordered))
