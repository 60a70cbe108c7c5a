"""`rag ingest --engine ray`: the same collection as the single-machine job, on a local Ray."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import IngestJob
from rag.collection import Collection
from rag.settings import Settings
from tests.conftest import write_squad_docs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, squad_paragraphs, shared_data: Path) -> list[Path]:
    """SQuAD paragraphs as Markdown, two real papers, and hostile PDFs (encrypted, not a PDF)."""
    root = tmp_path_factory.mktemp("ray-inputs")
    docs = write_squad_docs(root / "squad", squad_paragraphs, 24)
    pdfs = shared_data / "pdfs"
    return [
        *docs,
        pdfs / "real" / "1706.03762.pdf",
        pdfs / "real" / "DrQA.pdf",
        pdfs / "broken" / "encrypted-file.pdf",
        pdfs / "broken" / "bytes.pdf",
        pdfs / "broken" / "r2-empty-password.pdf",
    ]


def contents(index_dir: Path, name: str) -> tuple[list[tuple[int, str, str]], np.ndarray]:
    """Every live chunk as (key, chunk id, text), by key, and their vectors in that order."""
    collection = Collection.open(index_dir, name)
    try:
        keys, vectors = [], []
        for part_keys, part in collection.store.live_vectors(collection.embedder.dimension):
            keys.extend(int(k) for k in part_keys)
            vectors.append(part)
        chunks = collection.store.chunks(keys)
        rows = [(key, chunks[key].id, chunks[key].text) for key in keys]
        return rows, np.concatenate(vectors)
    finally:
        collection.close()


def test_ray_builds_the_same_collection_as_one_machine(
    tmp_path: Path, ray_cluster: str, inputs: list[Path], minilm
) -> None:
    local = Settings.load(index_dir=tmp_path / "local", progress=False, device="cpu")
    on_ray = Settings.load(index_dir=tmp_path / "ray", progress=False, device="cpu", engine="ray")
    expected = IngestJob(local, embedder=minilm).run_files("docs", inputs)
    report = IngestJob(on_ray, embedder=minilm).run_files("docs", inputs)

    # The hostile files are reported with the same one-line reasons and the rest goes on.
    assert dict(report.failed) == dict(expected.failed)
    assert str(inputs[-3]) in dict(report.failed)  # encrypted
    assert (report.added, report.pages, report.chunks) == (
        expected.added,
        expected.pages,
        expected.chunks,
    )
    assert report.added == len(inputs) - len(report.failed)
    rows, vectors = contents(on_ray.index_dir, "docs")
    expected_rows, expected_vectors = contents(local.index_dir, "docs")
    assert rows == expected_rows  # same keys, chunk ids and texts, in the same order
    np.testing.assert_allclose(vectors, expected_vectors, atol=1e-5)


def test_a_killed_ray_job_resumes(
    tmp_path: Path, ray_cluster: str, inputs: list[Path], minilm
) -> None:
    inputs = [path for path in inputs if path.suffix == ".md"]
    index_dir = tmp_path / "idx"
    # A driver that dies (SIGKILL, no clean-up at all) once five documents are staged.
    script = f"""
import os, signal
from pathlib import Path
from ingest.pipeline import IngestJob
from rag.settings import Settings

def crash(done, total):
    if done >= 5:
        os.kill(os.getpid(), signal.SIGKILL)

settings = Settings.load(
    index_dir=Path({str(index_dir)!r}), progress=False, device="cpu", engine="ray"
)
paths = [Path(p) for p in {[str(p) for p in inputs]!r}]
IngestJob(settings).run_files("docs", paths, progress=crash)
"""
    env = {**os.environ, "RAY_ADDRESS": ray_cluster, "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run([sys.executable, "-c", script], env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    with sqlite3.connect(index_dir / "docs" / "store.sqlite") as db:
        states = dict(db.execute("SELECT state, count(*) FROM documents GROUP BY state").fetchall())
    assert states.get("staged", 0) >= 5 and "live" not in states

    settings = Settings.load(index_dir=index_dir, progress=False, device="cpu", engine="ray")
    report = IngestJob(settings, embedder=minilm).run_files("docs", inputs)
    assert report.resumed >= 5  # the killed job's work is adopted, not redone
    assert report.ingested == len(inputs) and not report.failed
    again = IngestJob(settings, embedder=minilm).run_files("docs", inputs)
    assert again.unchanged == report.ingested and again.ingested == 0


def test_the_local_path_does_not_import_ray(tmp_path: Path, inputs: list[Path]) -> None:
    script = f"""
import sys
from pathlib import Path
import rag.cli
from ingest.pipeline import IngestJob
from rag.settings import Settings
settings = Settings.load(index_dir=Path({str(tmp_path)!r}), progress=False, device="cpu")
IngestJob(settings).run_files("docs", [Path({str(inputs[0])!r})])
assert "ray" not in sys.modules, "ray was imported"
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=300)


def test_more_embedders_than_cpus_are_capped_so_parsing_can_run(
    tmp_path: Path, ray_cluster: str, inputs: list[Path], minilm, caplog: pytest.LogCaptureFixture
) -> None:
    """Two actors on two CPUs would leave none for the parse tasks, and the job would wait forever
    for documents nobody can parse."""
    settings = Settings.load(
        index_dir=tmp_path, progress=False, device="cpu", engine="ray", ray_workers=2
    )
    report = IngestJob(settings, embedder=minilm).run_files("docs", inputs[:4])
    assert report.added == 4
    assert "using 1 embedder actors, not 2: the cluster has 2 CPUs" in caplog.text
