"""Hostile input to `rag batch`: paths that would replace a user's file, two writers, a full disk,
odd question and answers files. Each is refused in one line before any question is answered, and
the user's files are byte-identical afterwards; or it is accepted and answered."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rag.batch import finished_ids, run_batch
from rag.cli import cli
from rag.collection import Collection
from rag.errors import ConfigError, RagError
from rag.generation import make_llm
from rag.pipeline import Answerer
from rag.questions import Question, read_questions
from rag.retrieval import Searcher
from rag.settings import Settings
from tests.conftest import batch_collection, batch_command
from tests.hostile.faults import fill_disk, small_disk


@pytest.fixture(scope="module")
def setup(tmp_path_factory, squad_paragraphs, minilm, server):
    """A real collection, settings that answer from the loopback server, and five questions."""
    root = tmp_path_factory.mktemp("batch-hostile")
    settings = batch_collection(root, squad_paragraphs, minilm, server.base_url, 10, 2)
    questions = [
        Question(f"q{n}", str(p["questions"][0])) for n, p in enumerate(squad_paragraphs[:10:2])
    ]
    return settings, questions


def write_questions(path: Path, questions: list[Question], **extra: object) -> Path:
    path.write_text(
        "".join(json.dumps({"id": q.id, "question": q.question, **extra}) + "\n" for q in questions)
    )
    return path


def rag_batch(
    settings: Settings, questions: Path, out: Path | str, *options: str, **env: str
) -> Result:
    """`rag batch` in this process, answered by the loopback server."""
    args = ["batch", str(questions), "-c", "squad", "-o", str(out), "--no-progress"]
    args += ["--index-dir", str(settings.index_dir), "--backend", "openai"]
    args += ["--base-url", str(settings.llm_base_url), "--model", "test/echo", *options]
    result = CliRunner().invoke(
        cli, args, env={"RAG_RERANK": "false", "RAG_ANSWER_MODE": "llm", **env}
    )
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def refused(exit_code: int, stderr: str, message: str) -> None:
    """Exit status 1 and one line on stderr: `Error: ` then `message` (a regex) to its end."""
    assert exit_code == 1, stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert re.fullmatch(f"Error: {message}", stderr.strip()), stderr


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every entry under `folder`, files with their bytes: what a refused run must not change."""
    return {
        str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
    }


def records(path: Path) -> list[dict]:
    # Only "\n" ends a record: str.splitlines would also cut at a U+2028 inside one.
    return [json.loads(line) for line in path.read_text().split("\n")[:-1]]


def ids(path: Path) -> list[str]:
    return [record["id"] for record in records(path)]


CLASHES = {
    # name: (files to write first, questions file, -o, the one-line error)
    "the summary is the questions file": (
        {"qs.csv": "id,question\nq0,Who?\n"},
        "qs.csv",
        "qs.jsonl",
        r"the summary \S+/qs\.csv would replace the questions file: answer into a file of "
        "another name",
    ),
    "the answers file is the questions file": (
        {},
        "qs.jsonl",
        "qs.jsonl",
        r"the answers file \S+/qs\.jsonl is the questions file: answer into another file",
    ),
    "the answers file is a link to the questions file": (
        {"link.jsonl": "->qs.jsonl"},
        "qs.jsonl",
        "link.jsonl",
        r"the answers file \S+/link\.jsonl is the questions file: answer into another file",
    ),
    "the answers file is a CSV": (
        {},
        "qs.jsonl",
        "answers.csv",
        r"the answers file must end in \.jsonl, not '\S+/answers\.csv' \(a \.csv summary goes "
        r"beside it\)",
    ),
    "an empty answers path": (
        {},
        "qs.jsonl",
        "",
        r"the answers file must end in \.jsonl, not '\.' \(a \.csv summary goes beside it\)",
    ),
    "the answers file is a folder": (
        {"answers.jsonl/": ""},
        "qs.jsonl",
        "answers.jsonl",
        r"the answers file \S+/answers\.jsonl is a folder or a device, not a file",
    ),
    "a JSONL file rag batch did not write": (
        {"notes.jsonl": '{"id": "n1", "text": "keep me"}\n'},
        "qs.jsonl",
        "notes.jsonl",
        r"notes\.jsonl line 1: no 'error', so it is not an answers file of rag batch or that line "
        "is damaged: repair or delete the line, or answer into another file",
    ),
    "a file whose only line is unfinished": (
        {"notes.jsonl": '{"note": "keep me"}'},
        "qs.jsonl",
        "notes.jsonl",
        r"notes\.jsonl line 1: an unfinished last line that rag batch did not write: end it with "
        "a newline or delete it, or answer into another file",
    ),
    "a damaged line in the middle of an answers file": (
        {
            "answers.jsonl": '{"id": "q0", "error": null}\n{"id": "q1", "err\n'
            '{"id": "q2", "error": null}\n'
        },
        "qs.jsonl",
        "answers.jsonl",
        r"answers\.jsonl line 2: not a JSON object, so it is not an answers file of rag batch or "
        "that line is damaged: repair or delete the line, or answer into another file",
    ),
    "a spreadsheet where the summary goes": (
        {"answers.csv": "name,total\nrent,1200\n"},
        "qs.jsonl",
        "answers.jsonl",
        r"\S+/answers\.csv exists and is not a rag batch summary, which is written beside the "
        "answers: move it away or answer into another file",
    ),
}


