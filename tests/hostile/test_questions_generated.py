"""Generated questions and answers files (hypothesis): each is read as valid questions (or ids),
or refused with a one-line ConfigError; never any other exception, and a refused answers file is
left as it was."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.batch import finished_ids
from rag.errors import ConfigError
from rag.questions import Question, read_questions

GENERATED = settings(max_examples=100, deadline=None)
# Text with everything a JSON string can carry: controls, U+2028, NEL and lone surrogates.
ANY_TEXT = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=12)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(ANY_TEXT, children, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = ("id", "question", "answer", "document", "page", "paragraph")
# Mostly records with an id and a question, so that the other fields are reached too.
RECORDS = st.one_of(
    st.fixed_dictionaries(
        {"id": st.text(min_size=1) | st.integers(), "question": st.text(min_size=1)},
        optional={name: JSON_VALUES for name in ("answer", "document", "page", "paragraph")},
    ),
    st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=6),
    JSON_VALUES,
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One folder for every example: hypothesis runs them all in one call of the test.
    return tmp_path_factory.mktemp("generated")


def read_or_refused(path: Path) -> list[Question] | None:
    """The questions in `path`, checked; None when refused in one line."""
    try:
        questions = read_questions(path)
    except ConfigError as e:
        assert str(e) and "\n" not in str(e), str(e)
        return None
    assert questions and len({q.id for q in questions}) == len(questions)
    for q in questions:
        assert isinstance(q, Question)
        assert q.id and q.id == q.id.strip() and q.question and q.question == q.question.strip()
        assert q.page is None or (type(q.page) is int and q.page >= 1)
        golds = q.answer if isinstance(q.answer, tuple) else (q.answer,)
        assert all(g is None or isinstance(g, str) for g in golds)
        texts = [q.id, q.question, q.document or "", q.paragraph or "", *(g or "" for g in golds)]
        for text in texts:
            text.encode("utf-8")  # each one can be written to the answers file
    return questions


@GENERATED
@given(records=st.lists(RECORDS, max_size=5), ascii_only=st.booleans(), blank=st.booleans())
def test_generated_jsonl_questions(folder: Path, records, ascii_only: bool, blank: bool) -> None:
    lines = [json.dumps(record, ensure_ascii=ascii_only) for record in records]
    if blank:
        lines.insert(len(lines) // 2, "   ")
    path = folder / "q.jsonl"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    questions = read_or_refused(path)
    if questions is not None:  # every record that reads is one question, in order
        assert len(questions) == len(records)


@GENERATED
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".jsonl", ".csv"]))
def test_generated_bytes(folder: Path, data: bytes, suffix: str) -> None:
    path = folder / f"q{suffix}"
    path.write_bytes(data)
    read_or_refused(path)


@GENERATED
@given(
    header=st.lists(st.sampled_from([*FIELDS, " id", "Question", "", "x"]), max_size=7),
    rows=st.lists(st.lists(st.text(max_size=8), max_size=8), max_size=4),
    bom=st.booleans(),
)
def test_generated_csv_questions(folder: Path, header, rows, bom: bool) -> None:
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(header)
    writer.writerows(rows)
    path = folder / "q.csv"
    path.write_bytes(("\ufeff" if bom else "").encode() + table.getvalue().encode())
    read_or_refused(path)


ANSWER_LINES = st.one_of(
    st.builds(
        lambda qid, error: json.dumps({"id": qid, "answer": "x", "error": error}),
        st.text() | st.integers(),
        st.none() | st.text(),
    ),
    JSON_VALUES.map(json.dumps),
    st.binary(max_size=30).map(lambda b: b.decode("latin-1")),
)


@GENERATED
@given(lines=st.lists(ANSWER_LINES, max_size=5), tail=st.binary(max_size=20))
def test_generated_answers_files(folder: Path, lines: list[str], tail: bytes) -> None:
    path = folder / "answers.jsonl"
    complete = "".join(line.replace("\n", " ") + "\n" for line in lines).encode("utf-8")
    data = complete + tail.replace(b"\n", b" ")
    path.write_bytes(data)
    try:
        done = finished_ids(path)
    except ConfigError as e:
        assert str(e) and "\n" not in str(e), str(e)
        assert path.read_bytes() == data  # nothing cut from a file refused
        return
    assert all(isinstance(qid, str) for qid in done)
    assert path.read_bytes() == complete  # at most the unfinished last line was cut
