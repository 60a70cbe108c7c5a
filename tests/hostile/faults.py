"""Fault injection for the hostile tests: a disk that fills up, and a kill at a chosen point.

    with small_disk(tmp_path / "disk", mb=8) as disk:
        ballast = fill_disk(disk, leave=64 * 1024)   # only 64 KiB free from here on
        ...                                          # the job under test fails for want of space
        ballast.unlink()                             # space again

    process = subprocess.Popen([...])
    kill_when(process, lambda: staged_count(index_dir) >= 1)   # SIGKILL once the point is reached

A small disk is a real tmpfs mounted for the test (root only, as CI runs); where mounting is not
allowed the test is skipped with the reason, never faked.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REPO, wait_for

BLOCK = 64 * 1024


@contextmanager
def small_disk(path: Path, mb: int = 8) -> Iterator[Path]:
    """A fresh tmpfs of `mb` MiB mounted at `path` for the duration of the block."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small disk to fill")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={mb}m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill_disk(folder: Path, leave: int = 0, name: str = ".ballast") -> Path:
    """Write a ballast file in `folder` until the disk has only `leave` bytes free; returns it."""
    ballast = folder / name
    with ballast.open("ab") as handle:
        block = b"\0" * BLOCK
        while (room := free_bytes(folder) - leave) > 0:
            try:
                handle.write(block[: min(BLOCK, room)])
                handle.flush()
            except OSError:
                break
    return ballast


def kill_when(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float = 120
) -> None:
    """SIGKILL `process` as soon as `ready()` holds; fail the test if it ends or times out first."""

    def at_kill_point() -> bool:
        if process.poll() is not None:
            error = process.stderr.read().decode()[-500:] if process.stderr else ""
            pytest.fail(f"the process ended before the kill point: {error}")
        return ready()

    try:
        wait_for(at_kill_point, timeout, "the kill point was never reached", poll_s=0.02)
    except BaseException:
        if process.poll() is None:
            process.kill()
        raise
    process.send_signal(signal.SIGKILL)
    process.wait()


# Capabilities that let root read any file: without them, chmod 000 means unreadable even to root.
_DAC_CAPS = "-dac_override,-dac_read_search"


def unprivileged(command: list[str]) -> list[str]:
    """`command` run so that file permissions bind it: as root (CI), through `setpriv` without
    the capabilities that bypass them; as anyone else, unchanged."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: file permissions cannot be made to bind")
    return ["setpriv", f"--inh-caps={_DAC_CAPS}", f"--bounding-set={_DAC_CAPS}", *command]


def rag(
    index_dir: Path, *args: str, stdin: str | None = None, bound: bool = False
) -> subprocess.CompletedProcess[str]:
    """`rag ARGS` over `index_dir` in a subprocess, as a person runs it; with `bound`, file
    permissions bind it even as root (see `unprivileged`)."""
    command = [sys.executable, "-m", "rag.cli", *args]
    return subprocess.run(
        unprivileged(command) if bound else command,
        cwd=REPO,
        env={**os.environ, "RAG_INDEX_DIR": str(index_dir), "HF_HUB_OFFLINE": "1"},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )
