"""What a reader of a chunk knows and the chunk's own text does not say: which document it is
from and under which heading it sits.

label = document_label(document, metadata)      # "3M 2022 10K · 10-K - 02/08/2023 - 3M Company"
chunks = with_context(document, chunks, label)  # each Chunk.context: the label and its heading

The context is indexed with the chunk (embedded and BM25-searched) but is not part of the chunk's
text, so a citation still quotes the page exactly. Most pages of an annual report never name the
company or the year a question names; without the label, a chunk of one filing is as good a match
as the same table in the next filing (docs/documents.md measures what the label and the heading
each buy).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePath

from rag.types import Chunk, Document

SEPARATOR = " · "
_MAX_LABEL_CHARS = 160
_MAX_HEADING_CHARS = 90
_MAX_HEADING_WORDS = 12
# Parts of a title that name nothing: an SEC accession number, a hash, a bare date or number.
_ID_LIKE = re.compile(r"^[\d\W_]+$|^[0-9a-f]{16,}$", re.IGNORECASE)
_STEM_SPLIT = re.compile(r"[_\-.\s]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_MINOR_WORDS = frozenset(
    "a an and as at by for from in of on or per the to with vs via its their our".split()  # noqa: SIM905
)
_NUMBERED = re.compile(r"^(item|note|part|section|chapter|schedule|appendix)\s+[\w.]+", re.I)
_MD_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$")


def document_label(document: Document, metadata: Mapping[str, str] | None = None) -> str:
    """The words that name a document: its file name's words, an informative title, and the
    values the user attached with `--meta` (company=3M year=2022 gives "3M 2022")."""
    parts: list[str] = []
    stem = _stem_words(document.source)
    if stem:
        parts.append(stem)
    title = " ".join(document.title.split())
    if title and not _ID_LIKE.match(title) and title.lower() != stem.lower():
        parts.append(title)
    for key, value in (metadata or {}).items():
        if key not in {"title", "type"} and value and value.lower() not in " ".join(parts).lower():
            parts.append(value)
    label = SEPARATOR.join(parts)
    return label[:_MAX_LABEL_CHARS].rstrip()


def with_context(document: Document, chunks: Sequence[Chunk], label: str) -> list[Chunk]:
    """The chunks with `context` set to the label and the heading each sits under (the last
    heading before the chunk on its page, else the last one on an earlier page)."""
    headings = {page.number: page_headings(page.text) for page in document.pages}
    carried = ""
    last_page = 0
    out = []
    for chunk in sorted(chunks, key=lambda c: (c.page, c.start)):
        if chunk.page != last_page:
            # Carry the last heading of the pages between the previous chunk's and this one.
            for number in sorted(n for n in headings if last_page <= n < chunk.page):
                if headings[number]:
                    carried = headings[number][-1][1]
            last_page = chunk.page
        heading = carried
        for offset, text in headings.get(chunk.page, []):
            if offset <= chunk.start:
                heading = text
        context = SEPARATOR.join(part for part in (label, heading) if part)
        out.append(dataclasses.replace(chunk, context=context))
    return out


def page_headings(text: str) -> list[tuple[int, str]]:
    """(offset, heading) of the lines of a page that read as headings, in order."""
    found = []
    offset = 0
    for line in text.split("\n"):
        heading = heading_text(line)
        if heading:
            found.append((offset, heading))
        offset += len(line) + 1
    return found


def heading_text(line: str) -> str:
    """The heading a line is, or "": a Markdown heading; a numbered "Item 7. ..." or "Note 3 ..."
    line; or a short title-cased line of words with no closing punctuation."""
    line = " ".join(line.split())
    if not line or len(line) > _MAX_HEADING_CHARS:
        return ""
    if match := _MD_HEADING.match(line):
        return match.group(1)
    words = line.split()
    if len(words) > _MAX_HEADING_WORDS:
        return ""
    if _NUMBERED.match(line):
        return line.rstrip(".:")
    if line[-1] in ".,;:" or not line[0].isupper():
        return ""
    letters = sum(c.isalpha() for c in line)
    if letters < 0.7 * sum(not c.isspace() for c in line) or letters < 4:
        return ""
    content = [w for w in words if w[0].isalpha() and w.lower() not in _MINOR_WORDS]
    if len(content) < 2 or not all(w[0].isupper() for w in content):
        return ""
    return line


def _stem_words(source: str) -> str:
    stem = PurePath(source).stem
    words = [w for w in _STEM_SPLIT.split(_CAMEL.sub(" ", stem)) if w]
    return " ".join(w for w in words if not _ID_LIKE.match(w) or w.isdigit())
