"""The ingest jobs that benchmarks/ingest_throughput.py times: LangChain's and the project's.

Shared by ingest_throughput.py and ingest_experimental.py (the variants outside the product), so
neither imports the other's module. Each runner runs inside a worker subprocess and returns its
counts and `setup_s` (imports and model load) apart from `work_s` (parse, chunk, embed, index).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CHUNK_TOKENS = 240
CHUNK_OVERLAP = 32


def run_langchain(pdfs: list[Path], workdir: Path) -> dict[str, Any]:
    """PyPDFLoader per file + RecursiveCharacterTextSplitter in MiniLM tokens +
    HuggingFaceEmbeddings (default settings) + FAISS.from_documents."""
    started = time.perf_counter()
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from transformers import AutoTokenizer

    from rag.models import packaged_path

    folder = str(packaged_path(MODEL))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    embeddings = HuggingFaceEmbeddings(model_name=folder)
    ready = time.perf_counter()

    pages = []
    for path in pdfs:  # one broken file would end the whole loop; the benchmark set is clean
        pages.extend(PyPDFLoader(str(path)).load())
    loaded = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokenizer, chunk_size=CHUNK_TOKENS, chunk_overlap=CHUNK_OVERLAP
    )
    chunks = splitter.split_documents(pages)
    split = time.perf_counter()
    store = FAISS.from_documents(chunks, embeddings)
    store.save_local(str(workdir / "faiss"))
    done = time.perf_counter()
    return {
        "files": len(pdfs),
        "pages": len(pages),
        "chunks": len(chunks),
        "setup_s": ready - started,
        "work_s": done - ready,
        "stages_s": {"load": loaded - ready, "chunk": split - loaded, "embed+index": done - split},
    }


class _TimedEmbedder:
    """Forwards to an embedder and adds up the seconds spent in `embed`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0

    @property
    def dimension(self) -> int:
        return int(self.inner.dimension)

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    def embed(self, texts: list[str]) -> Any:
        started = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - started


def run_rag(
    pdfs: list[Path],
    workdir: Path,
    backend: str = "torch",
    job_class: Any = None,
    embedder_factory: Callable[[], Any] | None = None,
    overrides: dict[str, Any] | None = None,
    probe_torch: bool = False,
) -> dict[str, Any]:
    """The project's ingest job with default settings (or `overrides` of them), a fresh index
    folder, and `backend`. `probe_torch` first asks torch whether there is a GPU, as every
    command did before 2026-12-03 (importing torch for it)."""
    started = time.perf_counter()
    if probe_torch:
        import torch

        torch.cuda.is_available()
    from ingest.pipeline import IngestJob
    from rag.embedding import SentenceTransformerEmbedder
    from rag.settings import DEFAULT_EMBEDDER, Settings

    settings = Settings.load(index_dir=workdir / "indexes", progress=False, **(overrides or {}))
    # Built as the job builds its own, plus the backend; loaded here so setup is timed apart.
    embedder = (
        embedder_factory()
        if embedder_factory is not None
        else SentenceTransformerEmbedder(
            DEFAULT_EMBEDDER, settings.device, settings.embed_batch_size, backend=backend
        )
    )
    _ = embedder.dimension, embedder.tokenizer
    timed = _TimedEmbedder(embedder)
    job = (job_class or IngestJob)(settings, embedder=timed)
    reader = _ReaderMemory()
    ready = time.perf_counter()
    with reader:
        report = job.run_files("bench", pdfs)
    done = time.perf_counter()
    if report.failed:
        raise SystemExit(f"ingest failed for {report.failed}")
    return {
        "files": report.ingested,
        "pages": report.pages,
        "chunks": report.chunks,
        "setup_s": ready - started,
        "work_s": done - ready,
        "stages_s": {"embed (inside the job)": timed.seconds},
        # The job's PDF reader is a child process: its peak is not in this process's RSS.
        "pdf_reader_peak_rss_mb": reader.peak_mb,
    }


class _ReaderMemory(threading.Thread):
    """The peak resident memory of the job's PDF reader process (ingest/pdf_worker.py), read
    from /proc every 0.2 s while the job runs; 0 when PDFs are read in the job's process."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mb = 0.0
        self._done = threading.Event()

    def __enter__(self) -> _ReaderMemory:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self.join()

    def run(self) -> None:
        from ingest import pdf_worker

        while not self._done.wait(0.2):
            pid = pdf_worker.child_pid()
            try:
                status = Path(f"/proc/{pid}/status").read_text() if pid else ""
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)


def run_rag_one_call(pdfs: list[Path], workdir: Path) -> dict[str, Any]:
    """The int8 job with each text embedded by one ONNX Runtime call over all cores, one text
    after another: the embedder before texts were encoded side by side."""
    import rag.embedding

    rag.embedding.MAX_ENCODE_WORKERS = 1
    return run_rag(pdfs, workdir, backend="int8")
