"""Where a `rag tune reranker` run is, in a small JSON file another process can read.

    progress = TuneProgress.start(collection.path)     # this process, stage "preparing"
    progress.update("training", done=120, total=400)
    progress.finish("registered")                       # or "not registered", "failed: ..."
    TuneProgress.read(collection.path)                  # the chat's sidebar, any process

The chat shows it while the demo's reranker trains in the background (`make run`), and switches
to the trained model when the manifest registers it. Written whole and renamed, so a reader never
sees half a file; a run whose process is gone is reported as stopped, not as running.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rag.processes import alive

PROGRESS_FILE = Path("tune") / "reranker-progress.json"
# Stages a run goes through, in order; a finished run's stage is its outcome instead.
STAGES = ("preparing", "training", "measuring", "warming")
# Between two writes of the training step, at least this long: the file is for people.
MIN_INTERVAL_S = 2.0


@dataclass(frozen=True)
class TuneProgress:
    """A run's stage, its steps done of total in that stage, and whether it has finished."""

    folder: str
    stage: str
    done: int = 0
    total: int = 0
    pid: int = 0
    finished: bool = False
    updated: float = 0.0

    @classmethod
    def start(cls, collection_path: Path) -> TuneProgress:
        progress = cls(str(collection_path), "preparing", pid=os.getpid(), updated=time.time())
        progress._write()
        return progress

    @classmethod
    def read(cls, collection_path: Path) -> TuneProgress | None:
        """The last run's progress for this collection (None: never tuned, or unreadable)."""
        try:
            data = json.loads((collection_path / PROGRESS_FILE).read_text(encoding="utf-8"))
            return cls(**{**data, "folder": str(collection_path)})
        except (OSError, ValueError, TypeError):
            return None

    @property
    def running(self) -> bool:
        """Unfinished, and its process is still alive."""
        return not self.finished and alive(self.pid)

    def describe(self) -> str:
        """One line for people: where the run is, or how it ended."""
        if self.finished:
            return f"reranker training finished: {self.stage}"
        if not self.running:
            return f"reranker training stopped while {self.stage}; run it again to resume"
        steps = f", step {self.done} of {self.total}" if self.total else ""
        return f"reranker training in the background: {self.stage}{steps}"

    def update(self, stage: str, done: int = 0, total: int = 0) -> TuneProgress:
        recent = time.time() - self.updated < MIN_INTERVAL_S
        if stage == self.stage and total > 0 and done < total and recent:
            return self
        updated = replace(self, stage=stage, done=done, total=total, updated=time.time())
        updated._write()
        return updated

    def finish(self, outcome: str) -> TuneProgress:
        done = replace(self, stage=outcome, finished=True, updated=time.time())
        done._write()
        return done

    def _write(self) -> None:
        path = Path(self.folder) / PROGRESS_FILE
        data = {k: v for k, v in asdict(self).items() if k != "folder"}
        with contextlib.suppress(OSError):  # progress is for people: never fail a run over it
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(data), encoding="utf-8")
            os.replace(temporary, path)
