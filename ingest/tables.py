"""Tables on text PDF pages as Markdown: the header row and each row's label kept with its numbers.

    if looks_tabular(pypdf_text):
        text = page_with_tables(pdfium_page)   # None when no table was found

Financial statements are mostly borderless: a label at the left, then numbers right-aligned in
columns. PDFium gives every character's box; characters become words, words become lines, and
runs of lines whose numbers line up in columns become a table. Column anchors are the right
edges of the numbers, so '$' signs, '%' signs and brackets stay with their figures. The page is
rebuilt in reading order, prose as lines and each table as Markdown (docs/documents.md compares
this with pdfplumber).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pypdfium2.raw as pdfium_c

# A page is worth reading for tables when its text has this many figures, and this share of
# its tokens are figures (prose pages with a few years and section numbers are not).
MIN_FIGURES = 20
MIN_FIGURE_SHARE = 0.15
# Bounds: a page with more characters than this is read as text (a dense data dump), and a
# table needs at least this many rows with numbers.
MAX_PAGE_CHARS = 30_000
MIN_ROWS = 3
MAX_COLUMNS = 16

_FIGURE = re.compile(r"^[($]*[-–—]?\$?\d[\d,]*(\.\d+)?%?\)?%?$")
_DASH = frozenset({"-", "–", "—", "$—", "$-", "$–"})
_YEAR = re.compile(r"^(19|20)\d\d$")
_TOKEN = re.compile(r"\S+")
_LEADER = re.compile(r"\s*\.{4,}\s*")  # dot leaders between a label and its figures


def looks_tabular(text: str) -> bool:
    """Whether a page's extracted text has enough figures to be worth a table pass."""
    tokens = _TOKEN.findall(text)
    figures = sum(1 for token in tokens if _FIGURE.match(token.strip(",;:")))
    return figures >= MIN_FIGURES and figures >= MIN_FIGURE_SHARE * len(tokens)


@dataclass
class _Word:
    text: str
    left: float
    right: float
    bottom: float
    top: float


@dataclass
class _Line:
    cells: list[_Word]
    top: float

    @property
    def figures(self) -> list[_Word]:
        return [cell for cell in self.cells if _is_figure(cell.text)]

    @property
    def plain(self) -> str:
        return " ".join(cell.text for cell in self.cells)


def _is_figure(text: str) -> bool:
    return bool(_FIGURE.match(text)) or text in _DASH


def page_with_tables(page: Any) -> str | None:
    """The page's text with its tables as Markdown, or None when no table was found."""
    textpage = page.get_textpage()
    try:
        if textpage.count_chars() > MAX_PAGE_CHARS:
            return None
        lines = _lines(_words(textpage))
    finally:
        textpage.close()
    blocks = _table_blocks(lines)
    if not blocks:
        return None
    out: list[str] = []
    at = 0
    for start, end in blocks:
        out.extend(line.plain for line in lines[at:start])
        out.append("")
        out.append(_markdown(lines[start:end]))
        out.append("")
        at = end
    out.extend(line.plain for line in lines[at:])
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def _words(textpage: Any) -> list[_Word]:
    """Characters grouped into words: split at spaces, line ends and wide gaps."""
    words: list[_Word] = []
    current: _Word | None = None
    handle = textpage.raw
    for index in range(textpage.count_chars()):
        char = chr(pdfium_c.FPDFText_GetUnicode(handle, index))
        if char.isspace() or char == "\x00" or char == "\ufffe":
            current = None
            continue
        left, bottom, right, top = textpage.get_charbox(index, loose=True)
        height = max(top - bottom, 1.0)
        if (
            current is not None
            and abs(bottom - current.bottom) < 0.5 * height
            and -0.5 * height <= left - current.right < 0.35 * height
        ):
            current.text += char
            current.right = max(current.right, right)
            current.top = max(current.top, top)
            continue
        current = _Word(char, left, right, bottom, top)
        words.append(current)
    return words


