"""Whether a process still runs: for files that name the process that writes them.

if not alive(record["pid"]): ...   # the writer is gone: its work can be taken over
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def exists(pid: int) -> bool:
    """Whether a process with this id exists (a zombie included)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (one that ended, not yet reaped)."""
    if not exists(pid):
        return False
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return True
