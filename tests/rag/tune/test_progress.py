"""A tuning run's progress file: written by the run, read by another process (the chat)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rag.tune.progress import PROGRESS_FILE, TuneProgress


def test_a_run_reports_its_stage_steps_and_outcome(tmp_path: Path) -> None:
    assert TuneProgress.read(tmp_path) is None  # never tuned
    progress = TuneProgress.start(tmp_path)
    assert TuneProgress.read(tmp_path) == progress and progress.running
    progress = progress.update("training", 1, 40)
    assert TuneProgress.read(tmp_path).describe() == (
        "reranker training in the background: training, step 1 of 40"
    )
    # Steps in quick succession are not all written (the file is for people)...
    assert progress.update("training", 2, 40) is progress
    # ...but the last step and every change of stage are.
    progress = progress.update("training", 40, 40).update("measuring")
    assert TuneProgress.read(tmp_path).stage == "measuring"
    progress.finish("registered")
    read = TuneProgress.read(tmp_path)
    assert read.finished and not read.running
    assert read.describe() == "reranker training finished: registered"
    assert not list((tmp_path / PROGRESS_FILE).parent.glob(".*.tmp"))


def test_a_run_whose_process_is_gone_is_stopped_not_running(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    (tmp_path / PROGRESS_FILE).parent.mkdir(parents=True)
    (tmp_path / PROGRESS_FILE).write_text(
        json.dumps({"stage": "training", "done": 5, "total": 9, "pid": int(gone.stdout)})
    )
    progress = TuneProgress.read(tmp_path)
    assert progress is not None and not progress.running
    assert progress.describe() == "reranker training stopped while training; run it again to resume"


def test_an_unreadable_file_is_no_progress(tmp_path: Path) -> None:
    (tmp_path / PROGRESS_FILE).parent.mkdir(parents=True)
    (tmp_path / PROGRESS_FILE).write_text("{not json")
    assert TuneProgress.read(tmp_path) is None
    (tmp_path / PROGRESS_FILE).write_text(json.dumps({"unknown": 1}))
    assert TuneProgress.read(tmp_path) is None
