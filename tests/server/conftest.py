"""The service on loopback: a real uvicorn server in a thread, over a real index folder, with the
packaged MiniLM and the loopback OpenAI-compatible LLM (`server` in tests/conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from rag.settings import Settings
from tests.conftest import REPO, wait_for

DEMO = REPO / "ui" / "demo_corpus"


@dataclass(frozen=True)
class Running:
    """A service on loopback: where it answers and what it serves."""

    url: str
    settings: Settings
    app: Any


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Run `app` with uvicorn on a free loopback port in a thread; its base URL while it runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 30, "the service did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def service_settings(index_dir: Path, llm_url: str, **extra: Any) -> Settings:
    """Settings for a test service: CPU, no reranker, answers from the loopback test/echo LLM
    (answer_mode "llm": the service's plumbing is under test, not who answers)."""
    return Settings.load(
        **{
            "index_dir": index_dir,
            "progress": False,
            "device": "cpu",
            "rerank": False,
            "chunks_per_page": 0,
            "llm_backend": "openai",
            "llm_base_url": llm_url,
            "llm_model": "test/echo",
            "answer_mode": "llm",
            **extra,
        }
    )


def ingest_demo(settings: Settings, embedder: Any, name: str) -> None:
    """Collection `name`: two demo articles, each with a `topic` (a --meta key)."""
    from ingest.pipeline import IngestJob

    job = IngestJob(settings, embedder=embedder)
    job.run_files(name, [DEMO / "Super_Bowl_50.md"], metadata={"topic": "sport"})
    job.run_files(name, [DEMO / "Amazon_rainforest.md"], metadata={"topic": "nature"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def rag_serve(
    index_dir: Path, prefix: Sequence[str] = (), env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`rag serve` in its own process (started through `prefix`, such as `unshare ...`, when
    given) over `index_dir`, until it answers /health; its process and base URL."""
    port = free_port()
    command = [*prefix, sys.executable, "-m", "rag.cli", "serve", "--port", str(port)]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "RAG_DEVICE": "cpu", **(env or {})}
    log = index_dir.parent / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--index-dir", str(index_dir)],
            cwd=REPO,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"rag serve exited: {log.read_text(errors='replace')}")
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, 120, "rag serve did not come up", poll_s=0.2)
        yield process, url
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)
