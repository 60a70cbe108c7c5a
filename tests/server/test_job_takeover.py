"""Jobs left "running" by a server that is gone are taken over, never left running forever:
- a container restarted under the same host name runs its server under the same pid again, so
  "is that pid alive?" says yes (it is the new server itself): the lease's start time says no;
- a replica on another machine sharing the index folder takes over once the dead one's lease is
  not renewed (a real second host name, from a UTS namespace);
- a job whose uploads are gone, or whose server died every time it ran it, is failed with the
  reason.
Each server is a real `rag serve` process killed with SIGKILL in the middle of a real ingest; the
collection is then as it was, and after the takeover exactly what a clean ingest makes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.pipeline import IngestJob
from rag.collection import Collection
from rag.settings import Settings
from tests.conftest import REPO, wait_for
from tests.server.conftest import DEMO, rag_serve

pytestmark = pytest.mark.slow

ARTICLES = sorted(p for p in DEMO.glob("*.md") if p.name != "ATTRIBUTION.md")
PID_NAMESPACE = ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")


def can(prefix: tuple[str, ...]) -> bool:
    try:
        return subprocess.run([*prefix, "true"], capture_output=True).returncode == 0
    except OSError:
        return False


def settings_for(index_dir: Path, **extra: Any) -> Settings:
    return Settings.load(index_dir=index_dir, progress=False, device="cpu", **extra)


@pytest.fixture(scope="module")
def clean_counts(tmp_path_factory: pytest.TempPathFactory, minilm: Any) -> tuple[int, int]:
    """(documents, chunks) of the articles ingested once, undisturbed."""
    index_dir = tmp_path_factory.mktemp("clean") / "indexes"
    IngestJob(settings_for(index_dir), embedder=minilm).run_files("wiki", ARTICLES)
    with Collection.open(index_dir, "wiki") as collection:
        return collection.store.counts()


def start_and_kill(
    index_dir: Path, prefix: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> str:
    """Upload the articles into "wiki" on a server, SIGKILL it mid-ingest; the job's id."""
    files: list[Any] = [("files", (p.name, p.read_bytes(), "text/markdown")) for p in ARTICLES]
    with (
        rag_serve(index_dir, prefix, env) as (process, url),
        httpx.Client(base_url=url, timeout=120) as http,
    ):
        assert http.post("/v1/collections", json={"name": "wiki"}).status_code == 201
        job = http.post("/v1/collections/wiki/documents", files=files).json()

        def started() -> bool:
            record = http.get(f"/v1/jobs/{job['id']}").json()
            assert record["state"] != "done", "the job finished before the test could kill it"
            return record["state"] == "running" and record["progress"]["done"] >= 1

        wait_for(started, 300, "the ingest job did not start", poll_s=0.02)
        process.send_signal(signal.SIGKILL)  # unshare's --kill-child passes it on
        process.wait(timeout=30)

        def down() -> bool:
            try:
                http.get("/health", timeout=1)
            except httpx.TransportError:
                return True
            return False

        wait_for(down, 30, "the killed server still answers")
    with Collection.open(index_dir, "wiki") as collection:
        assert collection.store.counts() == (0, 0)  # nothing half-published
    return str(job["id"])


def finished_job(url: str, job_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=120) as http:

        def finished() -> bool:
            return http.get(f"/v1/jobs/{job_id}").json()["state"] in ("done", "failed")

        wait_for(finished, 600, "the job was left unfinished", poll_s=0.2)
        return dict(http.get(f"/v1/jobs/{job_id}").json())


def assert_whole(index_dir: Path, clean_counts: tuple[int, int]) -> None:
    """Every article once, each with its chunks, nothing staged: as a clean ingest makes it."""
    with Collection.open(index_dir, "wiki") as collection:
        live = collection.store.documents()
        assert sorted(Path(d.source).name for d in live) == [p.name for p in ARTICLES]
        assert all(d.chunks > 0 for d in live)
        assert collection.store.documents("staged") == []
        assert collection.store.counts() == clean_counts


