"""`rag serve` as an operator runs it: its own process, killed in the middle of an ingest job.
The collection is left as the CLI's ingest leaves it (as it was), and the job is not lost: the
next server on the machine runs it again to the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, wait_for
from tests.server.conftest import DEMO

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def rag_serve(index_dir: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    command = [sys.executable, "-m", "rag.cli", "serve", "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAG_DEVICE": "cpu"}
    process = subprocess.Popen(
        [*command, "--index-dir", str(index_dir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            pytest.fail(f"rag serve exited: {output}")
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


def test_a_job_killed_with_the_server_is_run_again_by_the_next(tmp_path: Path) -> None:
    index_dir = tmp_path / "indexes"
    articles = sorted(p for p in DEMO.glob("*.md") if p.name != "ATTRIBUTION.md")
    files: list[Any] = [("files", (p.name, p.read_bytes(), "text/markdown")) for p in articles]
    with rag_serve(index_dir) as (process, url), httpx.Client(base_url=url, timeout=120) as http:
        assert http.get("/ready").json()["status"] == "ready"
        assert http.post("/v1/collections", json={"name": "wiki"}).status_code == 201
        job = http.post("/v1/collections/wiki/documents", files=files).json()
        assert job["progress"] == {"done": 0, "total": len(articles)}

        def started() -> bool:
            record = http.get(f"/v1/jobs/{job['id']}").json()
            assert record["state"] != "done", "the job finished before the test could kill it"
            return record["state"] == "running" and record["progress"]["done"] >= 1

        wait_for(started, 300, "the ingest job did not start", poll_s=0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    from rag.collection import Collection

    with Collection.open(index_dir, "wiki") as collection:
        assert collection.store.counts() == (0, 0)  # as it was: nothing half-published

    with rag_serve(index_dir) as (_, url), httpx.Client(base_url=url, timeout=120) as http:

        def finished() -> bool:
            return http.get(f"/v1/jobs/{job['id']}").json()["state"] in ("done", "failed")

        wait_for(finished, 600, "the resumed job did not finish", poll_s=0.2)
        record = http.get(f"/v1/jobs/{job['id']}").json()
        assert record["state"] == "done", record
        assert record["report"]["ingested"] == len(articles)
        documents = http.get("/v1/collections/wiki/documents").json()["documents"]
        assert sorted(d["name"] for d in documents) == [p.name for p in articles]