@pytest.mark.parametrize("case", list(CLASHES))
def test_an_output_that_would_replace_a_file_is_refused_before_any_question(
    setup, server, tmp_path: Path, case: str
) -> None:
    settings, questions = setup
    files, qfile, out, message = CLASHES[case]
    write_questions(tmp_path / "qs.jsonl", questions[:2])
    for name, content in files.items():
        if name.endswith("/"):
            (tmp_path / name).mkdir()
        elif content.startswith("->"):
            (tmp_path / name).symlink_to(tmp_path / content[2:])
        else:
            (tmp_path / name).write_text(content)
    before, asked = snapshot(tmp_path), len(server.chat_requests())

    result = rag_batch(settings, tmp_path / qfile, tmp_path / out if out else "")

    refused(result.exit_code, result.stderr, message)
    assert snapshot(tmp_path) == before
    assert len(server.chat_requests()) == asked


@pytest.fixture(scope="module")
def answerer(setup):
    """The answerer `rag batch` builds, for runs through the library."""
    settings, _ = setup
    collection = Collection.open(settings.index_dir, "squad")
    yield Answerer(Searcher(collection, settings), make_llm(settings), settings)
    collection.close()


def test_a_second_writer_is_refused_while_the_first_runs(setup, answerer, tmp_path: Path) -> None:
    """The first run holds the answers file from before it reads which ids are done until its
    summary is written; a second `rag batch` process into the same file stops in one line."""
    settings, questions = setup
    started, release = threading.Event(), threading.Event()

    class WaitsForTheSecondRun:
        def ask(self, question: str):
            started.set()
            release.wait(120)
            return answerer.ask(question)

    out = tmp_path / "answers.jsonl"
    reports = []
    first = threading.Thread(
        target=lambda: reports.append(run_batch(WaitsForTheSecondRun(), questions, out, 2, False))
    )
    first.start()
    try:
        assert started.wait(60), "the first run never asked a question"
        command = batch_command(questions, tmp_path, str(settings.llm_base_url))
        env = {
            **os.environ,
            "RAG_INDEX_DIR": str(settings.index_dir),
            "RAG_RERANK": "false",
            "RAG_ANSWER_MODE": "llm",
        }
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    finally:
        release.set()
        first.join(120)
    refused(
        second.returncode,
        second.stderr,
        r"\S+/answers\.jsonl is being written by another rag batch; wait for it to finish or "
        "answer into another file",
    )
    assert (reports[0].answered, reports[0].failed) == (len(questions), 0)
    assert sorted(ids(out)) == sorted(q.id for q in questions)  # each once
    # The summary went through a temporary file, and the lock left nothing behind.
    assert sorted(os.listdir(tmp_path)) == ["answers.csv", "answers.jsonl", "questions.jsonl"]


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_either_engine_is_refused_while_another_run_holds_the_file(
    setup, server, tmp_path: Path, engine: str
) -> None:
    settings, questions = setup
    qfile = write_questions(tmp_path / "qs.jsonl", questions)
    out = tmp_path / "answers.jsonl"
    out.write_text('{"id": "q0", "error": null}\n')
    before, asked = snapshot(tmp_path), len(server.chat_requests())
    with out.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running `rag batch` holds it
        result = rag_batch(settings, qfile, out, "--engine", engine)
    refused(
        result.exit_code,
        result.stderr,
        r"\S+/answers\.jsonl is being written by another rag batch; wait for it to finish or "
        "answer into another file",
    )
    assert snapshot(tmp_path) == before
    assert len(server.chat_requests()) == asked


