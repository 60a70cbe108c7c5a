"""Query expansion from a glossary: the words documents print for the terms a question uses.

    glossary = Glossary.load(["finance"])        # the built-in rag/glossaries/finance.toml
    glossary.expand("What is 3M's FY2022 DPO?")  # the question + " accounts payable cost of ..."

A question about a ratio names the ratio; the statement page that holds its inputs names only
line items, and a small embedder does not connect the two (docs/documents.md). Each entry of a
glossary lists phrases to look for and the words to add to the query when one is found. Search
uses the expanded text for its first stage only: the reranker, the reader and the LLM see the
question as asked.

A glossary is TOML, `[[term]]` tables with `match` (phrases: case-insensitive, whole words, a
hyphen the same as a space; a phrase written in capitals, such as ROA, matches only in capitals)
and `expand` (the words to add). The setting `query_glossaries` names built-in ones (the files
in rag/glossaries) or paths to a user's own.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rag.errors import ConfigError

BUILT_IN_DIR = Path(__file__).resolve().parent / "glossaries"


def built_in_glossaries() -> tuple[str, ...]:
    """Names of the glossaries that ship with the package."""
    return tuple(sorted(path.stem for path in BUILT_IN_DIR.glob("*.toml")))


@dataclass(frozen=True)
class Term:
    pattern: re.Pattern[str]
    expansion: str


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    words = [re.escape(word) for word in re.split(r"[\s\-]+", phrase.strip()) if word]
    if not words:
        raise ValueError("a `match` phrase is empty")
    body = r"[\s\-]+".join(words)
    # Lookarounds instead of \b: a phrase may start or end with a symbol (PP&E, R&D).
    flags = 0 if phrase.isupper() else re.IGNORECASE
    return re.compile(rf"(?<![\w&]){body}(?![\w&])", flags)


class Glossary:
    """Terms to find in a question and the words to add for each; empty: no expansion."""

    def __init__(self, terms: Sequence[Term] = ()) -> None:
        self.terms = tuple(terms)

    @classmethod
    def load(cls, names: Iterable[str]) -> Glossary:
        """The built-in glossaries and glossary files `names` lists, joined in that order."""
        terms: list[Term] = []
        for name in names:
            path = _locate(name)
            try:
                stamp = path.stat().st_mtime_ns
            except OSError as e:
                raise ConfigError(f"cannot read glossary {path}: {e.strerror or e}") from e
            terms.extend(_read(path, stamp))
        return cls(terms)

    def __bool__(self) -> bool:
        return bool(self.terms)

    def additions(self, query: str) -> list[str]:
        """The expansions of the terms `query` uses, each once, in glossary order."""
        found: list[str] = []
        for term in self.terms:
            if term.expansion not in found and term.pattern.search(query):
                found.append(term.expansion)
        return found

    def expand(self, query: str) -> str:
        """`query` followed by the expansions of the terms it uses (unchanged if none)."""
        additions = self.additions(query)
        return " ".join([query, *additions]) if additions else query


def _locate(name: str) -> Path:
    built_in = BUILT_IN_DIR / f"{name}.toml"
    if "/" not in name and "\\" not in name and built_in.is_file():
        return built_in
    path = Path(name).expanduser()
    if path.is_file():
        return path
    raise ConfigError(
        f"no glossary {name!r}: not a built-in one ({', '.join(built_in_glossaries())}) "
        "and not a file"
    )


@lru_cache(maxsize=16)
def _read(path: Path, stamp: int) -> tuple[Term, ...]:
    """The terms of the glossary at `path`, parsed once per version (`stamp`: its mtime), so an
    edited file is read again by the next search that loads it (a new collection in `rag
    serve`, the next command)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read glossary {path}: {e}") from e
    entries = data.get("term", [])
    if not isinstance(entries, list):
        raise ConfigError(f"glossary {path}: [[term]] entries expected")
    terms: list[Term] = []
    for number, entry in enumerate(entries, start=1):
        match = entry.get("match") if isinstance(entry, dict) else None
        expand = entry.get("expand") if isinstance(entry, dict) else None
        if isinstance(match, str):
            match = [match]
        if (
            not isinstance(match, list)
            or not match
            or not all(isinstance(m, str) for m in match)
            or not isinstance(expand, str)
            or not expand.strip()
        ):
            raise ConfigError(
                f"glossary {path}: term {number} needs `match` (phrases) and `expand` (words)"
            )
        expansion = " ".join(expand.split())
        try:
            terms.extend(Term(_phrase_pattern(phrase), expansion) for phrase in match)
        except ValueError as e:
            raise ConfigError(f"glossary {path}: term {number}: {e}") from e
    return tuple(terms)
