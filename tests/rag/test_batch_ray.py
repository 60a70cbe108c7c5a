"""`rag batch --engine ray`: the local batch's file, records and resumability, on Ray workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag.batch import finished_ids, run_batch, run_batch_on_ray
from rag.collection import Collection
from rag.errors import CollectionError, EmbedderMismatchError
from rag.generation import make_llm
from rag.pipeline import Answerer
from rag.questions import Question
from rag.retrieval import Searcher
from rag.settings import Settings
from tests.conftest import REPO, batch_collection, batch_command, wait_for
from tests.servers.openai_compat import OpenAICompatServer


@pytest.fixture(scope="module")
def setup(tmp_path_factory, squad_paragraphs, minilm, server):
    """A real collection, settings that answer from the loopback server, and ten questions."""
    root = tmp_path_factory.mktemp("batch-ray")
    settings = batch_collection(root, squad_paragraphs, minilm, server.base_url, 20, 3)
    questions = [
        Question(f"q{n}", str(p["questions"][0]), answer="gold")
        for n, p in enumerate(squad_paragraphs[:20:2])
    ]
    return settings, questions


def run_locally(settings: Settings, questions: list[Question], out: Path):
    """The local engine, built as `rag batch` builds it."""
    collection = Collection.open(settings.index_dir, "squad")
    try:
        answerer = Answerer(Searcher(collection, settings), make_llm(settings), settings)
        return run_batch(answerer, questions, out, settings.llm_concurrency, progress=False)
    finally:
        collection.close()


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def without_timings(records: list[dict]) -> dict[str, dict]:
    return {r["id"]: {k: v for k, v in r.items() if k != "timings"} for r in records}


@pytest.mark.slow
def test_ray_completes_a_local_file_with_the_local_engines_records(
    ray_cluster, setup, server, tmp_path: Path
) -> None:
    settings, questions = setup
    local = tmp_path / "local.jsonl"
    run_locally(settings, questions, local)
    # Half the questions answered by the local engine, then a kill mid-write (a torn line).
    mixed = tmp_path / "mixed.jsonl"
    run_locally(settings, questions[:5], mixed)
    with mixed.open("a") as handle:
        handle.write('{"id": "q9", "answ')
    written = mixed.read_text().rsplit("\n", 1)[0] + "\n"
    asked = len(server.chat_requests())

    report = run_batch_on_ray(
        settings.model_copy(update={"engine": "ray"}), "squad", questions, mixed
    )

    assert (report.total, report.skipped, report.answered, report.failed) == (10, 5, 5, 0)
    assert len(server.chat_requests()) - asked == 5  # the finished half was not asked again
    assert mixed.read_text().startswith(written)  # appended after the local engine's lines
    records = lines(mixed)
    assert sorted(r["id"] for r in records) == sorted(q.id for q in questions)
    # Field for field what the local engine writes, gold labels included; only timings differ.
    assert without_timings(records) == without_timings(lines(local))
    assert all(r["citations"] and r["gold_answer"] == "gold" for r in records)
    summary = (tmp_path / "mixed.csv").read_text().splitlines()
    assert summary[0].startswith("id,refused,error,citations") and len(summary) == 11


@pytest.mark.slow
def test_a_worker_error_reaches_the_driver_as_itself(ray_cluster, setup, tmp_path: Path) -> None:
    settings, questions = setup
    wrong = settings.model_copy(update={"engine": "ray", "embedding_model": "other/embedder"})
    with pytest.raises(EmbedderMismatchError, match="not 'other/embedder'"):
        run_batch_on_ray(wrong, "squad", questions, tmp_path / "a.jsonl")
    assert finished_ids(tmp_path / "a.jsonl") == set()


def test_an_unknown_collection_fails_on_the_driver(setup, tmp_path: Path) -> None:
    settings, questions = setup
    with pytest.raises(
        CollectionError, match=r"no collection named 'nope' .*\(collections: squad\)"
    ):
        run_batch_on_ray(settings, "nope", questions, tmp_path / "a.jsonl")


@pytest.mark.slow
def test_cli_on_ray_ctrl_c_then_resume(ray_cluster, setup, tmp_path: Path) -> None:
    settings, questions = setup
    out = tmp_path / "answers.jsonl"
    command = [
        *batch_command(
            questions, tmp_path, str(settings.llm_base_url), "--index-dir", str(settings.index_dir)
        ),
        *("--engine", "ray", "--workers", "2", "--concurrency", "2"),
    ]
    # The job joins the test's Ray instance rather than starting its own.
    env = {**os.environ, "RAY_ADDRESS": ray_cluster, "RAG_RERANK": "false"}
    with OpenAICompatServer(models=["test/echo"], behaviour="slow", delay=0.5) as slow:
        to_slow = [slow.base_url if arg == settings.llm_base_url else arg for arg in command]
        process = subprocess.Popen(
            to_slow,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
            # A job started in the background of a shell ignores SIGINT; a terminal's is wanted.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

        def two_answers() -> bool:
            assert process.poll() is None, process.stderr.read()[-600:] if process.stderr else ""
            return out.exists() and out.read_text().count("\n") >= 2

        wait_for(two_answers, 120, "no answers written")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        asked = len(slow.chat_requests())
        time.sleep(1.0)
        # Stopped: the queue was never sent, and the workers are gone.
        assert len(slow.chat_requests()) == asked
    assert process.returncode == 130, stderr[-600:]
    assert "Interrupted." in stderr
    kept = finished_ids(out)
    assert 2 <= len(kept) < len(questions)
    assert asked <= len(kept) + 2  # at most the two in flight were lost

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-600:]
    assert f"{len(kept)} already done" in rerun.stdout
    assert sorted(r["id"] for r in lines(out)) == sorted(q.id for q in questions)


def test_local_batch_never_imports_ray(setup, tmp_path: Path) -> None:
    settings, questions = setup
    command = batch_command(
        questions[:2], tmp_path, str(settings.llm_base_url), "--index-dir", str(settings.index_dir)
    )
    script = (
        "import sys\n"
        "from rag.cli import cli\n"
        f"cli.main({command[3:]!r}, standalone_mode=False)\n"
        "print('ray imported' if 'ray' in sys.modules else 'no ray')\n"
    )
    env = {**os.environ, "RAG_RERANK": "false"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-600:]
    assert done.stdout.splitlines()[-1] == "no ray"
    assert len(finished_ids(tmp_path / "answers.jsonl")) == 2
