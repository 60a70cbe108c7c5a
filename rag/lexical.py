"""BM25 over chunk texts (bm25s, English stemmer and stopwords), keyed by chunk keys.

index = LexicalIndex.build(keys, texts)
scores, keys = index.search("what is dense retrieval", k=10)
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
import Stemmer

# Recorded in the manifest so a collection says how its lexical index was made.
LEXICAL_CONFIG: dict[str, Any] = {
    "library": "bm25s",
    "method": "lucene",
    "k1": 1.5,
    "b": 0.75,
    "stemmer": "english",
    "stopwords": "en",
    "numbers": "whole",
    "periods": "split",
}
# Numbers as people write them are one token: "$1,234.5" -> "1234.5", "12.4%" -> "12.4",
# "(123)" -> "123". bm25s's default pattern (\b\w\w+\b) cut "1,234.5" into "234" and dropped
# the rest, so a figure copied from a table never matched. A period glued to its year is two
# tokens, "FY2022" -> "fy", "2022": questions say FY2022 where filings say "fiscal 2022".
_TOKEN_PATTERN = r"(?u)\d+(?:\.\d+)+|\b\w\w+\b"
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PERIOD_YEAR = re.compile(r"\b(FY|CY|Q[1-4]|H[12])'?((?:19|20)?\d\d)\b", re.IGNORECASE)


def _tokenize(texts: list[str], stemmer: Any) -> Any:
    return bm25s.tokenize(
        [_PERIOD_YEAR.sub(r"\1 \2", _THOUSANDS.sub("", text)) for text in texts],
        token_pattern=_TOKEN_PATTERN,
        stopwords=LEXICAL_CONFIG["stopwords"],
        stemmer=stemmer,
        show_progress=False,
        return_ids=False,
    )


class LexicalIndex:
    """A bm25s index plus the chunk key of each of its rows."""

    def __init__(self, retriever: bm25s.BM25, keys: np.ndarray) -> None:
        self._retriever = retriever
        self._keys = keys
        self._stemmer = Stemmer.Stemmer(LEXICAL_CONFIG["stemmer"])

    def __repr__(self) -> str:
        return f"LexicalIndex({self.size} chunks)"

    @property
    def size(self) -> int:
        return len(self._keys)

    @classmethod
    def build(cls, keys: np.ndarray, texts: list[str]) -> LexicalIndex:
        """Tokenize (lower-case, stopwords out, Snowball stems) and index the texts."""
        stemmer = Stemmer.Stemmer(LEXICAL_CONFIG["stemmer"])
        retriever = bm25s.BM25(
            method=LEXICAL_CONFIG["method"], k1=LEXICAL_CONFIG["k1"], b=LEXICAL_CONFIG["b"]
        )
        if texts:
            retriever.index(_tokenize(texts, stemmer), show_progress=False)
        return cls(retriever, np.asarray(keys, dtype=np.int64))

    def search(
        self, query: str, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, chunk keys) with a positive score; fewer when few chunks share a term.
        With `allowed` (sorted chunk keys), only those chunks are scored."""
        if self.size == 0 or k <= 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        tokens = _tokenize([query], self._stemmer)
        if not tokens[0]:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        mask = None
        if allowed is not None:
            mask = np.isin(self._keys, allowed).astype(np.float32)
        rows, scores = self._retriever.retrieve(
            tokens, k=min(k, self.size), show_progress=False, n_threads=1, weight_mask=mask
        )
        rows, scores = rows[0], scores[0]
        keep = scores > 0
        return scores[keep].astype(np.float32), self._keys[rows[keep]]

    def save(self, folder: Path) -> None:
        """Write to a temporary folder, then rename it into place."""
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir(parents=True)
            if self.size:
                self._retriever.save(str(tmp), show_progress=False)
            np.save(tmp / "keys.npy", self._keys)
            (tmp / "config.json").write_text(json.dumps(LEXICAL_CONFIG))
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        """Read an index saved by `save`; ValueError when its files do not fit together."""
        saved = json.loads((folder / "config.json").read_text())
        if saved != LEXICAL_CONFIG:
            # Tokens made another way would never match this version's query tokens.
            raise ValueError(f"it was built with {saved}, not {LEXICAL_CONFIG}")
        keys = np.load(folder / "keys.npy", allow_pickle=False)
        if keys.ndim != 1 or keys.dtype.kind != "i":
            raise ValueError(f"keys.npy holds {keys.dtype} of shape {keys.shape}, not chunk keys")
        if len(keys) == 0:
            return cls.build(keys, [])
        retriever = bm25s.BM25.load(str(folder), show_progress=False, mmap=False)
        scores = retriever.scores
        if scores.get("num_docs") != len(keys):
            raise ValueError(f"{len(keys)} keys for {scores.get('num_docs')} indexed chunks")
        if not len(scores["data"]) == len(scores["indices"]) == int(scores["indptr"][-1]):
            raise ValueError("the bm25s score arrays do not fit together")
        return cls(retriever, keys)
