"""The SQLite store of a collection: documents, chunks and their vectors. The source of truth.

Writes go through two steps so that a killed job never leaves a collection half-changed:
`stage()` commits one document's chunks and vectors as *staged* (invisible to search, but kept, so a
rerun resumes instead of re-embedding), and `publish()` swaps every staged document in, replaces
or prunes the old ones, and bumps the generation, all in one transaction. The FAISS and BM25 files
are caches stamped with that generation and rebuilt from here when they do not match it.
"""

from __future__ import annotations

import errno
import json
import shutil
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rag.errors import CollectionError, DiskFullError
from rag.filters import Where
from rag.types import Chunk, Document

SCHEMA_VERSION = 2
# Each step takes a store from version N to N+1 in place (ALTER TABLE keeps every row).
_MIGRATIONS = {
    1: (
        "ALTER TABLE documents ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE chunks ADD COLUMN context TEXT NOT NULL DEFAULT ''",
    ),
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    source TEXT NOT NULL,
    origin TEXT NOT NULL CHECK (origin IN ('file', 'record')),
    title TEXT NOT NULL,
    media_type TEXT NOT NULL,
    pages INTEGER NOT NULL,
    empty_pages TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('live', 'staged')),
    added_at TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX IF NOT EXISTS documents_source_state ON documents (source, state);
CREATE TABLE IF NOT EXISTS chunks (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    document_key INTEGER NOT NULL REFERENCES documents (key) ON DELETE CASCADE,
    page INTEGER NOT NULL,
    start INTEGER NOT NULL,
    stop INTEGER NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL,
    context TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document_key);
"""
_TABLES = ("meta", "documents", "chunks")
NEARLY_FULL = 1 << 20  # bytes free below which sqlite's I/O errors are taken for a full disk


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` means a full disk or quota, as opposed to any other failure to write."""
    if isinstance(error, DiskFullError):
        return True
    if isinstance(error, OSError):
        return error.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", 0) & 0xFF
        return code == sqlite3.SQLITE_FULL or "database or disk is full" in str(error)
    return False


def damaged(path: Path, reason: str) -> CollectionError:
    """The one-line error for a collection file that cannot be read as what it should be."""
    return CollectionError(
        f"{path} is damaged: {reason}; restore it from a backup or delete the collection with "
        f"`rag collections delete {path.parent.name}`"
    )


def _translated(path: Path, error: sqlite3.Error) -> CollectionError | None:
    """The CollectionError a sqlite error stands for, or None when it is not about the file."""
    code = getattr(error, "sqlite_errorcode", 0) & 0xFF
    if is_disk_full(error):
        return DiskFullError(path)
    if code == sqlite3.SQLITE_IOERR:
        # sqlite reports some writes that ran out of space (growing the -shm file that every
        # connection needs, for one) as a plain I/O error; the free space tells them apart.
        if shutil.disk_usage(path.parent).free < NEARLY_FULL:
            return DiskFullError(path)
        return CollectionError(f"cannot read or write {path}: {error}")
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or str(error).startswith(
        ("no such table", "no such column")
    ):
        return damaged(path, str(error))
    return None


@dataclass(frozen=True)
class StoredDocument:
    """A document row: what is known about an ingested source without its text."""

    key: int
    id: str
    source: str
    origin: str
    title: str
    media_type: str
    pages: int
    empty_pages: tuple[int, ...]
    state: str
    chunks: int
    added_at: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def fields(self) -> dict[str, str]:
        """What `--where` can match besides the name: title, type ("pdf", "markdown", "html",
        "plain"), pages, and the user's metadata (which wins where a key is both)."""
        kind = self.media_type.rsplit("/", 1)[-1]
        return {"title": self.title, "type": kind, "pages": str(self.pages), **self.metadata}


