"""Page text as a reader sees it: running headers and footers dropped, line-end hyphens joined.

    texts = drop_running_lines(texts)     # every page's text, in page order
    texts = [join_hyphens(t, vocabulary(texts)) for t in texts]

Both work on extracted text alone, so they apply to text layers and OCR output alike.
Two-column pages need nothing here: pypdf and PDFium both follow the content stream, which
for the two-column papers in `pdfs/real` is column by column (docs/documents.md).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

# Lines looked at for a running header (top) or footer (bottom) of each page.
EDGE_LINES = 3
# A line is running when it is at the edge of at least this share of pages (and 3 pages): a
# 10-K repeats "Table of Contents" on 110 of its 252 pages (exhibits have none).
MIN_SHARE = 0.3
MIN_PAGES = 3
MAX_RUNNING_CHARS = 160

_DIGITS = re.compile(r"\d+")
_ROMAN_PAGE = re.compile(r"^(?=[ivxlc]+$)m{0,3}(cm|cd|d?c{0,3})(xc|xl|l?x{0,3})(ix|iv|v?i{0,3})$")
# A word broken at the end of a line: letters (and inner hyphens), a hyphen, the line end, then
# the rest of the word, what sticks to it (punctuation) and the space after it on the next line.
_BROKEN = re.compile(r"([^\W\d_][\w-]*)-\n([^\W\d_]+)(\S*)([ \t]+|$)", re.MULTILINE)
_TOKEN = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")


def _key(line: str) -> str:
    """A line with page numbers and spacing normalised: 'Page 12 of 40' ~ 'Page 7 of 40'.

    Spaces go too: one page's text layer may break 'Table of Contents' into 'T', 'able of',
    'Contents' where another has it whole.
    """
    key = _DIGITS.sub("#", "".join(line.lower().split()))
    return "#" if _ROMAN_PAGE.match(key) else key


def _edge_runs(lines: list[str]) -> list[tuple[list[int], str]]:
    """Runs of 1 to EDGE_LINES consecutive non-empty lines at the top or bottom of a page,
    each as (line indexes, key)."""
    content = [i for i, line in enumerate(lines) if line.strip()]
    runs: list[tuple[list[int], str]] = []
    for edge in (content[:EDGE_LINES], content[-EDGE_LINES:]):
        for first in range(len(edge)):
            for last in range(first + 1, len(edge) + 1):
                indexes = edge[first:last]
                text = " ".join(lines[i] for i in indexes)
                if len(text) <= MAX_RUNNING_CHARS:
                    runs.append((indexes, _key(text)))
    return runs


def running_lines(texts: Sequence[str]) -> set[str]:
    """Normalised lines found at the top or bottom of most pages (headers, footers, numbers)."""
    if len(texts) < MIN_PAGES:
        return set()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update({key for _, key in _edge_runs(text.split("\n"))})
    least = max(MIN_PAGES, MIN_SHARE * len(texts))
    return {key for key, n in counts.items() if n >= least and key.strip("#")} | (
        {"#"} if counts["#"] >= least else set()
    )


def drop_running_lines(texts: Sequence[str]) -> list[str]:
    """Each page's text without the running lines at its top and bottom edges."""
    running = running_lines(texts)
    if not running:
        return list(texts)
    return [_strip_edges(text, running) for text in texts]


def _strip_edges(text: str, running: set[str]) -> str:
    lines = text.split("\n")
    dropped = {i for indexes, key in _edge_runs(lines) if key in running for i in indexes}
    kept = [line for i, line in enumerate(lines) if i not in dropped]
    # A page that is nothing but its running lines (a repeated one-line page) keeps them.
    return "\n".join(kept).strip() or text


def vocabulary(texts: Sequence[str]) -> set[str]:
    """Lower-cased words (hyphenated compounds whole) that occur within lines of `texts`."""
    words: set[str] = set()
    for text in texts:
        words.update(match.lower() for match in _TOKEN.findall(text.replace("-\n", " ")))
    return words


def join_hyphens(text: str, words: set[str]) -> str:
    """Join words broken across lines ('informa-\\ntion' -> 'information').

    The hyphen stays when the next line starts with a capital (a name, 'Non-\\nEnglish'),
    when the document writes the compound with a hyphen elsewhere ('left-to-right') or the
    first part is already a compound ('state-of-the-\\nart'), unless the joined word is
    itself in the document.
    """

    def fix(match: re.Match[str]) -> str:
        first, rest, stuck, space = match.groups()
        if not rest[0].islower():
            return match.group(0)
        joined = first + rest
        compound = f"{first}-{rest}"
        whole = _TOKEN.match(compound + stuck)  # 'left-' + 'to' + '-right' is one compound
        written = whole is not None and whole.group(0).lower() in words
        if joined.lower() not in words and (written or "-" in first):
            joined = compound
        # The line break moves after the mended word (or goes, when the word ended the line).
        return joined + stuck + ("\n" if space else "")

    return _BROKEN.sub(fix, text)