def test_a_full_disk_stops_in_one_line_keeps_the_answers_and_the_rerun_completes(
    setup, tmp_path: Path
) -> None:
    settings, questions = setup
    # Gold answers longer than a page, so that no record fits in what the full disk has left.
    first = write_questions(tmp_path / "first.jsonl", questions[:2], answer="gold " * 1000)
    every = write_questions(tmp_path / "every.jsonl", questions, answer="gold " * 1000)
    with small_disk(tmp_path / "disk", mb=8) as disk:
        out = disk / "answers.jsonl"
        assert rag_batch(settings, first, out).exit_code == 0
        written = out.read_bytes()
        ballast = fill_disk(disk)

        full = rag_batch(settings, every, out)

        refused(
            full.exit_code,
            full.stderr,
            r"cannot write to \S+/answers\.jsonl \(No space left on device\); the answers written "
            "before are kept: free some space, then run the job again to answer the rest",
        )
        assert out.read_bytes() == written  # no torn line either
        ballast.unlink()
        rerun = rag_batch(settings, every, out)
        assert rerun.exit_code == 0, rerun.output
        assert "3 answered (0 refused), 0 failed, 2 already done" in rerun.stdout
        assert sorted(ids(out)) == sorted(q.id for q in questions)
        assert len((disk / "answers.csv").read_text().splitlines()) == len(questions) + 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"id": "a", "question": "Who?", "page": "three"}',
            "line 1: 'page' must be a whole number from 1, not 'three'",
        ),
        (
            '{"id": "a", "question": "Who?", "page": 0}',
            "line 1: 'page' must be a whole number from 1, not 0",
        ),
        (
            '{"id": "a", "question": "Who?", "page": true}',
            "line 1: 'page' must be a whole number from 1, not True",
        ),
        (
            '{"id": "a", "question": "Who?", "page": 2.5}',
            "line 1: 'page' must be a whole number from 1, not 2.5",
        ),
        (
            '{"id": true, "question": "Who?"}',
            "line 1: 'id' must be text or a whole number, not True",
        ),
        (
            '{"id": ["a"], "question": "Who?"}',
            "line 1: 'id' must be text or a whole number, not a list",
        ),
        ('{"id": "a", "question": 42}', "line 1: 'question' must be text, not 42"),
        (
            '{"id": "a", "question": "Who?", "answer": {"text": "x"}}',
            "line 1: 'answer' must be text or a list of texts, not an object",
        ),
        (
            '{"id": "a", "question": "Who?", "answer": [["x"]]}',
            "line 1: 'answer' must be text or a list of texts, not a list",
        ),
        (
            '{"id": "a", "question": "Who?", "document": ["d.pdf"]}',
            "line 1: 'document' must be text, not a list",
        ),
        (
            '{"id": "a", "question": "Who\\ud800?"}',
            r"line 1: 'question' is not valid Unicode text \(surrogates not allowed\)",
        ),
        (
            '{"id": ' + "9" * 5000 + ', "question": "Who?"}',
            "line 1: a number too long to read",
        ),
        (
            '{"id": "a", "question": "Who?", "answer": ' + "[" * 50_000 + "]" * 50_000 + "}",
            "line 1: JSON nested too deeply to read",
        ),
    ],
)
def test_odd_values_in_a_questions_file_are_refused_naming_the_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text(content + "\n")
    with pytest.raises(ConfigError, match=f"^q\\.jsonl {message}$"):
        read_questions(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "q.jsonl",
            b'{"id": "a", "question": "Who?"}\n{"id": "b", "question": "Caf\xe9?"}\n',
            r"q\.jsonl line 2: not UTF-8 text \(byte 0xe9\); save the file as UTF-8",
        ),
        (
            "q.csv",
            b"id,text\na,Who?\n",
            r"q\.csv needs an 'id' and a 'question' column \(columns: \['id', 'text'\]\)",
        ),
        (
            "q.csv",
            b"id,question\na," + b"x" * 200_000 + b"\n",
            r"q\.csv line 2: not CSV \(field larger than field limit \(131072\)\)",
        ),
    ],
)
def test_unreadable_questions_files_are_refused_naming_the_line(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"^{message}$"):
        read_questions(path)


