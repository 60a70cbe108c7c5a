"""Passages' token embeddings for MaxSim reranking, computed once and kept on disk.

    cache = TokenCache(collection.path / "cache" / "maxsim.sqlite", model_key, limit_mb=2048)
    found = cache.get(texts)            # {text index: (tokens, dim) float32} for those cached
    cache.put({text: tokens, ...})

A MaxSim reranker spends almost all of its time encoding the passages (20 passages of 256 tokens
is about 2 s on 2 cores); the query is a few tokens. A passage's token embeddings depend only on
its text and the model, so they are kept under a key of both: content-addressed, nothing to
invalidate when a document changes or a model is retrained (a new model is a new key). Stored as
float16 (a MaxSim score moves by about 1e-4). One SQLite file per collection, safe to delete: it
fills again as questions come. Past `limit_mb` nothing more is added.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from rag.types import sha256_hex

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    key TEXT PRIMARY KEY,
    rows INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    data BLOB NOT NULL
)
"""


class TokenCache:
    """Token embeddings by (model, text), in one SQLite file; every failure only costs speed."""

    def __init__(self, path: Path, model_key: str, limit_mb: float = 2048.0) -> None:
        self.path = path
        self.model_key = model_key
        self.limit_bytes = int(limit_mb * 1024 * 1024)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._full = False
        self._broken = False

    def __repr__(self) -> str:
        return f"TokenCache({str(self.path)!r})"

    def key(self, text: str) -> str:
        return sha256_hex(self.model_key, text)

    def get(self, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """The cached token embeddings of `texts`, by index into `texts` (missing ones absent)."""
        keys = [self.key(text) for text in texts]
        rows = self._query(keys)
        found: dict[int, np.ndarray] = {}
        for index, key in enumerate(keys):
            if key in rows:
                count, dim, data = rows[key]
                found[index] = np.frombuffer(data, dtype=np.float16).reshape(count, dim)
        return found

    def put(self, embeddings: Mapping[str, np.ndarray]) -> None:
        """Keep `text -> (tokens, dim)` embeddings, unless the cache is full or unwritable."""
        if not embeddings or self._full or self._broken:
            return
        rows = [
            (self.key(text), int(array.shape[0]), int(array.shape[1]), _half(array))
            for text, array in embeddings.items()
        ]
        with self._lock, self._guard("write"):
            db = self._connect()
            if self._size(db) > self.limit_bytes:
                self._full = True
                logger.info(
                    "the reranker cache %s is full; passages past it are encoded each time",
                    self.path,
                )
                return
            with db:
                db.executemany("INSERT OR IGNORE INTO tokens VALUES (?, ?, ?, ?)", rows)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _query(self, keys: list[str]) -> dict[str, tuple[int, int, bytes]]:
        if not keys or self._broken:
            return {}
        with self._lock, self._guard("read"):
            db = self._connect()
            marks = ",".join("?" * len(keys))
            found = db.execute(
                f"SELECT key, rows, dim, data FROM tokens WHERE key IN ({marks})", keys
            )
            return {key: (rows, dim, data) for key, rows, dim, data in found}
        return {}

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, isolation_level=None, timeout=10.0, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            self._db = db
        return self._db

    @staticmethod
    def _size(db: sqlite3.Connection) -> int:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        return int(pages) * int(db.execute("PRAGMA page_size").fetchone()[0])

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """A cache that cannot be used is switched off with one warning: search goes on."""
        try:
            yield
        except (sqlite3.Error, OSError) as e:
            self._broken = True
            logger.warning(
                "cannot %s the reranker cache %s (%s); reranking goes on without it",
                action,
                self.path,
                e,
            )


def _half(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype=np.float16).tobytes()
