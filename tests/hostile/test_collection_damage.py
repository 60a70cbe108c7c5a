"""Damaged collections: a broken cache is rebuilt from SQLite and search finds the same hits; a
broken manifest or store is one `Error:` line naming the file, and `collections delete` still
removes it (with the chat's uploads).

A real collection (SQuAD paragraphs, the packaged MiniLM) is built once; each test damages a copy
and drives the real `rag` command in a subprocess, as a person would.
"""

from __future__ import annotations

import fcntl
import json
import logging
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest

from ingest.pipeline import IngestJob
from rag.collection import Collection
from rag.errors import CollectionError
from rag.retrieval import index_params
from rag.settings import Settings
from tests.conftest import write_squad_docs
from tests.hostile.faults import rag

QUERY = "Which team won Super Bowl 50?"
DAMAGED = (
    r"Error: (?P<path>.+/c/(manifest\.json|store\.sqlite)) is damaged: (?P<reason>.+); "
    r"restore it from a backup or delete the collection with `rag collections delete c`"
)


def search_ids(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [hit["chunk_id"] for hit in json.loads(result.stdout)["hits"]]


@pytest.fixture(scope="module")
def built(tmp_path_factory, squad_paragraphs, minilm) -> tuple[Path, list[Path], list[str]]:
    """A collection `c` of 12 SQuAD paragraphs, its files, and what `rag search QUERY` finds."""
    root = tmp_path_factory.mktemp("damage")
    docs = write_squad_docs(root / "docs", squad_paragraphs, 12)
    settings = Settings.load(index_dir=root / "idx", progress=False, device="cpu")
    IngestJob(settings, embedder=minilm).run_files("c", docs)
    hits = search_ids(rag(root / "idx", "search", QUERY, "-c", "c", "--no-rerank", "--json"))
    assert hits
    return root / "idx", docs, hits


@pytest.fixture
def index_dir(tmp_path: Path, built) -> Path:
    """A fresh copy of the built collection, with an upload in the chat's folder for it."""
    copy = tmp_path / "idx"
    shutil.copytree(built[0], copy)
    (copy / ".uploads" / "c").mkdir(parents=True)
    (copy / ".uploads" / "c" / "notes.md").write_text("# Notes\n\nuploaded in the chat\n")
    return copy


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def one_vector_short(path: Path) -> None:
    index = faiss.read_index(str(path))
    index.remove_ids(np.array([faiss.vector_to_array(index.id_map)[0]], dtype=np.int64))
    faiss.write_index(index, str(path))


# Each damages a cache file of generation 1 in collection folder `c`; the name is the file hit.
CACHE_DAMAGE: dict[str, tuple[str, Callable[[Path], None]]] = {
    "faiss-truncated": ("dense-1.faiss", lambda c: truncate(c / "dense-1.faiss")),
    "faiss-garbage": ("dense-1.faiss", lambda c: (c / "dense-1.faiss").write_bytes(b"\x07" * 999)),
    "faiss-one-vector-short": ("dense-1.faiss", lambda c: one_vector_short(c / "dense-1.faiss")),
    "json-garbage": ("dense-1.faiss", lambda c: (c / "dense-1.json").write_bytes(b"\x00{garb")),
    "json-wrong-shape": ("dense-1.faiss", lambda c: (c / "dense-1.json").write_text("[1, 2]")),
    "json-missing": ("dense-1.faiss", lambda c: (c / "dense-1.json").unlink()),
    "keys-truncated": ("lexical-1", lambda c: truncate(c / "lexical-1" / "keys.npy", 0.9)),
    "keys-one-short": (
        "lexical-1",
        lambda c: np.save(c / "lexical-1" / "keys.npy", np.load(c / "lexical-1" / "keys.npy")[1:]),
    ),
    "bm25-data-truncated": (
        "lexical-1",
        lambda c: truncate(c / "lexical-1" / "data.csc.index.npy"),
    ),
    "bm25-params-garbage": (
        "lexical-1",
        lambda c: (c / "lexical-1" / "params.index.json").write_text("{not json"),
    ),
}


@pytest.mark.parametrize("kind", list(CACHE_DAMAGE))
def test_a_damaged_cache_is_rebuilt_and_search_finds_the_same_hits(
    index_dir: Path, built, kind: str
) -> None:
    cache, damage = CACHE_DAMAGE[kind]
    damage(index_dir / "c")

    result = rag(index_dir, "search", QUERY, "-c", "c", "--no-rerank", "--json")

    assert "Traceback" not in result.stderr
    assert search_ids(result) == built[2]
    warnings = [line for line in result.stderr.splitlines() if "does not load" in line]
    assert len(warnings) == 1, result.stderr
    assert re.fullmatch(
        rf"WARNING: .*/c/{re.escape(cache)} does not load \(.+\); rebuilding it from store\.sqlite",
        warnings[0],
    )
    info = rag(index_dir, "collections", "info", "c", "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["index"]["type"] == "flat"


@pytest.mark.parametrize("kind", list(CACHE_DAMAGE))
def test_reingest_rebuilds_a_damaged_cache_once_and_writes_it_back(
    index_dir: Path, built, minilm, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    CACHE_DAMAGE[kind][1](index_dir / "c")
    settings = Settings.load(index_dir=index_dir, progress=False, device="cpu")

    with caplog.at_level(logging.WARNING, logger="rag.collection"):
        report = IngestJob(settings, embedder=minilm).run_files("c", built[1])

    assert report.unchanged == len(built[1]) and report.failed == []
    assert len([r for r in caplog.records if "does not load" in r.getMessage()]) == 1
    caplog.clear()
    collection = Collection.open(index_dir, "c")
    try:
        _, chunks = collection.store.counts()
        with caplog.at_level(logging.WARNING, logger="rag.collection"):
            assert collection.dense_index(index_params(settings)).size == chunks
            assert collection.lexical_index().size == chunks
        assert caplog.records == []  # written back whole: loads without a rebuild
    finally:
        collection.close()


def manifest_edit(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        manifest = json.loads((folder / "manifest.json").read_text())
        (folder / "manifest.json").write_text(json.dumps(change(manifest)))

    return damage


def store_without_tables(folder: Path) -> None:
    (folder / "store.sqlite").unlink()
    db = sqlite3.connect(folder / "store.sqlite")
    db.execute("CREATE TABLE notes (text TEXT)")
    db.commit()
    db.close()


# (what damages folder `c`, the file named, the reason given)
FATAL_DAMAGE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "manifest-list": (
        lambda c: (c / "manifest.json").write_text("[]"),
        "manifest.json",
        "it holds a JSON list, not an object",
    ),
    "manifest-name-only": (
        lambda c: (c / "manifest.json").write_text('{"name": 3}'),
        "manifest.json",
        "'schema_version' is missing",
    ),
    "manifest-no-embedder": (
        manifest_edit(lambda m: {k: v for k, v in m.items() if k != "embedder"}),
        "manifest.json",
        "'embedder' is missing",
    ),
    "manifest-dimension-text": (
        manifest_edit(lambda m: {**m, "embedder": {**m["embedder"], "dimension": "384"}}),
        "manifest.json",
        "'embedder.dimension' is \"384\", not a positive integer",
    ),
    "manifest-garbage": (
        lambda c: (c / "manifest.json").write_bytes(b"\xff\xfe garbage"),
        "manifest.json",
        "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
    ),
    "manifest-missing": (
        lambda c: (c / "manifest.json").unlink(),
        "manifest.json",
        "the file is missing",
    ),
    "store-garbage": (
        lambda c: (c / "store.sqlite").write_bytes(b"\x13garbage" * 4096),
        "store.sqlite",
        "file is not a database",
    ),
    "store-truncated": (
        lambda c: truncate(c / "store.sqlite"),
        "store.sqlite",
        "database disk image is malformed",
    ),
    "store-without-tables": (
        store_without_tables,
        "store.sqlite",
        "its meta, documents, chunks tables are missing",
    ),
    "store-missing": (
        lambda c: (c / "store.sqlite").unlink(),
        "store.sqlite",
        "the file is missing",
    ),
}


def the_error(result: subprocess.CompletedProcess[str]) -> re.Match[str]:
    """The one `Error:` line of a command that failed cleanly, parsed."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    match = re.fullmatch(DAMAGED, lines[0])
    assert match, lines[0]
    return match


@pytest.mark.parametrize("kind", list(FATAL_DAMAGE))
def test_a_damaged_manifest_or_store_is_one_error_line_and_can_be_deleted(
    index_dir: Path, built, kind: str
) -> None:
    damage, filename, reason = FATAL_DAMAGE[kind]
    damage(index_dir / "c")
    other_uploads = index_dir / ".uploads" / "other"
    other_uploads.mkdir()

    for args in (
        ("search", QUERY, "-c", "c", "--no-rerank"),
        ("collections", "info", "c"),
        ("ingest", str(built[1][0]), "-c", "c", "--no-progress"),
    ):
        error = the_error(rag(index_dir, *args))
        assert error["path"] == str(index_dir / "c" / filename), args
        assert error["reason"] == reason, args

    deleted = rag(index_dir, "collections", "delete", "c", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == "Deleted c."
    assert not (index_dir / "c").exists()
    assert not (index_dir / ".uploads" / "c").exists()
    assert other_uploads.is_dir()  # another collection's uploads stay


@pytest.mark.parametrize("kind", list(FATAL_DAMAGE))
def test_opening_a_damaged_collection_raises_one_collection_error(
    index_dir: Path, kind: str
) -> None:
    damage, filename, reason = FATAL_DAMAGE[kind]
    damage(index_dir / "c")
    path = re.escape(str(index_dir / "c" / filename))
    with pytest.raises(CollectionError, match=rf"^{path} is damaged: {re.escape(reason)}; "):
        Collection.open(index_dir, "c").close()


def test_damage_found_after_opening_is_one_collection_error(index_dir: Path) -> None:
    """sqlite reads a damaged page only when a query needs it: that query fails cleanly too."""
    collection = Collection.open(index_dir, "c")
    try:
        store = index_dir / "c" / "store.sqlite"
        size = store.stat().st_size
        with store.open("r+b") as handle:  # every page after the first: the tables' contents
            handle.seek(4096)
            handle.write(b"\xa5" * (size - 4096))
        with pytest.raises(CollectionError, match=r"store\.sqlite is damaged: .*malformed"):
            collection.store.live_texts()
    finally:
        collection.close()


def test_delete_still_asks_and_refuses_while_a_job_writes(index_dir: Path) -> None:
    FATAL_DAMAGE["store-garbage"][0](index_dir / "c")

    kept = rag(index_dir, "collections", "delete", "c", stdin="n\n")
    assert kept.returncode == 0 and kept.stdout.strip().endswith("Kept.")
    assert (index_dir / "c").is_dir()

    with open(index_dir / "c" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        busy = rag(index_dir, "collections", "delete", "c", "--yes")
    assert busy.returncode == 1
    assert busy.stderr.strip() == (
        "Error: collection 'c' is being written by another job; try again later"
    )
    assert (index_dir / "c").is_dir() and (index_dir / ".uploads" / "c").is_dir()

    unknown = rag(index_dir, "collections", "delete", "nope", "--yes")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        f"Error: no collection named 'nope' in {index_dir} (collections: c)"
    )

    assert rag(index_dir, "collections", "delete", "c", stdin="y\n").returncode == 0
    assert not (index_dir / "c").exists() and not (index_dir / ".uploads" / "c").exists()


def test_uploads_dir_lives_in_rag_and_is_still_importable_from_ui(tmp_path: Path) -> None:
    from rag import collection
    from ui import uploads

    assert uploads.uploads_dir is collection.uploads_dir
    assert uploads.UPLOADS_FOLDER == collection.UPLOADS_FOLDER == ".uploads"
    assert collection.uploads_dir(tmp_path, "c") == tmp_path / ".uploads" / "c"
