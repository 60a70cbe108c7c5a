"""A small real collection for the chat (SQuAD paragraphs, a hostile page, a real PDF), and a
real OpenAI-compatible LLM server on loopback, so that no test waits for the embedded model."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.pipeline import IngestJob
from rag.settings import Settings
from tests.conftest import write_squad_docs
from tests.servers.openai_compat import OpenAICompatServer

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"
TITLES = ("Super_Bowl_50", "Warsaw", "Normans", "Nikola_Tesla", "Oxygen")
# "How Much Knowledge Can You Pack Into the Parameters of a Language Model?": six real pages.
SMALL_PDF = "KnowledgePackingInLM.pdf"
HOSTILE = (
    "# Quince preserves\n\n"
    "Quince marmalade from Zanzibar: <script>alert(1)</script> is **bold** and _not_ [a link](x).\n"
)
LLM_MODEL = "test/echo"


@pytest.fixture(scope="session")
def real_pdfs(shared_data: Path) -> Path:
    return shared_data / "pdfs" / "real"


@pytest.fixture(scope="session")
def chat_corpus(tmp_path_factory, squad_paragraphs, real_pdfs: Path) -> list[Path]:
    """The first paragraph of five SQuAD articles, one hostile page and one real PDF."""
    root = tmp_path_factory.mktemp("chat-docs")
    firsts = [next(p for p in squad_paragraphs if p["title"] == title) for title in TITLES]
    docs = write_squad_docs(root, firsts, len(firsts))  # p000.md is Super Bowl 50
    hostile = root / "hostile.md"
    hostile.write_text(HOSTILE)
    pdf = root / SMALL_PDF
    shutil.copy(real_pdfs / SMALL_PDF, pdf)
    return [*docs, hostile, pdf]


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory, chat_corpus: list[Path], minilm) -> Path:
    """An index folder holding the `squad` collection, built with the real MiniLM."""
    indexes = tmp_path_factory.mktemp("chat-index") / "indexes"
    settings = Settings.load(index_dir=indexes, progress=False, device="cpu")
    report = IngestJob(settings, embedder=minilm).run_files("squad", chat_corpus)
    assert report.ingested == len(chat_corpus), report.failed
    return indexes


@pytest.fixture(scope="module")
def llm_server() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer(models=[LLM_MODEL]) as server:
        yield server


def llm_env(base_url: str) -> dict[str, str]:
    """The environment that points the app at an OpenAI-compatible endpoint."""
    return {
        "RAG_LLM_BACKEND": "openai",
        "RAG_LLM_BASE_URL": base_url,
        "RAG_LLM_MODEL": LLM_MODEL,
        # The LLM writes every answer: these tests are about the chat, not the small reader.
        "RAG_ANSWER_MODE": "llm",
    }


def closed_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
