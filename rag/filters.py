"""Scoped questions: which documents and pages a search may return (`--where`).

where = Where.parse(["document=3M_*.pdf", "year=2022", "page=40-60"])
where.matches_document(stored.source, stored.metadata)   # True / False
where.matches_page(48)                                   # True

One `--where` is `key=value`. `document` (or `doc`) matches the file name, or the whole path,
against a glob; `page` takes a number or a range `a-b`; any other key matches the document's
metadata (what `rag ingest --meta k=v` attached, and `title` and `type`), without regard to case,
with glob patterns allowed. Different keys must all match; the same key given twice matches either
value. The searcher applies the filter before ranking, so a scoped search still gets its top k.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath

from rag.errors import ConfigError

DOCUMENT_KEYS = frozenset({"document", "doc"})
PAGE_KEY = "page"
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_PAGES = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_pairs(items: Iterable[str], what: str) -> list[tuple[str, str]]:
    """`key=value` strings as pairs, or one ConfigError line naming the bad one."""
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not _KEY.match(key) or not value:
            raise ConfigError(
                f"{what} {item!r} is not key=value (a key of letters, digits, '_', '-' or '.', "
                "and a value)"
            )
        pairs.append((key.lower(), value))
    return pairs


@dataclass(frozen=True)
class Where:
    """A conjunction of document globs, a page range and metadata values; empty matches all."""

    documents: tuple[str, ...] = ()
    pages: tuple[int, int] | None = None
    metadata: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())

    @classmethod
    def parse(cls, items: Iterable[str]) -> Where:
        documents: list[str] = []
        pages: tuple[int, int] | None = None
        values: dict[str, list[str]] = {}
        for key, value in parse_pairs(items, "--where"):
            if key in DOCUMENT_KEYS:
                documents.append(value)
            elif key == PAGE_KEY:
                if pages is not None:
                    raise ConfigError("--where page= is given twice; give one range a-b")
                pages = _page_range(value)
            else:
                values.setdefault(key, []).append(value)
        return cls(tuple(documents), pages, tuple((k, tuple(v)) for k, v in sorted(values.items())))

    @classmethod
    def for_documents(cls, sources: Iterable[str]) -> Where:
        """Exactly these documents (the chat's picker): their full paths, no globbing."""
        return cls(documents=tuple(glob_escape(source) for source in sources))

    def __bool__(self) -> bool:
        return bool(self.documents or self.pages or self.metadata)

    def describe(self) -> str:
        """The filter as a person would type it back."""
        parts = [f"document={d}" for d in self.documents]
        if self.pages:
            first, last = self.pages
            parts.append(f"page={first}" if first == last else f"page={first}-{last}")
        parts += [f"{key}={value}" for key, options in self.metadata for value in options]
        return " ".join(parts)

    def matches_document(self, source: str, metadata: Mapping[str, str]) -> bool:
        if self.documents and not any(_document_matches(source, g) for g in self.documents):
            return False
        lowered = {key.lower(): str(value) for key, value in metadata.items()}
        for key, options in self.metadata:
            value = lowered.get(key)
            if value is None or not any(_value_matches(value, option) for option in options):
                return False
        return True

    def matches_page(self, page: int) -> bool:
        return self.pages is None or self.pages[0] <= page <= self.pages[1]


def glob_escape(text: str) -> str:
    """`text` as a glob that matches only itself."""
    return re.sub(r"([*?\[])", r"[\1]", text)


def _page_range(value: str) -> tuple[int, int]:
    match = _PAGES.match(value)
    if not match:
        raise ConfigError(f"--where page={value!r} is not a page number or a range like 40-60")
    first = int(match.group(1))
    last = int(match.group(2) or first)
    if first < 1 or last < first:
        raise ConfigError(f"--where page={value!r}: pages count from 1 and a range runs a-b, a≤b")
    return first, last


def _document_matches(source: str, pattern: str) -> bool:
    # A pattern with a folder in it is matched against the whole path, else against the name.
    target = source if "/" in pattern else PurePath(source).name
    return fnmatch.fnmatchcase(target.lower(), pattern.lower())


def _value_matches(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value.lower(), pattern.lower())
