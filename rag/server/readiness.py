"""Whether this server can serve now: what `/ready` checks, so that a load balancer sends
requests only to replicas that can answer them.

    problems = readiness_problems(settings.index_dir, accounts)   # [] when ready

Each problem is one line naming the file and what is wrong with it. Nothing here creates or
repairs anything: a check that made a missing accounts file (as opening it with sqlite would)
would turn "every user is gone" into "ready, and every request is refused".
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

from rag.accounts import Accounts
from rag.collection import Collection, list_collections
from rag.errors import RagError


def readiness_problems(root: Path, accounts: Accounts | None) -> list[str]:
    """What keeps the server from serving `root` (and `accounts`, when on); [] when ready."""
    problems = _folder_problems(root)
    if problems:  # then nothing in it (the accounts file is in it too) needs naming
        return problems
    problems += _collection_problems(root)
    if accounts is not None:
        problems += _accounts_problems(accounts.path)
    return problems


def _folder_problems(root: Path) -> list[str]:
    """The index folder must be there, listable, and take a new file (uploads, job records):
    a real write, because permission bits say nothing of a read-only mount, nor of root."""
    if not root.is_dir():
        return [f"index folder {root} is missing"]
    probe = root / f".ready-{os.getpid()}"
    try:
        list_collections(root)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return [f"index folder {root} cannot be read and written: {e.strerror or e}"]
    return []


def _collection_problems(root: Path) -> list[str]:
    """Every collection opens: its manifest reads and its store is a collection's database
    (the FAISS and BM25 files are caches, rebuilt when missing, so they are not required)."""
    problems = []
    for name in list_collections(root):
        try:
            with Collection.open(root, name):
                pass
        except (RagError, OSError) as e:
            if Collection.exists(root, name):  # not one deleted since it was listed
                problems.append(f"collection {name!r} cannot be opened: {e}")
    return problems


def _accounts_problems(path: Path) -> list[str]:
    """The accounts file is there and is the accounts database, opened read-only."""
    if not path.is_file():
        return [f"accounts file {path} is missing"]
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            db.execute("SELECT count(*) FROM users").fetchone()
    except sqlite3.Error as e:
        return [f"accounts file {path} cannot be read: {e}"]
    return []
