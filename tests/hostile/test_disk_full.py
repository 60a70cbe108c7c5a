"""A full disk: while staging, the job stops with one line and the rerun resumes; after publish,
the search caches stay in memory (the ingest still succeeds) and are written once space is freed.

Each collection lives on a real tmpfs (`small_disk`) filled by a ballast file at a chosen point of
a real ingest (SQuAD paragraphs, the packaged MiniLM): the `progress(done, total)` hook fires as
each file is staged.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from ingest.pipeline import IngestJob
from rag.collection import Collection
from rag.errors import DiskFullError
from rag.manifest import RegisteredReranker
from rag.retrieval import Searcher, index_params
from rag.settings import Settings
from tests.conftest import write_squad_docs
from tests.hostile.faults import fill_disk, rag, small_disk

STAGING_FULL = (
    r"disk full while writing (?P<path>\S+/c/store\.sqlite): free some space and run the command "
    r"again; the documents staged so far are kept and the rerun resumes"
)
CACHE_FULL = (
    r"disk full while writing \S+/c/dense-2\.faiss: search uses the index built in memory; "
    r"it is rebuilt and written by the next search once space is freed"
)


def documents(index_dir: Path, state: str) -> set[str]:
    """Sources in the store in `state`, read with plain sqlite (no rag code involved)."""
    db = sqlite3.connect(f"file:{index_dir / 'c' / 'store.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT source FROM documents WHERE state = ?", (state,))
        return {row[0] for row in rows}
    finally:
        db.close()


def leftovers(index_dir: Path) -> list[str]:
    return sorted(str(p) for p in index_dir.rglob("*") if ".tmp" in p.name)


def check_consistent(settings: Settings, minilm, sources: set[str]) -> None:
    """Live documents are `sources`, FAISS and BM25 cover every live chunk, search finds some."""
    collection = Collection.open(settings.index_dir, "c")
    try:
        assert {d.source for d in collection.store.documents()} == sources
        _, chunks = collection.store.counts()
        assert collection.dense_index(index_params(settings)).size == chunks
        assert collection.lexical_index().size == chunks
        searcher = Searcher(collection, settings, embedder=minilm, reranker=None)
        assert searcher.retrieve("Which team won Super Bowl 50?", 5, "hybrid")
    finally:
        collection.close()


def test_a_full_disk_while_staging_keeps_the_collection_and_the_rerun_resumes(
    tmp_path: Path, squad_paragraphs, minilm
) -> None:
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 8)
    old = {str(p) for p in docs[:2]}
    with small_disk(tmp_path / "disk", mb=32) as disk:
        settings = Settings.load(index_dir=disk / "idx", progress=False, device="cpu")
        IngestJob(settings, embedder=minilm).run_files("c", docs[:2])
        ballast: list[Path] = []

        def fill_after_two(done: int, total: int) -> None:
            if done == 2 and not ballast:
                ballast.append(fill_disk(disk, leave=0))

        with pytest.raises(DiskFullError, match=f"^{STAGING_FULL}$") as raised:
            IngestJob(settings, embedder=minilm).run_files("c", docs[2:], progress=fill_after_two)

        assert raised.value.path == settings.index_dir / "c" / "store.sqlite"
        staged = {str(p) for p in docs[2:4]}
        assert documents(settings.index_dir, "live") == old
        assert documents(settings.index_dir, "staged") == staged
        assert leftovers(disk) == []
        check_consistent(settings, minilm, old)  # searchable as it was, disk still full

        # The command line says the same in one line, and changes nothing either.
        result = rag(settings.index_dir, "ingest", *map(str, docs[2:]), "-c", "c", "--no-progress")
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert re.fullmatch(f"Error: {STAGING_FULL}", result.stderr.strip()), result.stderr
        assert documents(settings.index_dir, "live") == old

        ballast[0].unlink()
        report = IngestJob(settings, embedder=minilm).run_files("c", docs[2:])

        assert report.resumed == 2 and report.added == 4 and report.failed == []
        assert report.warnings == []
        check_consistent(settings, minilm, {str(p) for p in docs})
        assert documents(settings.index_dir, "staged") == set()
        assert leftovers(disk) == []


def test_a_full_disk_after_publish_leaves_the_caches_in_memory_until_space_is_freed(
    tmp_path: Path, squad_paragraphs, minilm
) -> None:
    # 120 paragraphs in 32-token chunks: about 950 chunks, a FAISS file of about 1.4 MiB, where
    # publishing (a few SQLite pages) fits in the 256 KiB left free.
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 120)
    with small_disk(tmp_path / "disk", mb=48) as disk:
        settings = Settings.load(
            index_dir=disk / "idx", progress=False, device="cpu", chunk_tokens=32, chunk_overlap=0
        )
        IngestJob(settings, embedder=minilm).run_files("c", docs[:2])
        ballast: list[Path] = []

        def fill_after_the_last(done: int, total: int) -> None:
            if done == total and not ballast:
                ballast.append(fill_disk(disk, leave=256 * 1024))

        report = IngestJob(settings, embedder=minilm).run_files(
            "c", docs[2:], progress=fill_after_the_last
        )

        assert ballast, "the disk was never filled"
        assert report.added == 118 and report.failed == []
        assert len(report.warnings) == 1
        assert re.fullmatch(CACHE_FULL, report.warnings[0])
        folder = settings.index_dir / "c"
        assert documents(settings.index_dir, "live") == {str(p) for p in docs}
        assert not (folder / "dense-2.faiss").exists() and not (folder / "dense-1.faiss").exists()
        assert leftovers(disk) == []

        # Search works on the full disk, from an index built in memory, and says so.
        query = ("search", "Which team won Super Bowl 50?", "-c", "c", "--no-rerank", "--json")
        full = rag(settings.index_dir, *query)
        assert full.returncode == 0, full.stderr
        assert "Traceback" not in full.stderr
        warnings = [line for line in full.stderr.splitlines() if line.startswith("WARNING")]
        assert len(warnings) == 1 and re.fullmatch(f"WARNING: {CACHE_FULL}", warnings[0])
        hits = json.loads(full.stdout)["hits"]
        assert hits
        assert leftovers(disk) == []

        # An ingest with nothing new still succeeds (exit 0), with the same one warning line.
        again = rag(settings.index_dir, "ingest", *map(str, docs), "-c", "c", "--no-progress")
        assert again.returncode == 0, again.stderr
        assert re.fullmatch(f"WARNING: {CACHE_FULL}", again.stderr.strip()), again.stderr
        assert "120 unchanged" in again.stdout

        ballast[0].unlink()
        freed = rag(settings.index_dir, *query)

        assert freed.returncode == 0 and "WARNING" not in freed.stderr, freed.stderr
        assert json.loads(freed.stdout)["hits"] == hits
        assert (folder / "dense-2.faiss").is_file() and (folder / "dense-2.json").is_file()
        check_consistent(settings, minilm, {str(p) for p in docs})
        assert leftovers(disk) == []


def test_a_store_on_a_disk_with_no_space_left_is_one_line(
    tmp_path: Path, squad_paragraphs, minilm
) -> None:
    """A cleanly closed store needs a few KiB (its -shm file) just to be opened."""
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 2)
    with small_disk(tmp_path / "disk", mb=16) as disk:
        settings = Settings.load(index_dir=disk / "idx", progress=False, device="cpu")
        IngestJob(settings, embedder=minilm).run_files("c", docs)
        assert not (disk / "idx" / "c" / "store.sqlite-shm").exists()
        ballast = fill_disk(disk, leave=0)

        store = re.escape(str(disk / "idx" / "c" / "store.sqlite"))
        with pytest.raises(
            DiskFullError,
            match=f"^disk full while writing {store}: free some space and run the command again$",
        ):
            Collection.open(settings.index_dir, "c")

        ballast.unlink()
        check_consistent(settings, minilm, {str(p) for p in docs})


def test_a_manifest_write_on_a_full_disk_leaves_it_as_it_was(
    tmp_path: Path, squad_paragraphs, minilm
) -> None:
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 2)
    with small_disk(tmp_path / "disk", mb=16) as disk:
        settings = Settings.load(index_dir=disk / "idx", progress=False, device="cpu")
        IngestJob(settings, embedder=minilm).run_files("c", docs)
        manifest = disk / "idx" / "c" / "manifest.json"
        before = manifest.read_text()
        collection = Collection.open(settings.index_dir, "c")
        try:
            ballast = fill_disk(disk, leave=0)
            path = re.escape(str(manifest))
            with pytest.raises(DiskFullError, match=f"^disk full while writing {path}: "):
                collection.set_reranker(RegisteredReranker("models/reranker", arch="cross-encoder"))
        finally:
            collection.close()
        assert manifest.read_text() == before
        assert leftovers(disk) == []
        ballast.unlink()