def test_a_questions_folder_is_named_as_one(tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").mkdir()
    with pytest.raises(ConfigError, match=r"^question file \S+/q\.jsonl is a folder, not a file$"):
        read_questions(tmp_path / "q.jsonl")


def test_values_a_questions_file_may_hold(tmp_path: Path) -> None:
    jsonl = tmp_path / "q.jsonl"
    records = [
        {"id": 0, "question": "Who?", "page": "3", "answer": 1990},
        {"id": "b", "question": "Line\u2028separated?", "answer": [], "page": " 7 "},
    ]
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    assert read_questions(jsonl) == [
        Question("0", "Who?", answer="1990", page=3),
        Question("b", "Line\u2028separated?", page=7),
    ]
    # A spreadsheet's CSV starts with a byte-order mark.
    table = tmp_path / "q.csv"
    table.write_bytes("\ufeffid,question,page,extra\nx,What?,2,,\n".encode())
    assert read_questions(table) == [Question("x", "What?", page=2)]


def test_a_damaged_answers_file_is_refused_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "answers.jsonl"
    damaged = b'{"id": "q0", "error": null}\n{"answer": "x", "error": null}\n{"id": "q2", "ans'
    out.write_bytes(damaged)
    with pytest.raises(ConfigError, match=r"^answers\.jsonl line 2: no 'id', so it is not an "):
        finished_ids(out)
    assert out.read_bytes() == damaged  # the unfinished line is not cut from a damaged file


def test_line_separators_in_ids_and_a_lone_surrogate_in_an_error_are_written_and_read_back(
    answerer, tmp_path: Path
) -> None:
    """JSON writes U+2028 and U+0085 as they are, and a broken reply may hold half a surrogate
    pair: neither may split a line of the answers file or stop the summary."""
    out = tmp_path / "new" / "folder" / "answers.jsonl"  # made on the way
    odd = [Question("a\u2028b", "Who won?"), Question("c\x85d", "Where?")]
    report = run_batch(answerer, odd, out, 1, progress=False)
    assert (report.answered, report.failed) == (2, 0)

    class BrokenReply:
        def ask(self, question: str):
            raise RagError("the reply held \ud83d alone")

    report = run_batch(BrokenReply(), [Question("e", "Why?")], out, 1, progress=False)
    assert report.errors == [("e", "the reply held \ud83d alone")]
    assert finished_ids(out) == {"a\u2028b", "c\x85d", "e"}
    assert records(out)[-1]["error"] == "the reply held \ud83d alone"
    with out.with_suffix(".csv").open(encoding="utf-8", newline="") as summary:
        assert [row[0] for row in csv.reader(summary)] == ["id", "a\u2028b", "c\x85d", "e"]


def test_an_id_holding_a_newline_is_reported_on_one_line(setup, server, tmp_path: Path) -> None:
    settings, questions = setup
    qfile = tmp_path / "qs.jsonl"
    forged = {"id": "a\nfailed: forged", "question": questions[0].question}
    qfile.write_text(json.dumps(forged) + "\n")
    server.fail_next(500, times=1)
    result = rag_batch(settings, qfile, tmp_path / "answers.jsonl", RAG_LLM_MAX_RETRIES="0")
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("failed: a\\nfailed: forged: ") and "HTTP 500" in line, line
