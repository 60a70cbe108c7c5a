"""Answers files read back for scoring: the records `rag batch` wrote, refused in one line when a
line is not one of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.answer_eval import load_records
from rag.errors import ConfigError
from rag.questions import answer_records, read_answers


def answers(path: Path, *records: dict, tail: str = "") -> Path:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records) + tail, encoding="utf-8"
    )
    return path


def test_the_records_come_back_as_written(tmp_path: Path) -> None:
    written = [
        {"id": "q1", "answer": "Denver Broncos [1].", "error": None},
        {"id": "q\u2028two", "answer": "", "error": "timed out"},  # U+2028 ends no JSON line
    ]
    path = answers(tmp_path / "a.jsonl", *written, tail="\n")
    assert read_answers(path) == written
    assert load_records(path) == written


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "q1"}\n[1, 2]\n', r"a\.jsonl line 2: not a JSON object, so it is not an answers"),
        ('{"id": "q1"}\n{"answer": "x"}\n', r"a\.jsonl line 2: no 'id'"),
        ('{"id": 7}\n', r"a\.jsonl line 1: its 'id' is not text"),
        ('{"id": "q1"}\n{"id": "q2", "ans', r"a\.jsonl line 2: an unfinished last line \(a rag"),
        ('{"id": "q1"}\nnotes', r"a\.jsonl line 2: an unfinished last line that rag batch did"),
    ],
)
def test_a_line_that_is_not_a_record_is_one_error_naming_it(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as raised:
        read_answers(path)
    assert "\n" not in str(raised.value)


def test_a_torn_last_line_is_left_to_the_writer_to_cut(tmp_path: Path) -> None:
    data = b'{"id": "q1"}\n{"id": "q2", "ans'
    records, end = answer_records(data, "a.jsonl")
    assert records == [{"id": "q1"}] and data[end:] == b'{"id": "q2", "ans'


def test_missing_empty_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="answers file not found"):
        read_answers(tmp_path / "none.jsonl")
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        read_answers(tmp_path)
    empty = answers(tmp_path / "empty.jsonl", tail="\n\n")
    assert read_answers(empty) == []
    with pytest.raises(ConfigError, match="holds no answers"):
        load_records(empty)
