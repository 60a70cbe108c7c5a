"""Sentences and source markers in text: the one splitter and the one citation pattern.

    split_sentences("It opened in 1890. [1] It closed in 1990.")   # ["It opened in 1890. [1]", ...]
    cited_numbers("Paris [1, 3]. Lyon [2].")                      # (1, 3, 2)

Verification splits answers and passages into sentences and reads the `[n]` markers back; the
answer scores drop the markers before comparing words; tuning cuts sentences out of passages as
queries. They share this module, which needs nothing but `re`.
"""

from __future__ import annotations

import re

# A source marker: "[1]", or a list of them in one pair of brackets, "[1, 3]" or "[2; 4]".
CITATION = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_NUMBER_SEPARATOR = re.compile(r"\s*[,;]\s*")
# A sentence ends at . ! or ? followed by space and something that can start a sentence: a capital
# or a digit, perhaps after an opening quote, parenthesis or bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")
_LEADING_CITATIONS = re.compile(rf"^(?:{CITATION.pattern}\s*)+[.;,]?\s*")


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, stripped; a citation-only fragment joins the sentence before it."""
    pieces = [p.strip() for p in _SENTENCE_END.split(text.strip()) if p.strip()]
    sentences: list[str] = []
    for piece in pieces:
        # Markers written after the full stop ("... 24-10. [1] Next ...") belong to the sentence
        # before them.
        lead = _LEADING_CITATIONS.match(piece)
        if sentences and lead:
            sentences[-1] = f"{sentences[-1]} {lead.group(0).strip()}"
            piece = piece[lead.end() :].strip()
        if piece:
            sentences.append(piece)
    return sentences


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) characters of each sentence of `text`, cut where `split_sentences` cuts
    (a citation-only fragment joins the sentence before it): a span found in a passage maps to
    the sentence that holds it, in the passage's own characters."""
    pieces = []
    begin = 0
    for gap in _SENTENCE_END.finditer(text):
        pieces.append((begin, gap.start()))
        begin = gap.end()
    pieces.append((begin, len(text)))
    spans: list[tuple[int, int]] = []
    for start, end in pieces:
        start += len(text[start:end]) - len(text[start:end].lstrip())
        end -= len(text[start:end]) - len(text[start:end].rstrip())
        lead = _LEADING_CITATIONS.match(text[start:end])
        if spans and lead:
            spans[-1] = (spans[-1][0], start + len(lead.group(0).rstrip()))
            start += lead.end()
        if start < end:
            spans.append((start, end))
    return spans


# Markers right after a full stop, read from a position (no anchor).
_CITATIONS_AFTER = re.compile(rf"(?:{CITATION.pattern}\s*)+[.;,]?\s*")


def sentence_starts(text: str) -> list[int]:
    """Where each sentence of `text` starts, as `split_sentences` cuts it: markers after a full
    stop belong to the sentence before, and a half-written marker ("[1") starts nothing yet.

    For text that is still being written: the count grows by one as each new sentence begins.
    """
    lead = len(text) - len(text.lstrip())
    starts = [lead] if lead < len(text) else []
    for end in _SENTENCE_END.finditer(text):
        at = end.end()
        markers = _CITATIONS_AFTER.match(text, at)
        if markers:
            at = markers.end()
        if at < len(text) and text[at] != "[":
            starts.append(at)
    return starts


def marker_numbers(marker: re.Match[str]) -> list[int]:
    """The source numbers of one CITATION match, in the order written."""
    return [int(number) for number in _NUMBER_SEPARATOR.split(marker.group(1))]


def cited_numbers(text: str) -> tuple[int, ...]:
    """Source numbers cited in `text`, in order of first appearance."""
    found: list[int] = []
    for marker in CITATION.finditer(text):
        for number in marker_numbers(marker):
            if number not in found:
                found.append(number)
    return tuple(found)


# A Markdown table's rule line: "| --- | :---: |".
_TABLE_RULE = re.compile(r"^\|(?:\s*:?-{3,}:?\s*\|)+\s*$")


def embedding_text(text: str) -> str:
    """`text` as the bi-encoder should read it: Markdown table rows as plain rows ("Net sales,
    $34,229, $35,355"), rule lines dropped. The pipes help a reader and an LLM; to a model trained
    on sentences they are noise (financebench-dev, dense page@5: 0.314 with pipes, 0.371 without;
    docs/documents.md)."""
    if "|" not in text:
        return text
    lines = []
    for line in text.split("\n"):
        if not line.startswith("|"):
            lines.append(line)
        elif not _TABLE_RULE.match(line):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if row := ", ".join(cell for cell in cells if cell):
                lines.append(row)
    return "\n".join(lines)
