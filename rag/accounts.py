"""Users, their API keys and who may use which collection: one SQLite file beside the collections.

    accounts = Accounts(index_dir / ACCOUNTS_FILE)
    key = accounts.add_user("ana")               # shown once: only its argon2 hash is kept
    user = accounts.authenticate(key)            # User("ana", admin=False), or None
    accounts.set_owner("papers", "ana"); accounts.share("papers", "ben")
    accounts.can_read(user, "papers")

A collection is read by its owner, the users it is shared with, and admins; it is written (upload,
ingest, delete) by its owner and admins. A collection nobody owns (made with the CLI) is an
admin's. The file lives in the index folder, so replicas over shared storage see the same users.
`rag serve --accounts` and the chat (with the `accounts` setting on) check access here.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from rag.collection import check_name
from rag.errors import CollectionError, ConfigError

ACCOUNTS_FILE = ".accounts.sqlite"
KEY_PREFIX = "rag-"
# A verified key is remembered (by its SHA-256, in memory only) for this long, so that a busy
# client does not pay for an argon2 verification on every request.
VERIFIED_TTL_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, admin INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    hash TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS owners (collection TEXT PRIMARY KEY, user TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shares (
    collection TEXT NOT NULL, user TEXT NOT NULL, PRIMARY KEY (collection, user));
"""


@dataclass(frozen=True)
class User:
    """Who a request comes from."""

    name: str
    admin: bool


# Every request's user while accounts are off: local use, everything allowed, as the CLI.
LOCAL_USER = User("local", admin=True)


class Accounts:
    """The accounts file. Each call opens its own connection: safe from any thread or process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._hasher = PasswordHasher()
        self._verified: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30.0)) as db, db:
            db.execute("PRAGMA foreign_keys = ON")
            yield db

    # -- users and keys --------------------------------------------------------------------

    def add_user(self, name: str, admin: bool = False) -> str:
        """Create user `name` and return a new API key for it (the only time it is shown)."""
        _check_user_name(name)
        with self._db() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise ConfigError(f"user {name!r} already exists")
            db.execute(
                "INSERT INTO users (name, admin, created_at) VALUES (?, ?, ?)",
                (name, int(admin), _now()),
            )
        return self.new_key(name)

    def new_key(self, name: str) -> str:
        """Another API key for user `name` (the old ones keep working)."""
        key_id = secrets.token_hex(6)
        key = f"{KEY_PREFIX}{key_id}.{secrets.token_urlsafe(32)}"
        with self._db() as db:
            if not db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise ConfigError(f"no user named {name!r}")
            db.execute(
                "INSERT INTO keys (id, user, hash, created_at) VALUES (?, ?, ?, ?)",
                (key_id, name, self._hasher.hash(key), _now()),
            )
        return key

    def remove_user(self, name: str) -> None:
        """Delete user `name`, their keys and their shares (collections they own become an
        admin's)."""
        with self._db() as db:
            if not db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount:
                raise ConfigError(f"no user named {name!r}")
            db.execute("DELETE FROM shares WHERE user = ?", (name,))
            db.execute("DELETE FROM owners WHERE user = ?", (name,))
        with self._lock:
            self._verified = {k: v for k, v in self._verified.items() if v[0] != name}

    def users(self) -> list[User]:
        with self._db() as db:
            rows = db.execute("SELECT name, admin FROM users ORDER BY name").fetchall()
        return [User(name, bool(admin)) for name, admin in rows]

    def user(self, name: str) -> User | None:
        with self._db() as db:
            row = db.execute("SELECT name, admin FROM users WHERE name = ?", (name,)).fetchone()
        return User(row[0], bool(row[1])) if row else None

    def authenticate(self, key: str) -> User | None:
        """The user an API key belongs to, or None for a key that is not one of theirs."""
        digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()
        with self._lock:
            remembered = self._verified.get(digest)
        if remembered is not None and remembered[1] > time.monotonic():
            return self.user(remembered[0])
        key_id = key.removeprefix(KEY_PREFIX).partition(".")[0]
        if not key.startswith(KEY_PREFIX) or not key_id:
            return None
        with self._db() as db:
            row = db.execute("SELECT user, hash FROM keys WHERE id = ?", (key_id,)).fetchone()
        if row is None:
            return None
        try:
            self._hasher.verify(row[1], key)
        except (VerificationError, InvalidHashError):
            return None
        with self._lock:
            self._verified[digest] = (row[0], time.monotonic() + VERIFIED_TTL_S)
        return self.user(row[0])

    # -- collections -----------------------------------------------------------------------

    def owner(self, collection: str) -> str | None:
        with self._db() as db:
            row = db.execute(
                "SELECT user FROM owners WHERE collection = ?", (collection,)
            ).fetchone()
        return row[0] if row else None

    def set_owner(self, collection: str, user: str) -> None:
        self._require_user(user)
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO owners (collection, user) VALUES (?, ?)",
                (check_name(collection), user),
            )

    def share(self, collection: str, user: str) -> None:
        """Let `user` read `collection`."""
        self._require_user(user)
        with self._db() as db:
            db.execute(
                "INSERT OR IGNORE INTO shares (collection, user) VALUES (?, ?)",
                (check_name(collection), user),
            )

    def unshare(self, collection: str, user: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM shares WHERE collection = ? AND user = ?", (collection, user))

    def shared_with(self, collection: str) -> list[str]:
        with self._db() as db:
            rows = db.execute(
                "SELECT user FROM shares WHERE collection = ? ORDER BY user", (collection,)
            ).fetchall()
        return [row[0] for row in rows]

    def forget_collection(self, collection: str) -> None:
        """Drop the owner and shares of a deleted collection (a new one of that name starts
        afresh)."""
        with self._db() as db:
            db.execute("DELETE FROM owners WHERE collection = ?", (collection,))
            db.execute("DELETE FROM shares WHERE collection = ?", (collection,))

    def can_read(self, user: User, collection: str) -> bool:
        if user.admin:
            return True
        with self._db() as db:
            row = db.execute(
                "SELECT 1 FROM owners WHERE collection = ? AND user = ? UNION "
                "SELECT 1 FROM shares WHERE collection = ? AND user = ?",
                (collection, user.name, collection, user.name),
            ).fetchone()
        return row is not None

    def can_write(self, user: User, collection: str) -> bool:
        return user.admin or self.owner(collection) == user.name

    def _require_user(self, name: str) -> None:
        if self.user(name) is None:
            raise ConfigError(f"no user named {name!r}")


def forget_collection(index_dir: Path, collection: str) -> None:
    """Drop the owner and shares of a deleted collection, when the index folder has accounts."""
    if (index_dir / ACCOUNTS_FILE).is_file():
        Accounts(index_dir / ACCOUNTS_FILE).forget_collection(collection)


def _check_user_name(name: str) -> None:
    """A user name follows the rules of a collection name: it is shown and stored as given."""
    try:
        check_name(name)
    except CollectionError as e:
        raise ConfigError(
            f"invalid user name {name!r}: use letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        ) from e


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
