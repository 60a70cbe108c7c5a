"""Question files and the answers files written for them, read strictly.

    questions = read_questions(Path("questions.jsonl"))   # or .csv: id, question[, answer, ...]
    records = read_answers(Path("answers.jsonl"))         # the records `rag batch` wrote

`rag batch`, `rag eval hits` and `rag tune --questions` read question files through this module,
and `rag eval answers` reads answers files, none of them needing the answering stack. A value that
cannot be used is one ConfigError naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

QUESTION_SUFFIXES = (".jsonl", ".csv")
# How every line `rag batch` writes begins; a torn last line is a prefix of one.
RECORD_START = b'{"id": '
# An answers file's records, and the end of its last complete line.
AnswerLines = tuple[list[dict[str, Any]], int]


@dataclass(frozen=True)
class Question:
    """One question of a batch; the rest are optional gold labels.

    `answer` is one answer or several accepted ones; `paragraph` is the text of the gold passage,
    which `rag eval hits` looks for among the retrieved chunks.
    """

    id: str
    question: str
    answer: str | tuple[str, ...] | None = None
    document: str | None = None
    page: int | None = None
    paragraph: str | None = None


def read_questions(path: Path) -> list[Question]:
    """Questions from JSONL or CSV with at least `id` and `question` per record."""
    data = read_file_bytes(path, "question file")
    suffix = path.suffix.lower()
    if suffix not in QUESTION_SUFFIXES:
        raise ConfigError(
            f"unsupported question file {path.name!r} (use {', '.join(QUESTION_SUFFIXES)})"
        )
    try:
        text = data.decode("utf-8-sig")  # spreadsheets save CSV with a byte-order mark
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(
            f"{path.name} line {line}: not UTF-8 text (byte 0x{data[e.start]:02x}); "
            "save the file as UTF-8"
        ) from e
    records = _csv_records(path.name, text) if suffix == ".csv" else _jsonl_records(path.name, text)
    questions: list[Question] = []
    seen: set[str] = set()
    for n, record in records:
        question = _question(f"{path.name} line {n}", record)
        if question.id in seen:
            raise ConfigError(f"{path.name} line {n}: duplicate id {question.id!r}")
        seen.add(question.id)
        questions.append(question)
    if not questions:
        raise ConfigError(f"{path} holds no questions")
    return questions


def read_file_bytes(path: Path, what: str) -> bytes:
    """The bytes of `path`; a folder, a missing or an unreadable file is one ConfigError."""
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder, not a file")
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from e


def _jsonl_records(name: str, text: str) -> Iterator[tuple[int, Any]]:
    # Only "\n" ends a line: str.splitlines would also cut at U+2028 inside a JSON string.
    for n, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{name} line {n}: not JSON ({e.msg})") from e
            except ValueError as e:  # a number of over 4,300 digits
                raise ConfigError(f"{name} line {n}: a number too long to read") from e
            except RecursionError as e:
                raise ConfigError(f"{name} line {n}: JSON nested too deeply to read") from e


def _csv_records(name: str, text: str) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = [c.strip() for c in reader.fieldnames or ()]
        if columns and not {"id", "question"} <= set(columns):
            raise ConfigError(f"{name} needs an 'id' and a 'question' column (columns: {columns})")
        for row in reader:
            # Cells beyond the header sit under the key None; they are ignored.
            yield reader.line_num, {k.strip(): v for k, v in row.items() if isinstance(k, str)}
    except csv.Error as e:
        # DictReader's own count lags behind a row that fails.
        raise ConfigError(f"{name} line {reader.reader.line_num}: not CSV ({e})") from e


def _question(where: str, record: Any) -> Question:
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: expected an object with id and question")
    qid = _text(where, "id", record.get("id"), numbers=(int,))
    text = _text(where, "question", record.get("question"))
    if not qid or not text:
        raise ConfigError(f"{where}: needs both 'id' and 'question'")
    answer = record.get("answer")
    return Question(
        id=qid,
        question=text,
        answer=(
            tuple(_text(where, "answer", a, numbers=(int, float), strip=False) for a in answer)
            if isinstance(answer, list) and answer
            else _text(where, "answer", answer, numbers=(int, float), strip=False) or None
        ),
        document=_text(where, "document", record.get("document")) or None,
        page=_page(where, record.get("page")),
        paragraph=_text(where, "paragraph", record.get("paragraph")) or None,
    )


def _text(
    where: str, key: str, value: Any, numbers: tuple[type, ...] = (), strip: bool = True
) -> str:
    """A field's text ("" when absent); a JSON number of the types `numbers` is taken as text."""
    if value is None or (value == [] and key == "answer"):
        return ""
    if isinstance(value, numbers) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        kind = {"list": "a list", "dict": "an object"}.get(type(value).__name__, f"{value!r:.40}")
        allowed = (
            " or a list of texts" if key == "answer" else " or a whole number" if numbers else ""
        )
        raise ConfigError(f"{where}: '{key}' must be text{allowed}, not {kind}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate ("\ud800"), valid JSON but not text
        raise ConfigError(f"{where}: '{key}' is not valid Unicode text ({e.reason})") from e
    return value.strip() if strip else value


def _page(where: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and re.fullmatch(r"\s*\d{1,18}\s*", value, re.ASCII):
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ConfigError(f"{where}: 'page' must be a whole number from 1, not {value!r:.40}")


# -- answers files ------------------------------------------------------------------------------


def read_answers(path: Path) -> list[dict[str, Any]]:
    """The records of an answers file `rag batch` wrote, every line of it complete."""
    data = read_file_bytes(path, "answers file")
    records, end = answer_records(data, path.name)
    if end < len(data):
        line = data.count(b"\n") + 1
        raise ConfigError(
            f"{path.name} line {line}: an unfinished last line (a rag batch still writing or "
            "stopped mid-line): run that batch again to finish the file"
        )
    return records


def answer_records(data: bytes, name: str, keys: tuple[str, ...] = ("id",)) -> AnswerLines:
    """The records in the complete lines of an answers file, and the end of the last one.

    Every line must be a record with `keys`, else the file is not ours (or damaged) and nothing may
    be appended to it or cut from it. An unfinished last line must start as every record starts.
    """
    end = data.rfind(b"\n") + 1
    records: list[dict[str, Any]] = []
    lines = data[:end].split(b"\n")
    for n, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError):  # not UTF-8, not JSON, too deep
            record = None
        if problem := _not_a_record(record, keys):
            raise ConfigError(
                f"{name} line {n}: {problem}, so it is not an answers file of rag batch or that "
                "line is damaged: repair or delete the line, or answer into another file"
            )
        records.append(record)
    tail = data[end:]
    if tail and not RECORD_START.startswith(tail[: len(RECORD_START)]):
        raise ConfigError(
            f"{name} line {len(lines)}: an unfinished last line that rag batch did not write: end "
            "it with a newline or delete it, or answer into another file"
        )
    return records, end


def _not_a_record(record: Any, keys: tuple[str, ...]) -> str:
    """Why one parsed line of an answers file is not a record with `keys`; "" when it is."""
    if not isinstance(record, dict):
        return "not a JSON object"
    if missing := [key for key in keys if key not in record]:
        return f"no {missing[0]!r}"
    return "" if isinstance(record["id"], str) else "its 'id' is not text"
