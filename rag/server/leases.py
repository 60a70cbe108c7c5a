"""Which server process runs a job, and whether it is still there: leases on disk beside the job
records, so that replicas on other machines sharing the index folder can tell too.

    leases = Leases(index_dir / ".jobs" / "owners", ttl_s=60)   # writes this process's lease
    leases.renew()                                  # every ttl/4 s, from a background thread
    leases.gone("host:1234:9f3a0c1e")               # None, or why that owner is gone

A process's lease is `<owner>.lease`: its host, pid, the pid's start time and the machine's boot
id, rewritten on every renewal. An owner is gone when:
- it ran on this machine (same host name and boot) and its pid is not the process that wrote the
  lease: ended, or the pid reused by another process (a container restarted with the same host
  name runs its server under the same pid again, so a pid that is alive proves nothing);
- it ran on another machine and its lease has not been renewed for `ttl_s` seconds, measured on
  the storage's own clock (the modification times of its lease and of ours), not across clocks;
- it has no lease: it ended cleanly (then it finished its jobs first), or never wrote one.

Adopting a gone owner's job is claimed with a file created exclusively, one per attempt
(`<job>.<n>.claim` naming the claimer), so two replicas never both run it, and a claimer that died
too is itself seen as gone and claimed over.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import uuid
from pathlib import Path

from rag.processes import exists

LEASE = ".lease"
CLAIM = ".claim"


class Leases:
    """This process's lease, and the checks on other owners' leases and on claims of jobs."""

    def __init__(self, folder: Path, ttl_s: float) -> None:
        self.folder = folder
        self.ttl_s = ttl_s
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._boot = _boot_id()
        self._identity = {
            "host": self.host,
            "boot": self._boot,
            "pid": os.getpid(),
            "started": _started(os.getpid()),
        }
        self.renew()

    def renew(self) -> float:
        """Rewrite this process's lease; the storage's time of the write."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._lease(self.owner)
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(json.dumps(self._identity), encoding="utf-8")
        os.replace(temporary, path)
        return path.stat().st_mtime

    def release(self) -> None:
        """Remove this process's lease (it has finished its jobs)."""
        self._lease(self.owner).unlink(missing_ok=True)

    def gone(self, owner: str, now: float | None = None) -> str | None:
        """Why `owner` is gone (one line), or None while it may still be running. `now` is the
        storage's time of this process's last renewal (renewed here when not given)."""
        if owner == self.owner:
            return None
        host = owner.split(":", 1)[0]
        path = self._lease(owner)
        try:
            lease = json.loads(path.read_text(encoding="utf-8"))
            written = path.stat().st_mtime
        except (OSError, ValueError):
            return f"its server on {host} stopped"
        pid = lease.get("pid")
        if lease.get("host") == self.host and lease.get("boot") == self._boot:
            if isinstance(pid, int) and _started(pid) == lease.get("started"):
                return None
            return f"its server process (pid {pid} on {host}) is gone"
        if lease.get("host") == self.host:
            return f"{host} restarted"
        age = (self.renew() if now is None else now) - written
        if age <= self.ttl_s:
            return None
        return f"its server on {host} has not renewed its lease for {age:.0f} s"

    def sweep(self, now: float) -> None:
        """Remove the leases of owners that are gone (killed servers never remove their own)."""
        for path in self.folder.glob(f"*{LEASE}"):
            owner = path.name.removesuffix(LEASE)
            if self.gone(owner, now) is not None:
                path.unlink(missing_ok=True)

    def claimer(self, job_id: str) -> tuple[int, str | None]:
        """The latest claim on job `job_id`: its attempt number and its owner (0, None: none)."""
        attempts = []
        for path in self.folder.glob(f"{job_id}.*{CLAIM}"):
            number = path.name.removeprefix(f"{job_id}.").removesuffix(CLAIM)
            if number.isdigit():
                attempts.append(int(number))
        if not attempts:
            return 0, None
        latest = max(attempts)
        with contextlib.suppress(OSError):
            return latest, self._claim(job_id, latest).read_text(encoding="utf-8")
        return latest, ""

    def claim(self, job_id: str, attempt: int) -> bool:
        """Claim attempt `attempt` at job `job_id` for this process; False: another took it."""
        # Written whole first, then linked: link() fails when the claim exists, and a claim is
        # never seen without its owner in it.
        temporary = self.folder / f".{job_id}.{attempt}.{uuid.uuid4().hex}.tmp"
        temporary.write_text(self.owner, encoding="utf-8")
        try:
            os.link(temporary, self._claim(job_id, attempt))
        except FileExistsError:
            return False
        finally:
            temporary.unlink()
        return True

    def forget(self, job_id: str) -> None:
        """Remove the claims on a finished job."""
        for path in self.folder.glob(f"{job_id}.*{CLAIM}"):
            path.unlink(missing_ok=True)

    def _lease(self, owner: str) -> Path:
        return self.folder / f"{owner}{LEASE}"

    def _claim(self, job_id: str, attempt: int) -> Path:
        return self.folder / f"{job_id}.{attempt}{CLAIM}"


def _started(pid: int) -> str | None:
    """When process `pid` started (clock ticks after boot, from /proc), "" where there is no
    /proc but the pid exists, None when there is no such process or it is a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return "" if not Path("/proc/self").exists() and exists(pid) else None
    return None if fields[0] == "Z" else fields[19]


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""
