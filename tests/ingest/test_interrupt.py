"""SIGKILL at any point of `rag ingest` leaves the collection as before or after, never half."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ingest.pipeline import IngestJob
from rag.collection import Collection
from rag.retrieval import Searcher
from rag.settings import Settings
from tests.conftest import write_squad_docs
from tests.hostile.faults import kill_when

PAPERS = ["1706.03762.pdf", "BERT.pdf", "2005.11401.pdf", "DrQA.pdf", "2002.08909.pdf"]


def start_ingest(files: list[Path], index_dir: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "rag.cli",
        "ingest",
        *map(str, files),
        "-c",
        "c",
        "--no-progress",
    ]
    # Small embedding batches: many staging commits, so the kill lands between them.
    env = {
        **os.environ,
        "RAG_INDEX_DIR": str(index_dir),
        "HF_HUB_OFFLINE": "1",
        "RAG_EMBED_BATCH_SIZE": "8",
    }
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def staged_count(index_dir: Path) -> int:
    path = index_dir / "c" / "store.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return int(db.execute("SELECT COUNT(*) FROM documents WHERE state='staged'").fetchone()[0])
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    finally:
        db.close()


def check_consistent(settings: Settings, minilm, expected_sources: set[str]) -> list[str]:
    """Documents are exactly `expected_sources`; FAISS, BM25 and SQLite agree; search works."""
    collection = Collection.open(settings.index_dir, "c")
    try:
        assert {d.source for d in collection.store.documents()} == expected_sources
        _, chunks = collection.store.counts()
        searcher = Searcher(collection, settings, embedder=minilm, reranker=None)
        assert collection.dense_index(searcher._params).size == chunks
        assert collection.lexical_index().size == chunks
        assert searcher.retrieve("attention", 3, "hybrid")
        keys, _ = collection.store.live_texts()
        ids = [c.id for c in collection.store.chunks(list(keys)).values()]
        assert len(ids) == len(set(ids)), "duplicate chunks"
        return sorted(ids)
    finally:
        collection.close()


@pytest.mark.slow
def test_sigkill_then_resume(tmp_path: Path, shared_data: Path, squad_paragraphs, minilm) -> None:
    settings = Settings.load(index_dir=tmp_path / "idx", progress=False, device="cpu")
    before = write_squad_docs(tmp_path / "docs", squad_paragraphs, 2)
    IngestJob(settings, embedder=minilm).run_files("c", before)
    papers = [shared_data / "pdfs" / "real" / name for name in PAPERS]
    everything = [*before, *papers]
    old = {str(p) for p in before}

    # 1. Killed while starting up (imports, model load): nothing changed.
    process = start_ingest(everything, settings.index_dir)
    time.sleep(1.0)
    process.send_signal(signal.SIGKILL)
    process.wait()
    check_consistent(settings, minilm, old)

    # 2. Killed after some documents were staged: still nothing visible.
    process = start_ingest(everything, settings.index_dir)
    kill_when(process, lambda: staged_count(settings.index_dir) >= 1)
    check_consistent(settings, minilm, old)
    left_staged = staged_count(settings.index_dir)
    assert left_staged >= 1

    # 3. The rerun adopts the staged work and finishes.
    report = IngestJob(settings, embedder=minilm).run_files("c", everything)
    assert report.resumed == left_staged and report.unchanged == 2 and report.failed == []
    resumed_ids = check_consistent(settings, minilm, {str(p) for p in everything})

    # The same collection as one uninterrupted run: same chunk ids, no duplicates.
    clean = Settings.load(index_dir=tmp_path / "clean", progress=False, device="cpu")
    IngestJob(clean, embedder=minilm).run_files("c", everything)
    assert check_consistent(clean, minilm, {str(p) for p in everything}) == resumed_ids
