"""`rag tune` from the command line: one-line errors, and Ctrl-C then resume in a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.cli import cli
from tests.conftest import REPO, wait_for, write_squad_docs


def test_tune_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"RAG_INDEX_DIR": str(tmp_path / "idx")}
    result = runner.invoke(cli, ["tune", "reranker", "-c", "nothing"], env=env)
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("Error: no collection named 'nothing'")
    result = runner.invoke(cli, ["tune", "retriever", "-c", "x", "--loss", "mnrl"], env=env)
    assert result.exit_code == 2 and "No such option '--loss'" in result.stderr


@pytest.mark.slow
def test_ctrl_c_keeps_the_best_checkpoint_and_the_same_command_resumes(
    tmp_path: Path, squad_paragraphs, minilm
) -> None:
    from ingest.pipeline import IngestJob
    from rag.settings import Settings

    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 10)
    settings = Settings.load(index_dir=tmp_path / "idx", progress=False, device="cpu")
    IngestJob(settings, embedder=minilm).run_files("c", docs)
    queries, qrels = tmp_path / "q.jsonl", tmp_path / "r.tsv"
    queries.write_text(
        "".join(
            json.dumps({"_id": str(n), "text": p["questions"][0]}) + "\n"
            for n, p in enumerate(squad_paragraphs[:10])
        )
    )
    qrels.write_text("".join(f"{n}\t{doc.stem}\t1\n" for n, doc in enumerate(docs)))
    command = [
        sys.executable,
        "-m",
        "rag.cli",
        "tune",
        "reranker",
        "-c",
        "c",
        "--queries",
        str(queries),
        "--qrels",
        str(qrels),
        "--max-steps",
        "6",
        "--batch-size",
        "1",
        "--max-length",
        "48",
        "--negatives",
        "1",
        "--held-out",
        "0.3",
        "--no-progress",
        "--json",
    ]
    env = {
        **os.environ,
        "RAG_INDEX_DIR": str(tmp_path / "idx"),
        "RAG_EMBED_BACKEND": "torch",
        "RAG_DEVICE": "cpu",
        "RAG_RERANK_DEPTH": "5",
        "RAG_TORCH_THREADS": "1",
    }
    checkpoints = tmp_path / "idx" / "c" / "tune" / "reranker" / "checkpoints"
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(
        lambda: (
            bool(list(checkpoints.glob("checkpoint-*/trainer_state.json")))
            or process.poll() is not None
        ),
        600,
        "no checkpoint appeared",
        poll_s=0.2,
    )
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    first = json.loads(out)
    card = first["card"]["training"]
    if card["interrupted"]:
        assert first["message"].startswith("interrupted at step")
        assert card["best_checkpoint"].startswith("checkpoint-") and card["steps"] < 6
        # The work folder stays for a resume; the same command picks it up and finishes.
        assert checkpoints.is_dir()
        again = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=True
        )
        second = json.loads(again.stdout)["card"]["training"]
        assert second["resumed_from"].startswith("checkpoint-")
        assert second["interrupted"] is False and second["steps"] == 6
    assert not checkpoints.exists()