def _lines(words: list[_Word]) -> list[_Line]:
    """Words on one baseline as a line of cells (words closer than a wide space merge)."""
    rows: list[list[_Word]] = []
    for word in sorted(words, key=lambda w: (-w.bottom, w.left)):
        height = max(word.top - word.bottom, 1.0)
        if rows and abs(rows[-1][0].bottom - word.bottom) < 0.4 * height:
            rows[-1].append(word)
        else:
            rows.append([word])
    lines = []
    for row in rows:
        row.sort(key=lambda w: w.left)
        cells: list[_Word] = []
        for word in row:
            height = max(word.top - word.bottom, 1.0)
            prev = cells[-1] if cells else None
            joins = prev is not None and word.left - prev.right < 0.9 * height
            # A '$' or a trailing '%' belongs to the figure next to it, however far apart.
            if prev is not None and (prev.text in ("$", "(") or word.text in ("%", ")")):
                joins = True
            if word.text in ("$", "("):
                joins = False  # it opens the next figure, whatever it stands close to
            if joins and prev is not None and not (_is_figure(prev.text) and _is_figure(word.text)):
                glue = "" if prev.text in ("$", "(") or word.text in ("%", ")") else " "
                prev.text += glue + word.text
                prev.right = word.right
            else:
                cells.append(_Word(word.text, word.left, word.right, word.bottom, word.top))
        lines.append(_Line(cells, max(w.top for w in row)))
    return lines


def _is_row(line: _Line) -> bool:
    return bool(line.figures) and (len(line.cells) >= 2 or _is_header(line))


def _is_header(line: _Line) -> bool:
    """Column titles that are years ('2022 2021 2020'), perhaps after a caption."""
    figures = line.figures
    return bool(figures) and all(_YEAR.match(cell.text) for cell in figures)


def _table_blocks(lines: list[_Line]) -> list[tuple[int, int]]:
    """Runs of lines that form tables: rows with figures, label lines between them, and the
    header lines (years, column titles) just above the first row."""
    blocks: list[tuple[int, int]] = []
    index = 0
    while index < len(lines):
        if not _is_row(lines[index]):
            index += 1
            continue
        end = index
        rows = 0
        probe = index
        while probe < len(lines):
            if _is_row(lines[probe]):
                rows += 1
                end = probe + 1
            elif len(lines[probe].cells) > 1 or probe - end >= 2:
                break  # prose, or more than two label lines in a row: the table has ended
            probe += 1
        if rows >= MIN_ROWS:
            start = index
            # Column titles: short lines right above, with no cell at the label's left edge.
            figure_left = min(c.left for line in lines[index:end] for c in line.figures)
            while start > 0 and start - index > -3:
                above = lines[start - 1]
                if above.figures and not _is_header(above):
                    break
                if not above.cells or min(c.left for c in above.cells) < figure_left - 40:
                    break
                start -= 1
            if not blocks or start >= blocks[-1][1]:
                blocks.append((start, end))
        index = max(end, index + 1)
    return blocks


def _columns(lines: list[_Line]) -> list[float]:
    """Right edges of the figure columns, left to right (figures are right-aligned)."""
    edges = sorted(cell.right for line in lines for cell in line.figures)
    anchors: list[list[float]] = []
    for edge in edges:
        if anchors and edge - anchors[-1][-1] < 14:
            anchors[-1].append(edge)
        else:
            anchors.append([edge])
    return [max(group) for group in anchors][:MAX_COLUMNS]


def _markdown(lines: list[_Line]) -> str:
    """A table block as a Markdown table: a header row, then label | value | value ..."""
    body = [i for i, line in enumerate(lines) if _is_row(line)]
    first = body[0] if body else len(lines)
    head, rows = lines[:first], lines[first:]
    if rows and _is_header(rows[0]):
        head, rows = [*head, rows[0]], rows[1:]
    columns = _columns(rows) or _columns(head)
    figure_left = min((c.left for line in rows for c in line.figures), default=0.0)
    caption, titles = "", [""] * len(columns)
    for line in head:
        for cell in line.cells:
            if cell.right <= figure_left + 1:
                caption = f"{caption} {cell.text}".strip()
                continue
            slot = _slot(cell, columns)
            titles[slot] = f"{titles[slot]} {cell.text}".strip()
    out = [_row([caption, *titles]), _row(["---"] * (len(columns) + 1))]
    for line in rows:
        label = " ".join(c.text for c in line.cells if c.right <= figure_left + 1)
        label = _LEADER.sub("", label).strip()
        values = [""] * len(columns)
        for cell in line.cells:
            if cell.right > figure_left + 1:
                slot = _slot(cell, columns)
                values[slot] = f"{values[slot]} {cell.text}".strip()
        out.append(_row([label, *values]))
    return "\n".join(out)


def _slot(cell: _Word, columns: list[float]) -> int:
    """The column whose right edge is nearest the cell's (titles are centred, so use its middle
    when that is nearer)."""
    middle = (cell.left + cell.right) / 2
    return min(
        range(len(columns)),
        key=lambda i: min(abs(columns[i] - cell.right), abs(columns[i] - 25 - middle)),
    )


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |"
