"""`rag serve` as an operator runs it: its own process, killed in the middle of an ingest job.
The collection is left as the CLI's ingest leaves it (as it was), and the job is not lost: the
next server on the machine runs it again to the end."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import wait_for
from tests.server.conftest import DEMO, rag_serve

pytestmark = pytest.mark.slow


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
