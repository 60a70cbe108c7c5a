"""`rag batch`: concurrent, resumable, and a killed job loses no finished answer."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ingest.pipeline import IngestJob
from rag.batch import finished_ids, run_batch
from rag.collection import Collection
from rag.errors import ConfigError, RagError
from rag.generation import OpenAICompatibleLLM
from rag.pipeline import Answerer
from rag.questions import Question, read_questions
from rag.retrieval import Searcher
from rag.settings import Settings
from tests.conftest import batch_command, wait_for, write_squad_docs
from tests.servers.openai_compat import OpenAICompatServer


@pytest.fixture(scope="module")
def setup(tmp_path_factory, squad_paragraphs, minilm):
    root = tmp_path_factory.mktemp("batch")
    docs = write_squad_docs(root / "docs", squad_paragraphs, 20)
    settings = Settings.load(
        index_dir=root / "idx", progress=False, device="cpu", rerank=False, answer_mode="llm"
    )
    IngestJob(settings, embedder=minilm).run_files("squad", docs)
    questions = [
        Question(f"q{n}", str(p["questions"][0]), answer=None)
        for n, p in enumerate(squad_paragraphs[:20:2])
    ]
    collection = Collection.open(settings.index_dir, "squad")
    yield settings, collection, questions
    collection.close()


def answerer_for(setup, minilm, server: OpenAICompatServer, retries: int = 2) -> Answerer:
    settings, collection, _ = setup
    llm_settings = settings.model_copy(
        update={
            "llm_base_url": server.base_url,
            "llm_model": "test/echo",
            "llm_max_retries": retries,
        }
    )
    llm = OpenAICompatibleLLM.from_settings(llm_settings)
    return Answerer(Searcher(collection, settings, embedder=minilm), llm, settings)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_read_questions_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text(
        '{"id": "a", "question": "Who?"}\n\n{"id": 2, "question": "Why?", "page": 3}\n'
    )
    assert [q.id for q in read_questions(jsonl)] == ["a", "2"]
    assert read_questions(jsonl)[1].page == 3
    table = tmp_path / "q.csv"
    table.write_text("id,question,answer\nx,What is it?,a thing\n")
    assert read_questions(table) == [Question("x", "What is it?", answer="a thing")]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("q.jsonl", '{"id": "a"}\n', r"q.jsonl line 1: needs both 'id' and 'question'"),
        (
            "q.jsonl",
            '{"id": "a", "question": "x"}\n{"id": "a", "question": "y"}\n',
            "line 2: duplicate id 'a'",
        ),
        ("q.jsonl", "{not json\n", r"q.jsonl line 1: not JSON"),
        ("q.txt", "x", r"unsupported question file 'q.txt' \(use .jsonl, .csv\)"),
        ("q.jsonl", "\n", "holds no questions"),
    ],
)
def test_bad_question_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_questions(path)


def test_batch_answers_all_then_resumes_with_nothing_to_do(
    setup, minilm, server, tmp_path: Path
) -> None:
    _, _, questions = setup
    out = tmp_path / "answers.jsonl"
    report = run_batch(
        answerer_for(setup, minilm, server), questions, out, concurrency=3, progress=False
    )
    again = run_batch(
        answerer_for(setup, minilm, server), questions, out, concurrency=3, progress=False
    )
    assert (report.answered, report.failed) == (len(questions), 0)
    assert (again.skipped, again.answered) == (len(questions), 0)
    records = lines(out)
    assert sorted(r["id"] for r in records) == sorted(q.id for q in questions)
    assert all(r["error"] is None and "citations" in r and "sentences" in r for r in records)
    summary = (tmp_path / "answers.csv").read_text().splitlines()
    assert (
        summary[0].startswith("id,refused,error,citations") and len(summary) == len(questions) + 1
    )


def test_a_failing_question_is_recorded_and_the_batch_goes_on(
    setup, minilm, server, tmp_path: Path
) -> None:
    _, _, questions = setup
    out = tmp_path / "answers.jsonl"
    server.fail_next(500, times=1)
    report = run_batch(answerer_for(setup, minilm, server, retries=0), questions[:4], out, 1, False)
    assert (report.failed, report.answered) == (1, 3)
    failed = [r for r in lines(out) if r["error"]]
    assert len(failed) == 1 and "answered HTTP 500" in failed[0]["error"]
    assert failed[0]["question"]


def test_several_gold_answers_and_the_gold_paragraph(setup, minilm, server, tmp_path: Path) -> None:
    from rag.answer_eval import evaluate_answers

    qfile = tmp_path / "q.jsonl"
    record = {
        "id": "sb",
        "question": "Which NFL team represented the AFC at Super Bowl 50?",
        "answer": ["Denver Broncos", "the Broncos"],
        "document": "p000.md",
        "page": 1,
        "paragraph": "Super Bowl 50 was an American football game ...",
    }
    qfile.write_text(json.dumps(record) + "\n")
    [question] = read_questions(qfile)
    assert question.answer == ("Denver Broncos", "the Broncos")
    assert question.paragraph == record["paragraph"]
    out = tmp_path / "answers.jsonl"
    run_batch(answerer_for(setup, minilm, server), [question], out, 1, False)
    [answer] = lines(out)
    # Written as a JSON list, so that scoring takes the best of the gold answers.
    assert answer["gold_answer"] == ["Denver Broncos", "the Broncos"]
    assert (answer["gold_document"], answer["gold_page"]) == ("p000.md", 1)
    assert evaluate_answers([{**answer, "answer": "The Broncos."}])["exact_match"] == 1.0


def test_ctrl_c_drops_the_queued_questions(tmp_path: Path) -> None:
    release = threading.Event()
    calls: list[str] = []
    main = threading.main_thread().ident
    assert main is not None

    def wait_until_main_thread_in(function: str) -> None:
        for _ in range(1000):
            frame = sys._current_frames().get(main)
            while frame is not None and frame.f_code.co_name != function:
                frame = frame.f_back
            if frame is not None:
                return
            time.sleep(0.01)

    class PressesCtrlC:
        """The first question sends SIGINT to the main thread, as a terminal's Ctrl-C does; every
        question then waits, so that nothing but the cancelled queue can keep the count down."""

        def ask(self, question: str):
            calls.append(question)
            if len(calls) == 1:
                wait_until_main_thread_in("as_completed")  # every question is queued by then
                signal.pthread_kill(main, signal.SIGINT)
            release.wait(10)
            raise RagError("no answer")

    questions = [Question(f"q{n}", "Who?") for n in range(20)]
    # A job started in the background of a shell ignores SIGINT; Python's own handler is wanted.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_batch(PressesCtrlC(), questions, tmp_path / "a.jsonl", 1, progress=False)
    finally:
        signal.signal(signal.SIGINT, previous)
        release.set()
        for thread in threading.enumerate():
            if thread.name.startswith("rag-batch"):
                thread.join(30)
    # The question in flight when Ctrl-C came, and perhaps the next, started; the queue did not.
    assert 1 <= len(calls) <= 2


def test_torn_last_line_is_cut_and_redone(tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    out.write_text('{"id": "q0", "answer": "x"}\n{"id": "q1", "ans')
    assert finished_ids(out) == {"q0"}
    assert out.read_text() == '{"id": "q0", "answer": "x"}\n'


@pytest.mark.slow
def test_sigkill_loses_no_finished_answer(setup, squad_paragraphs, tmp_path: Path) -> None:
    settings, _, questions = setup
    out = tmp_path / "answers.jsonl"
    with OpenAICompatServer(models=["test/echo"], behaviour="slow", delay=0.4) as server:
        command = batch_command(questions, tmp_path, server.base_url, "--concurrency", "2")
        env = {
            **os.environ,
            "RAG_INDEX_DIR": str(settings.index_dir),
            "RAG_RERANK": "false",
            "RAG_ANSWER_MODE": "llm",
        }
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)

        def three_answers() -> bool:
            assert process.poll() is None, process.stderr.read().decode()[-400:]
            return out.exists() and out.read_text().count("\n") >= 3

        wait_for(three_answers, 120, "no answers written")
        process.send_signal(signal.SIGKILL)
        process.wait()
        kept = finished_ids(out)
        assert len(kept) >= 3
        # Resume: the rest is answered, each question exactly once.
        rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-400:]
    assert f"{len(kept)} already done" in rerun.stdout
    ids = [r["id"] for r in lines(out)]
    assert sorted(ids) == sorted(q.id for q in questions)


def test_summary_cells_a_spreadsheet_would_run_are_written_as_text(
    setup, minilm, server, tmp_path: Path
) -> None:
    _, _, questions = setup
    ids = ['=HYPERLINK("http://127.0.0.1/x","open")', "+1", "-2", "@SUM(A1)", "plain"]
    asked = [Question(i, q.question, answer=None) for i, q in zip(ids, questions, strict=False)]
    out = tmp_path / "answers.jsonl"
    run_batch(answerer_for(setup, minilm, server), asked, out, concurrency=2, progress=False)
    with (tmp_path / "answers.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["id"] for r in rows) == sorted("'" + i if i[0] in "=+-@" else i for i in ids)
    assert all(r["answer"] and not r["answer"].startswith(("=", "+", "-", "@")) for r in rows)
    # The answers file keeps the ids as the questions file gave them, so a rerun resumes.
    assert sorted(r["id"] for r in lines(out)) == sorted(ids)
    again = run_batch(answerer_for(setup, minilm, server), asked, out, 2, False)
    assert (again.skipped, again.answered) == (len(ids), 0)
