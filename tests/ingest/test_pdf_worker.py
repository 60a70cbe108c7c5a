"""PDFs read in a child process: the same documents and errors as in the job's process, and a
reader that crashes or stalls costs its file only, on real PDFs and the real tesseract."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest import pdf, pdf_worker
from ingest.chunking import Chunker
from ingest.loaders import load_document, load_pdf
from ingest.pipeline import IngestJob
from rag.collection import Collection
from rag.embedding import HashEmbedder
from rag.errors import LoadError
from tests.conftest import wait_for, write_squad_docs

STALL_S = 300.0


def outcome(path: Path, stall_s: float | None, ocr: str = "off") -> object:
    try:
        document = load_document(path, ocr, "pdfium", stall_s)  # type: ignore[arg-type]
    except LoadError as e:
        return e.reason
    return document


def test_a_child_reads_what_this_process_reads(shared_data: Path) -> None:
    pdfs = shared_data / "pdfs"
    files = [
        *sorted((pdfs / "broken").glob("*.pdf")),
        pdfs / "real" / "1706.03762.pdf",
        pdfs / "real" / "1908.10084.pdf",  # garbled font: OCR'd where tesseract is installed
    ]
    failed = 0
    for path in files:
        here = outcome(path, None, "auto")
        there = outcome(path, STALL_S, "auto")
        assert there == here, path.name
        failed += isinstance(here, str)
    assert 0 < failed < len(files)  # the set has both: passwords and broken files, and good ones
    assert pdf_worker.child_pid() is not None
    pdf_worker.stop()
    assert pdf_worker.child_pid() is None


def test_a_reader_that_crashes_fails_its_file_and_the_job_goes_on(
    settings, shared_data: Path, tmp_path: Path, squad_paragraphs
) -> None:
    folder = tmp_path / "docs"
    write_squad_docs(folder, squad_paragraphs, 2)
    paper = folder / "paper.pdf"
    shutil.copy(shared_data / "pdfs" / "real" / "1706.03762.pdf", paper)
    job = IngestJob(settings, embedder=HashEmbedder(), chunker=Chunker(80, 10))
    crashed: list[int] = []

    def crash_the_reader() -> None:
        # The folder's only PDF is the only thing a child is started for: kill it as a
        # segmentation fault would.
        wait_for(lambda: pdf_worker.child_pid() is not None, 60, "no PDF reader started")
        pid = pdf_worker.child_pid()
        assert pid is not None
        os.kill(pid, signal.SIGSEGV)
        crashed.append(pid)

    killer = threading.Thread(target=crash_the_reader)
    killer.start()
    report = job.run_files("c", [folder])
    killer.join()
    assert crashed
    assert report.added == 2
    assert [name for name, _ in report.failed] == [str(paper)]
    assert report.failed[0][1] == "the PDF reader crashed on this file (killed by SIGSEGV); skipped"
    assert pdf_worker.child_pid() is None  # the job stops its reader when it ends

    again = job.run_files("c", [folder])  # a new reader: the file is read this time
    assert (again.added, again.unchanged, again.failed) == (1, 2, [])
    collection = Collection.open(settings.index_dir, "c")
    try:
        assert collection.store.counts()[0] == 3
    finally:
        collection.close()


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="no tesseract")
def test_a_reader_that_stalls_is_stopped_and_the_next_file_is_read(
    shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paper = shared_data / "pdfs" / "real" / "1706.03762.pdf"  # dense pages: seconds of OCR each
    with caplog.at_level(logging.INFO, logger="ingest.pdf"):
        stalled = outcome(paper, 0.5, "force")
    assert stalled == (
        "no page read in 0.5 s; the PDF reader was stopped and the file skipped "
        "(setting pdf_stall_s)"
    )
    # The child's log records come back under their own names.
    assert any("page 1: OCR (ocr = force)" in r.getMessage() for r in caplog.records)
    assert pdf_worker.child_pid() is None
    scanned = shared_data / "pdfs" / "sample-files" / "003-pdflatex-image" / "pdflatex-image.pdf"
    document = outcome(scanned, STALL_S, "force")
    assert not isinstance(document, str) and "Lorem ipsum" in document.pages[0].text
    pdf_worker.stop()


def test_the_calling_thread_hears_of_each_page_read(shared_data: Path) -> None:
    paper = shared_data / "pdfs" / "real" / "1706.03762.pdf"  # 15 pages, all with text
    raw = paper.read_bytes()

    heard: list[tuple[str, int, int, int]] = []

    def listen(read: Callable[[], object]) -> list[tuple[str, int, int, int]]:
        heard.clear()
        with pdf.listening(lambda *page: heard.append((*page, threading.get_ident()))):
            read()
        return list(heard)

    here = listen(lambda: load_pdf(raw, str(paper), "off", "pdfium"))
    text = [(step, done, total) for step, done, total, _ in here if step == "text"]
    assert text == [("text", n, 15) for n in range(1, 16)]  # in this process: every page
    assert {step for step, *_ in here} <= set(pdf.STEPS)

    there = listen(lambda: pdf_worker.read_pdf(raw, str(paper), "off", "pdfium", STALL_S))
    # From the child: fewer (a tick at most every 0.2 s), on this thread, counted the same way.
    assert there[0][:3] == ("text", 1, 15)
    assert set(there) <= set(here)
    heard.clear()
    pdf_worker.read_pdf(raw, str(paper), "off", "pdfium", STALL_S)  # the block is over: unheard
    pdf_worker.stop()
    assert heard == []