@pytest.mark.skipif(not can(PID_NAMESPACE), reason="cannot make a PID namespace here")
def test_a_restarted_container_takes_over_with_the_same_pid(
    tmp_path: Path, clean_counts: tuple[int, int]
) -> None:
    """Both servers run as pid 1 of their own PID namespace, on the same host name."""
    index_dir = tmp_path / "indexes"
    job_id = start_and_kill(index_dir, PID_NAMESPACE)
    owner = json.loads((index_dir / ".jobs" / f"{job_id}.json").read_text())["owner"]
    assert owner.split(":")[1] == "1"  # it ran as pid 1, as the next server will
    with rag_serve(index_dir, PID_NAMESPACE) as (process, url):
        record = finished_job(url, job_id)
        process.kill()  # unshare ignores SIGTERM; its child is killed with it
        process.wait(timeout=30)
    assert record["state"] == "done", record
    assert record["report"]["ingested"] == len(ARTICLES)
    assert_whole(index_dir, clean_counts)


UTS_NAMESPACE = ("unshare", "--uts", "sh", "-c", 'hostname replica-a && exec "$@"', "sh")


@pytest.mark.skipif(not can(UTS_NAMESPACE), reason="cannot set a host name here")
def test_a_replica_on_another_host_takes_over_when_the_lease_expires(
    tmp_path: Path, clean_counts: tuple[int, int]
) -> None:
    index_dir = tmp_path / "indexes"
    lease = {"RAG_JOB_LEASE_S": "2"}
    job_id = start_and_kill(index_dir, UTS_NAMESPACE, lease)
    owner = json.loads((index_dir / ".jobs" / f"{job_id}.json").read_text())["owner"]
    assert owner.startswith("replica-a:")
    with rag_serve(index_dir, env=lease) as (_, url):
        record = finished_job(url, job_id)
    assert record["state"] == "done", record
    assert_whole(index_dir, clean_counts)
    # The dead replica's lease and the job's claims are cleared away.
    owners = index_dir / ".jobs" / "owners"
    assert not [p.name for p in owners.iterdir() if p.name.startswith("replica-a:")]
    assert not list(owners.glob(f"{job_id}.*"))


def test_a_job_whose_uploads_are_gone_is_failed_with_the_reason(tmp_path: Path) -> None:
    index_dir = tmp_path / "indexes"
    job_id = start_and_kill(index_dir)
    uploads = index_dir / ".uploads" / "wiki"
    for path in uploads.iterdir():
        path.unlink()
    with rag_serve(index_dir) as (_, url):
        record = finished_job(url, job_id)
    assert record["state"] == "failed"
    assert record["error"].startswith("stopped (its server process (pid ")
    names = ", ".join(p.name for p in ARTICLES)
    assert record["error"].endswith(f") and its files are gone ({names}); submit again")
    with Collection.open(index_dir, "wiki") as collection:
        assert collection.store.counts() == (0, 0)


# A server that takes over the unfinished jobs, then dies at once, as one brought down by the
# file it ingests would; the record as it then stands.
TAKE_OVER_AND_DIE = """
import json, os, sys
from pathlib import Path
from rag.server.jobs import Jobs
from rag.settings import Settings
jobs = Jobs(Settings.load(index_dir=sys.argv[1], progress=False, device="cpu"))
taken = jobs.resume_orphans()
print(json.dumps([record.to_json() for record in taken]), flush=True)
os.kill(os.getpid(), 9)
"""


def test_a_job_that_kills_its_server_every_time_is_failed(tmp_path: Path) -> None:
    index_dir = tmp_path / "indexes"
    job_id = start_and_kill(index_dir)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", TAKE_OVER_AND_DIE, str(index_dir)]
    seen = []
    for _ in range(4):
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
        assert done.returncode == -signal.SIGKILL, done.stderr
        seen.append([(r["id"], r["state"]) for r in json.loads(done.stdout)])
    assert seen[:3] == [[(job_id, "queued")]] * 3
    assert seen[3] == [(job_id, "failed")]
    record = (index_dir / ".jobs" / f"{job_id}.json").read_text()
    assert "its server stopped 4 times while running it, so it is not run again" in record
