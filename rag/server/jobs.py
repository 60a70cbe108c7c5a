"""Background jobs (ingests, and batches of questions), each one a JSON record on disk that
callers poll.

    jobs = Jobs(settings)
    record = jobs.submit("papers", [saved_path], user="ana")
    jobs.get(record.id).to_json()["progress"]          # {"done": 3, "total": 10}

A kind of job other than "ingest" is run by a runner registered in `runners` (the batch runner
is rag/server/batches.py); one that appends JSON lines to its `output` file has its progress
counted from that file.

The ingest itself is `ingest.pipeline.IngestJob`, the same as `rag ingest`: staged per file and
published in one transaction, so a server killed mid-job leaves the collection as it was. Records
live in `<index_dir>/.jobs/` (out of `list_collections`' sight), written atomically.

No job is left "running" by a server that is gone. Each server process holds a lease
(leases.py) that it renews every `job_lease_s / 4` seconds; at start and at every renewal it
looks for unfinished jobs whose server is gone (a process ended on this machine, or another
machine's lease not renewed for `job_lease_s`), claims each one so that no two replicas take it,
and runs it again: an ingest adopts its staged work, a batch skips the questions answered. A job
whose uploaded files are gone, or whose server stopped `MAX_ATTEMPTS` times while running it (a
file that brings the server down, say), is marked failed with the reason instead.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest.pipeline import IngestJob, IngestReport
from rag.embedding import Embedder
from rag.errors import ConfigError, RagError
from rag.server.leases import Leases
from rag.settings import Settings

logger = logging.getLogger(__name__)

JOBS_FOLDER = ".jobs"
OWNERS_FOLDER = "owners"  # in JOBS_FOLDER: the servers' leases and the claims on jobs
# Times a job is taken over from a server that stopped while running it before it is failed.
MAX_ATTEMPTS = 3
# Progress is written at most this often (and always at the start and end).
WRITE_EVERY_S = 0.5
_ID_CHARS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class JobRecord:
    """What a caller sees of a job."""

    id: str
    collection: str
    user: str
    files: tuple[str, ...]
    state: str = "queued"  # queued | running | done | failed
    done: int = 0
    total: int = 0
    created_at: str = ""
    updated_at: str = ""
    owner: str = ""  # host:pid of the server process running it
    summary: str = ""
    report: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    kind: str = "ingest"  # ingest | batch
    output: str | None = None  # the JSONL file the job appends to (a batch's answers)
    attempts: int = 0  # times taken over from a server that stopped while running it

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "collection": self.collection,
            "state": self.state,
            "progress": {"done": self.done, "total": self.total},
            "files": [Path(f).name for f in self.files],
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "summary": self.summary,
            "report": self.report,
            "error": self.error,
        }


# What runs a job of some kind: given its record and a progress callback, it returns the
# summary line and the report to record (or raises a RagError, recorded as the job's error).
Runner = Callable[[JobRecord, Callable[[int, int], None]], tuple[str, dict[str, Any]]]


class Jobs:
    """The jobs of one server process, on `workers` threads."""

    def __init__(
        self, settings: Settings, embedder: Embedder | None = None, workers: int = 1
    ) -> None:
        self.settings = settings.model_copy(update={"progress": False})
        self.folder = settings.index_dir / JOBS_FOLDER
        self._embedder = embedder
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")
        self._lock = threading.Lock()
        self.leases = Leases(self.folder / OWNERS_FOLDER, settings.job_lease_s)
        self._owner = self.leases.owner
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._renew, name="job-lease", daemon=True)
        self.runners: dict[str, Runner] = {"ingest": self._ingest}

    @staticmethod
    def new_id() -> str:
        return uuid.uuid4().hex

    def submit(
        self,
        collection: str,
        files: list[Path],
        user: str,
        *,
        kind: str = "ingest",
        total: int | None = None,
        output: Path | None = None,
        job_id: str | None = None,
    ) -> JobRecord:
        """Queue a job over `files` (already saved) in `collection`: by default an ingest."""
        if kind not in self.runners:
            raise ConfigError(f"unknown job kind {kind!r} (known: {', '.join(self.runners)})")
        now = _now()
        record = JobRecord(
            id=job_id or self.new_id(),
            collection=collection,
            user=user,
            files=tuple(str(f) for f in files),
            total=len(files) if total is None else total,
            created_at=now,
            updated_at=now,
            owner=self._owner,
            kind=kind,
            output=str(output) if output else None,
        )
        self._write(record)
        self._pool.submit(self._run, record)
        return record

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when there is no such job."""
        if len(job_id) != 32 or not set(job_id) <= _ID_CHARS:
            return None
        path = self.folder / f"{job_id}.json"
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        entry["files"] = tuple(entry.get("files", ()))
        record = JobRecord(**entry)
        if record.output and record.state == "running":
            record = replace(record, done=_lines(Path(record.output)))
        return record

    def all(self) -> list[JobRecord]:
        """Every job on record, newest first."""
        if not self.folder.is_dir():
            return []
        records = [self.get(path.stem) for path in self.folder.glob("*.json")]
        found = [record for record in records if record is not None]
        return sorted(found, key=lambda r: r.created_at, reverse=True)

    def forget_collection(self, collection: str) -> None:
        """Remove the finished jobs of a deleted collection."""
        for record in self.all():
            if record.collection == collection and record.finished:
                (self.folder / f"{record.id}.json").unlink(missing_ok=True)

    def start(self) -> None:
        """Take over the jobs of servers that are gone, then keep this server's lease renewed
        (and keep looking) in the background."""
        self.resume_orphans()
        self._heartbeat.start()

    def resume_orphans(self, now: float | None = None) -> list[JobRecord]:
        """Take over the unfinished jobs whose server is gone: run each again, or mark it failed
        when it cannot run again. `now` is the storage's time of this server's last renewal."""
        now = self.leases.renew() if now is None else now
        taken = []
        for record in self.all():
            if record.finished:
                continue
            attempt, claimer = self.leases.claimer(record.id)
            why = self.leases.gone(claimer or record.owner, now)
            if why is not None and self.leases.claim(record.id, attempt + 1):
                taken.append(self._adopt(record, attempt + 1, why))
        self.leases.sweep(now)
        return taken

    def close(self) -> None:
        self._stop.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join()
        self._pool.shutdown(wait=True, cancel_futures=False)
        self.leases.release()

    def _renew(self) -> None:
        while not self._stop.wait(self.leases.ttl_s / 4):
            try:
                self.resume_orphans(self.leases.renew())
            except Exception:  # a lease left to lapse would give this server's jobs away
                logger.exception("job lease or takeover in %s failed; next try soon", self.folder)

    def _adopt(self, record: JobRecord, attempt: int, why: str) -> JobRecord:
        """Run again (or fail) a job claimed from a server that is gone."""
        record = replace(record, owner=self._owner, attempts=attempt, updated_at=_now())
        missing = [Path(f).name for f in record.files if not Path(f).is_file()]
        if missing:
            error = f"stopped ({why}) and its files are gone ({', '.join(missing)}); submit again"
        elif attempt > MAX_ATTEMPTS:
            error = (
                f"stopped ({why}); its server stopped {attempt} times while running it, "
                "so it is not run again"
            )
        else:
            record = replace(record, state="queued")
            self._write(record)
            logger.warning("%s job %s resumed: %s", record.kind, record.id, why)
            self._pool.submit(self._run, record)
            return record
        logger.warning("%s job %s failed: %s", record.kind, record.id, error)
        return self._finish(record, "failed", error=error)

    # -- running ---------------------------------------------------------------------------

    def _run(self, record: JobRecord) -> None:
        current = replace(record, state="running", updated_at=_now())
        self._write(current)
        last_write = time.monotonic()

        def progress(done: int, total: int) -> None:
            nonlocal current, last_write
            current = replace(current, done=done, total=total, updated_at=_now())
            if done >= total or time.monotonic() - last_write >= WRITE_EVERY_S:
                self._write(current)
                last_write = time.monotonic()

        try:
            summary, details = self.runners[record.kind](record, progress)
        except RagError as e:
            self._finish(current, "failed", error=str(e))
            return
        except Exception as e:
            logger.exception("%s job %s failed", record.kind, record.id)
            self._finish(current, "failed", error=f"internal error: {type(e).__name__}: {e}")
            return
        self._finish(current, "done", summary=summary, report=details)

    def _ingest(
        self, record: JobRecord, progress: Callable[[int, int], None]
    ) -> tuple[str, dict[str, Any]]:
        job = IngestJob(self.settings, embedder=self._embedder)
        paths = [Path(f) for f in record.files]
        report = job.run_files(record.collection, paths, progress=progress)
        return report.summary(), _report_json(report)

    def _finish(
        self,
        record: JobRecord,
        state: str,
        *,
        error: str | None = None,
        summary: str = "",
        report: dict[str, Any] | None = None,
    ) -> JobRecord:
        done = record.total if state == "done" else record.done
        if record.output:
            done = _lines(Path(record.output))
        finished = replace(
            record,
            state=state,
            done=done,
            error=error,
            summary=summary,
            report=report or {},
            updated_at=_now(),
        )
        self._write(finished)
        self.leases.forget(record.id)
        return finished

    def _write(self, record: JobRecord) -> None:
        """Replace the record's file atomically: a reader sees the old record or the new."""
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / f"{record.id}.json"
            tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
            entry = asdict(record)
            entry["files"] = list(record.files)
            tmp.write_text(json.dumps(entry, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, path)


def _report_json(report: IngestReport) -> dict[str, Any]:
    return {
        "ingested": report.ingested,
        "added": report.added,
        "replaced": report.replaced,
        "unchanged": report.unchanged,
        "resumed": report.resumed,
        "pages": report.pages,
        "chunks": report.chunks,
        "failed": [{"file": Path(name).name, "reason": why} for name, why in report.failed],
        "warnings": list(report.warnings),
    }


def _lines(path: Path) -> int:
    """Complete lines in `path` (0 when it is not there yet)."""
    try:
        with path.open("rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def check_job_id(job_id: str) -> str:
    """A job id is 32 hex digits."""
    if len(job_id) != 32 or not set(job_id) <= _ID_CHARS:
        raise ConfigError(f"invalid job id {job_id!r}")
    return job_id
