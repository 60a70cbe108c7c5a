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
from collections import Counter
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
_WORD = re.compile(r"[A-Za-z]{2,}")
# A file-name word is split only into words the document uses at least this often.
_SEGMENT_MIN_COUNT = 3
_SEGMENT_MAX_WORD = 24
# A heading on this share of a document's pages (of at least that many) is a running header.
_RUNNING_SHARE = 0.3
_RUNNING_MIN_PAGES = 4
_SECTION_NUMBER = re.compile(r"(?:\d{1,2}(?:\.\d{1,2})*\.?\s+)?")
_MD_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*$")


def document_label(
    document: Document, metadata: Mapping[str, str] | None = None, file_name: bool = True
) -> str:
    """The words that name a document: its file name's words (run-together words split by the
    document's own vocabulary: LOCKHEEDMARTIN_2022_10K is "Lockheed Martin 2022 10K" when the
    filing says "Lockheed Martin"), an informative title, and the values the user attached with
    `--meta` (company=3M year=2022 gives "3M 2022"). `file_name=False` for documents that have
    no file (records of a BEIR corpus, whose source names say nothing). A title the first page
    already starts with is not repeated."""
    parts: list[str] = []
    stem = _stem_words(document.source, _vocabulary(document)) if file_name else ""
    if stem:
        parts.append(stem)
    title = " ".join(document.title.split())
    # The loader falls back to the file's stem for a title; that is already in the label.
    unnamed = {stem.lower(), PurePath(document.source).stem.lower()}
    opening = " ".join(document.pages[0].text[: 2 * len(title) + 8].split()).lower().lstrip("# ")
    if (
        title
        and not _ID_LIKE.match(title)
        and title.lower() not in unnamed
        and not opening.startswith(title.lower())
    ):
        parts.append(title)
    for key, value in (metadata or {}).items():
        if key not in {"title", "type"} and value and value.lower() not in " ".join(parts).lower():
            parts.append(value)
    label = SEPARATOR.join(parts)
    return label[:_MAX_LABEL_CHARS].rstrip()


def with_context(document: Document, chunks: Sequence[Chunk], label: str) -> list[Chunk]:
    """The chunks with `context` set to the label and the heading each sits under (the last
    heading before the chunk on its page, else the last one on an earlier page). A "heading"
    found on most pages is a running header, and says nothing about the page it is on."""
    headings = {page.number: page_headings(page.text) for page in document.pages}
    running = _running(headings, len(document.pages))
    headings = {n: [(o, h) for o, h in found if h not in running] for n, found in headings.items()}
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
        # A table piece's own context (its header row) stays, under the label and heading.
        context = "\n".join(part for part in (context, chunk.context) if part)
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
    # A numbered section ("3.1 Encoder and Decoder Stacks") is judged by its words.
    words = line[_SECTION_NUMBER.match(line).end() :].split()  # type: ignore[union-attr]
    if not words or line[-1] in ".,;:" or not words[0][0].isupper():
        return ""
    body = " ".join(words)
    letters = sum(c.isalpha() for c in body)
    if letters < 0.7 * sum(not c.isspace() for c in body) or letters < 4:
        return ""
    content = [w for w in words if w[0].isalpha() and w.lower() not in _MINOR_WORDS]
    if len(content) < 2 or not all(w[0].isupper() for w in content):
        return ""
    return line


def _running(headings: Mapping[int, list[tuple[int, str]]], pages: int) -> set[str]:
    if pages < _RUNNING_MIN_PAGES:
        return set()
    seen = Counter(h for found in headings.values() for h in {h for _, h in found})
    return {h for h, count in seen.items() if count >= _RUNNING_SHARE * pages}


def _vocabulary(document: Document) -> Counter[str]:
    """How often the document writes each capitalised word, each way ("Lockheed", "MGM"): the
    words a name is made of. Run-together words ("AmericanWater") count as their parts."""
    counts: Counter[str] = Counter()
    for page in document.pages:
        counts.update(w for w in _WORD.findall(_CAMEL.sub(" ", page.text)) if w[0].isupper())
    return counts


def _stem_words(source: str, vocabulary: Counter[str] | None = None) -> str:
    stem = PurePath(source).stem
    words = [w for w in _STEM_SPLIT.split(_CAMEL.sub(" ", stem)) if w]
    kept = [w for w in words if not _ID_LIKE.match(w) or w.isdigit()]
    if vocabulary:
        kept = [_segment(w, vocabulary) for w in kept]
    return " ".join(kept)


def _segment(word: str, vocabulary: Counter[str]) -> str:
    """`word` split into the fewest words the document itself uses (each written as the document
    most often writes it), or `word` as it is when it is one of them or no split exists."""
    forms = _forms(vocabulary)
    target = word.lower()
    if not target.isalpha() or forms.get(target, (0, ""))[0] >= _SEGMENT_MIN_COUNT:
        return word
    # best[i]: (pieces, -frequency, words) of the best spelling of target[:i], fewest pieces first.
    best: list[tuple[int, int, list[str]] | None] = [None] * (len(target) + 1)
    best[0] = (0, 0, [])
    for end in range(2, len(target) + 1):
        for start in range(max(0, end - _SEGMENT_MAX_WORD), end - 1):
            before, found = best[start], forms.get(target[start:end])
            if before is None or found is None or found[0] < _SEGMENT_MIN_COUNT:
                continue
            candidate = (before[0] + 1, before[1] - found[0], [*before[2], found[1]])
            current = best[end]
            if current is None or candidate[:2] < current[:2]:
                best[end] = candidate
    done = best[len(target)]
    return " ".join(done[2]) if done and done[0] > 1 else word


def _forms(vocabulary: Counter[str]) -> dict[str, tuple[int, str]]:
    """Lower-cased word: (how often it is written in any case, the way it is written most)."""
    totals: Counter[str] = Counter()
    written: dict[str, str] = {}
    for form, count in vocabulary.most_common():
        key = form.lower()
        totals[key] += count
        written.setdefault(key, form)
    return {key: (total, written[key]) for key, total in totals.items()}
