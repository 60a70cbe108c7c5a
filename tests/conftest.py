"""Shared fixtures: real data from ../shared/data, the packaged MiniLM, a real cross-encoder."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.openai_compat import OpenAICompatServer

# Tests never reach for a model hub: models resolve to packaged or local copies. Nor do they see
# this machine's hub cache: a cached cross-encoder would turn reranking on where tests expect it
# off (the default reranker is not packaged), so results would depend on the machine.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="rag-tests-hf-")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
# What tests build from models (ONNX exports of every temporary tuned model, the embedded LLM's
# weights) stays in the checkout, reused from run to run, and out of the user's ~/.cache/rag.
os.environ.setdefault("RAG_CACHE_DIR", str(REPO / ".cache" / "rag-tests"))
SHARED_DATA = REPO.parent / "shared" / "data"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def wait_for(ready: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    """Poll `ready()` until it holds; fail the test with `what` if `timeout_s` pass first. A
    bound on waiting for something to happen, not a measurement: no test asserts a speed."""
    limit = time.monotonic() + timeout_s
    while not ready():
        if limit <= time.monotonic():
            pytest.fail(what)
        time.sleep(poll_s)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def squad_paragraphs(shared_data: Path) -> list[dict[str, object]]:
    """SQuAD dev paragraphs with their questions: [{title, context, questions: [...]}, ...]."""
    data = json.loads((shared_data / "squad" / "dev-v1.1.json").read_text())
    out = []
    for article in data["data"]:
        for paragraph in article["paragraphs"]:
            out.append(
                {
                    "title": article["title"],
                    "context": paragraph["context"],
                    "questions": [qa["question"] for qa in paragraph["qas"]],
                }
            )
    return out


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 bi-encoder (packaged copy), loaded once per test session."""
    from rag.embedding import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(MINILM, device="cpu")
    embedder.embed(["warm up"])
    return embedder


@pytest.fixture(scope="session")
def cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sentence-transformers CrossEncoder built from the MiniLM body with a fresh head.

    Untrained, so its scores carry no relevance signal: tests use it for mechanics only.
    """
    import torch
    from sentence_transformers import CrossEncoder

    from rag.models import packaged_path

    torch.manual_seed(0)
    model = CrossEncoder(str(packaged_path(MINILM)), num_labels=1, device="cpu")
    folder = tmp_path_factory.mktemp("cross-encoder")
    model.save(str(folder))
    return folder


@pytest.fixture
def settings(tmp_path: Path):
    from rag.settings import Settings

    return Settings.load(index_dir=tmp_path / "indexes", progress=False, device="cpu")


def write_squad_docs(folder: Path, paragraphs: list[dict[str, object]], count: int) -> list[Path]:
    """Write `count` SQuAD paragraphs as Markdown files, one per paragraph."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, paragraph in enumerate(paragraphs[:count]):
        path = folder / f"p{n:03d}.md"
        path.write_text(f"# {paragraph['title']}\n\n{paragraph['context']}\n")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAICompatServer]:
    """A real OpenAI-compatible server on loopback answering as the `test/echo` model, shared by
    the tests of one module: count its requests from a snapshot, not from zero, and start one of
    your own for another behaviour (slow, failing, another model)."""
    with OpenAICompatServer(models=["test/echo"]) as running:
        yield running


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray instance on this machine (2 CPUs, as CI has), for one test module: its address.

    It takes seconds to start, so a module's tests share it; it is stopped after the module.
    """
    import ray  # a dev dependency: `make test` installs it

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def batch_collection(
    root: Path, paragraphs: list[Any], embedder: Any, base_url: str, count: int, concurrency: int
) -> Any:
    """Collection `squad` of `count` SQuAD paragraphs under ROOT/idx, and settings that answer
    from the loopback server's test/echo model (answer_mode "llm": every question reaches it),
    `concurrency` questions at a time."""
    from ingest.pipeline import IngestJob
    from rag.settings import Settings

    docs = write_squad_docs(root / "docs", paragraphs, count)
    settings = Settings.load(
        index_dir=root / "idx",
        progress=False,
        device="cpu",
        rerank=False,
        llm_backend="openai",
        llm_base_url=base_url,
        llm_model="test/echo",
        llm_concurrency=concurrency,
        answer_mode="llm",
    )
    IngestJob(settings, embedder=embedder).run_files("squad", docs)
    return settings


def batch_command(questions: list[Any], folder: Path, base_url: str, *options: str) -> list[str]:
    """`rag batch` over `questions` (written to FOLDER/questions.jsonl) into FOLDER/answers.jsonl,
    answered by the loopback server's test/echo model at `base_url`."""
    qfile = folder / "questions.jsonl"
    qfile.write_text(
        "".join(json.dumps({"id": q.id, "question": q.question}) + "\n" for q in questions)
    )
    return [
        sys.executable,
        "-m",
        "rag.cli",
        "batch",
        str(qfile),
        "-c",
        "squad",
        "-o",
        str(folder / "answers.jsonl"),
        "--backend",
        "openai",
        "--base-url",
        base_url,
        "--model",
        "test/echo",
        "--answer-mode",
        "llm",
        "--no-progress",
        *options,
    ]