class Store:
    """One SQLite file per collection. Not shared across threads.

    Errors that mean a damaged file or a full disk come out as one-line CollectionErrors, from
    any method: sqlite finds damage only when it reads the damaged page.
    """

    def __init__(self, path: Path, create: bool = False) -> None:
        """Open the store at `path`; with `create`, make it (or finish making it) first."""
        self.path = path
        if not create and not path.is_file():
            raise damaged(path, "the file is missing")
        try:
            # Callers that share a store across threads serialise access themselves (the batch
            # runner and the UI do); sqlite's own serialized mode keeps the connection safe.
            self._db = sqlite3.connect(
                path, isolation_level=None, timeout=30.0, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise CollectionError(f"cannot open {path}: {e}") from e
        try:
            self._set_up(create)
        except BaseException:
            self._db.close()
            raise

    def _set_up(self, create: bool) -> None:
        self._db.row_factory = sqlite3.Row
        with self._errors():
            # WAL keeps readers working while a job writes; NORMAL is still atomic on a kill.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            if not create:
                # Without this check the schema below would turn a stranger's (or an emptied)
                # database into an empty collection, and search would quietly find nothing.
                found = {
                    row[0]
                    for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
                missing = [table for table in _TABLES if table not in found]
                if missing:
                    tables = ", ".join(missing) + (" tables are" if missing[1:] else " table is")
                    raise damaged(self.path, f"its {tables} missing")
        with self.transaction():
            # executescript() would COMMIT the open transaction, so run statements one by one.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?), ('generation', '0')",
                (str(SCHEMA_VERSION),),
            )
        found_version = self._meta_int("schema_version")
        if found_version < SCHEMA_VERSION:
            found_version = self._migrate(found_version)
        if found_version != SCHEMA_VERSION:
            raise CollectionError(
                f"{self.path} has schema version {found_version}; this version of rag reads "
                f"{SCHEMA_VERSION}"
            )

    def _migrate(self, version: int) -> int:
        """Bring a store written by an older rag up to this schema, in one transaction."""
        with self.transaction() as db:
            while version in _MIGRATIONS:
                for statement in _MIGRATIONS[version]:
                    db.execute(statement)
                version += 1
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
        return version

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """sqlite's errors for a damaged file or a full disk as one-line CollectionErrors."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            error = _translated(self.path, e)
            if error is None:
                raise
            raise error from e

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        with self._errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # sqlite has rolled back by itself after some errors (a full disk, for one).
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _meta_int(self, key: str) -> int:
        with self._errors():
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        try:
            return int(row["value"])
        except (TypeError, ValueError):
            shown = "missing" if row is None else repr(row["value"])
            raise damaged(self.path, f"its '{key}' entry is {shown}") from None

    @property
    def generation(self) -> int:
        """Bumped by every publish that changed something; index files carry it in their names."""
        return self._meta_int("generation")

    # -- reading ---------------------------------------------------------------------------

    def document(self, source: str, state: str = "live") -> StoredDocument | None:
        with self._errors():
            row = self._db.execute(
                f"{_DOCUMENT_QUERY} WHERE d.source = ? AND d.state = ? GROUP BY d.key",
                (source, state),
            ).fetchone()
        return _document(row) if row else None

    def documents(self, state: str = "live") -> list[StoredDocument]:
        with self._errors():
            rows = self._db.execute(
                f"{_DOCUMENT_QUERY} WHERE d.state = ? GROUP BY d.key ORDER BY d.source", (state,)
            ).fetchall()
        return [_document(row) for row in rows]

    def counts(self) -> tuple[int, int]:
        """(documents, chunks) that search can see."""
        with self._errors():
            row = self._db.execute(
                "SELECT COUNT(DISTINCT d.key) AS docs, COUNT(c.key) AS chunks FROM documents d "
                "LEFT JOIN chunks c ON c.document_key = d.key WHERE d.state = 'live'"
            ).fetchone()
        return int(row["docs"]), int(row["chunks"])

    def live_vectors(
        self, dimension: int, batch: int = 50_000
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(keys, vectors) of every live chunk, in batches, in key order."""
        with self._errors():
            cursor = self._db.execute(
                "SELECT c.key, c.vector FROM chunks c JOIN documents d ON d.key = c.document_key "
                "WHERE d.state = 'live' ORDER BY c.key"
            )
            while rows := cursor.fetchmany(batch):
                keys = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
                vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32)
                yield keys, vectors.reshape(len(rows), dimension)

    def live_texts(self) -> tuple[np.ndarray, list[str]]:
        """(keys, indexed texts: context line and text) of every live chunk, in key order."""
        with self._errors():
            rows = self._db.execute(
                "SELECT c.key, c.context, c.text FROM chunks c "
                "JOIN documents d ON d.key = c.document_key "
                "WHERE d.state = 'live' ORDER BY c.key"
            ).fetchall()
        keys = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        return keys, [f"{row[1]}\n{row[2]}" if row[1] else row[2] for row in rows]

    def live_keys_where(self, where: Where) -> np.ndarray:
        """Keys of the live chunks a scoped search may return, in key order."""
        wanted = [d.key for d in self.documents() if where.matches_document(d.source, d.fields)]
        if not wanted:
            return np.zeros(0, dtype=np.int64)
        first, last = where.pages or (1, 1 << 62)
        found: list[int] = []
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            with self._errors():
                found += [
                    row[0]
                    for row in self._db.execute(
                        f"SELECT key FROM chunks WHERE document_key IN ({marks}) "
                        "AND page BETWEEN ? AND ?",
                        (*part, first, last),
                    )
                ]
        return np.sort(np.asarray(found, dtype=np.int64))

    def vectors(self, keys: np.ndarray, dimension: int) -> np.ndarray:
        """The stored vectors of these chunk keys, in the order given."""
        out = np.zeros((len(keys), dimension), dtype=np.float32)
        row_of = {int(key): row for row, key in enumerate(keys)}
        wanted = list(row_of)
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            with self._errors():
                for key, blob in self._db.execute(
                    f"SELECT key, vector FROM chunks WHERE key IN ({marks})", part
                ):
                    out[row_of[int(key)]] = np.frombuffer(blob, dtype=np.float32)
        return out

    def chunks(self, keys: Sequence[int]) -> dict[int, Chunk]:
        """The live chunks with these keys (keys that are gone are left out)."""
        found: dict[int, Chunk] = {}
        wanted = [int(key) for key in keys]
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            with self._errors():
                rows = self._db.execute(
                    "SELECT c.key, c.id, d.id AS document_id, d.source, c.page, c.start, c.stop, "
                    "c.text, c.context "
                    "FROM chunks c JOIN documents d ON d.key = c.document_key "
                    f"WHERE d.state = 'live' AND c.key IN ({marks})",
                    part,
                ).fetchall()
            for row in rows:
                found[int(row["key"])] = Chunk(
                    id=row["id"],
                    document_id=row["document_id"],
                    source=row["source"],
                    page=int(row["page"]),
                    start=int(row["start"]),
                    end=int(row["stop"]),
                    text=row["text"],
                    context=row["context"],
                )
        return found

    # -- writing ---------------------------------------------------------------------------

    def stage(
        self,
        document: Document,
        origin: str,
        chunks: Sequence[Chunk],
        vectors: np.ndarray,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Commit a document's chunks and vectors (and the user's metadata) as staged: kept,
        but not yet searchable."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self.transaction() as db:
            db.execute(
                "DELETE FROM documents WHERE source = ? AND state = 'staged'", (document.source,)
            )
            cursor = db.execute(
                "INSERT INTO documents (id, source, origin, title, media_type, pages, empty_pages,"
                " state, added_at, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, 'staged', ?, ?)",
                (
                    document.id,
                    document.source,
                    origin,
                    document.title,
                    document.media_type,
                    len(document.pages) + len(document.empty_pages),
                    json.dumps(list(document.empty_pages)),
                    datetime.now(UTC).isoformat(timespec="seconds"),
                    json.dumps(dict(metadata or {}), ensure_ascii=False),
                ),
            )
            document_key = cursor.lastrowid
            db.executemany(
                "INSERT INTO chunks (id, document_key, page, start, stop, text, vector, context)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        c.id,
                        document_key,
                        c.page,
                        c.start,
                        c.end,
                        c.text,
                        vector.tobytes(),
                        c.context,
                    )
                    for c, vector in zip(chunks, vectors, strict=True)
                ),
            )

    def replace_vectors(
        self, keys: np.ndarray, vectors: np.ndarray, expected_generation: int
    ) -> int:
        """Give every live chunk a new vector (say, from a tuned embedder) in one transaction that
        also drops staged work (embedded by the old model) and bumps the generation."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(keys) != len(vectors):
            raise ValueError(f"{len(keys)} keys but {len(vectors)} vectors")
        with self.transaction() as db:
            if self.generation != expected_generation:
                raise CollectionError(
                    f"{self.path} changed while new vectors were computed (generation "
                    f"{self.generation}, expected {expected_generation}); run the command again"
                )
            live = {
                int(row[0])
                for row in db.execute(
                    "SELECT c.key FROM chunks c JOIN documents d ON d.key = c.document_key "
                    "WHERE d.state = 'live'"
                )
            }
            given = {int(key) for key in keys}
            if live != given:
                raise CollectionError(
                    f"new vectors cover {len(given & live)} of {len(live)} live chunks "
                    f"(and {len(given - live)} unknown keys); run the command again"
                )
            db.execute("DELETE FROM documents WHERE state = 'staged'")
            db.executemany(
                "UPDATE chunks SET vector = ? WHERE key = ?",
                ((vector.tobytes(), int(key)) for key, vector in zip(keys, vectors, strict=True)),
            )
            db.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
            )
        return self.generation

    def discard_staged(self, keep: set[str]) -> int:
        """Drop staged documents left by an earlier job whose sources this job does not adopt."""
        with self.transaction() as db:
            sources = [
                row[0] for row in db.execute("SELECT source FROM documents WHERE state = 'staged'")
            ]
            gone = [source for source in sources if source not in keep]
            db.executemany(
                "DELETE FROM documents WHERE source = ? AND state = 'staged'",
                ((source,) for source in gone),
            )
        return len(gone)

    def publish(self, remove: Sequence[str] = ()) -> int:
        """Make every staged document live (replacing older versions) and delete `remove`.

        One transaction: a kill before it commits leaves the collection as it was. Returns the
        generation, bumped only when something changed.
        """
        with self.transaction() as db:
            staged = [
                row[0] for row in db.execute("SELECT source FROM documents WHERE state = 'staged'")
            ]
            for source in [*staged, *remove]:
                db.execute("DELETE FROM documents WHERE source = ? AND state = 'live'", (source,))
            db.execute("UPDATE documents SET state = 'live' WHERE state = 'staged'")
            if staged or remove:
                db.execute(
                    "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
                )
        return self.generation


_DOCUMENT_QUERY = (
    "SELECT d.*, COUNT(c.key) AS chunk_count FROM documents d "
    "LEFT JOIN chunks c ON c.document_key = d.key"
)


def _document(row: sqlite3.Row) -> StoredDocument:
    return StoredDocument(
        key=int(row["key"]),
        id=row["id"],
        source=row["source"],
        origin=row["origin"],
        title=row["title"],
        media_type=row["media_type"],
        pages=int(row["pages"]),
        empty_pages=tuple(json.loads(row["empty_pages"])),
        state=row["state"],
        chunks=int(row["chunk_count"]),
        added_at=row["added_at"],
        metadata=_metadata(row["metadata"]),
    )


def _metadata(text: str) -> dict[str, str]:
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}
