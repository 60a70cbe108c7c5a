"""Batch question answering: a question file in, one JSON line per answer out, resumable.

    questions = read_questions(Path("questions.jsonl"))
    report = run_batch(answerer, questions, Path("answers.jsonl"), concurrency=4)

Each finished answer is appended as one line and flushed to disk before the next is written, so a
job killed at any point keeps every finished answer. A torn last line is cut off when the job
starts again, and questions already answered are skipped.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rag.errors import ConfigError, RagError
from rag.pipeline import Answerer

logger = logging.getLogger(__name__)

QUESTION_SUFFIXES = (".jsonl", ".csv")


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


@dataclass
class BatchReport:
    total: int = 0
    skipped: int = 0
    answered: int = 0
    refused: int = 0
    failed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.total} questions: {self.answered} answered ({self.refused} refused), "
            f"{self.failed} failed, {self.skipped} already done"
        )


def read_questions(path: Path) -> list[Question]:
    """Questions from JSONL or CSV with at least `id` and `question` per record."""
    if not path.is_file():
        raise ConfigError(f"question file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in QUESTION_SUFFIXES:
        raise ConfigError(
            f"unsupported question file {path.name!r} (use {', '.join(QUESTION_SUFFIXES)})"
        )
    records: list[tuple[int, dict[str, Any]]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        if suffix == ".csv":
            records = [(n, dict(row)) for n, row in enumerate(csv.DictReader(handle), start=2)]
        else:
            for n, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        records.append((n, json.loads(line)))
                    except json.JSONDecodeError as e:
                        raise ConfigError(f"{path.name} line {n}: not JSON ({e.msg})") from e
    questions: list[Question] = []
    seen: set[str] = set()
    for n, record in records:
        if not isinstance(record, dict):
            raise ConfigError(f"{path.name} line {n}: expected an object with id and question")
        qid, text = str(record.get("id") or "").strip(), str(record.get("question") or "").strip()
        if not qid or not text:
            raise ConfigError(f"{path.name} line {n}: needs both 'id' and 'question'")
        if qid in seen:
            raise ConfigError(f"{path.name} line {n}: duplicate id {qid!r}")
        seen.add(qid)
        page = record.get("page")
        answer = record.get("answer")
        questions.append(
            Question(
                id=qid,
                question=text,
                answer=(
                    tuple(str(a) for a in answer)
                    if isinstance(answer, list)
                    else str(answer)
                    if answer not in (None, "")
                    else None
                ),
                document=str(record["document"]) if record.get("document") else None,
                page=int(page) if page not in (None, "") else None,
                paragraph=str(record["paragraph"]) if record.get("paragraph") else None,
            )
        )
    if not questions:
        raise ConfigError(f"{path} holds no questions")
    return questions


def finished_ids(out: Path) -> set[str]:
    """Ids already in the answers file; a torn last line (killed mid-write) is cut off first."""
    if not out.exists():
        return set()
    data = out.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        logger.warning("%s: dropping an unfinished last line", out)
        with out.open("r+b") as handle:
            handle.truncate(end)
    done = set()
    for line in data[:end].splitlines():
        if line.strip():
            done.add(str(json.loads(line)["id"]))
    return done


def _answer(answerer: Answerer, question: Question) -> dict[str, Any]:
    record: dict[str, Any] = {"id": question.id}
    try:
        record.update(answerer.ask(question.question).to_json())
        record["error"] = None
    except RagError as e:
        record.update({"question": question.question, "error": str(e)})
    except Exception as e:
        logger.debug("question %s failed", question.id, exc_info=True)
        record.update({"question": question.question, "error": f"{type(e).__name__}: {e}"})
    if question.answer is not None:
        gold = question.answer
        record["gold_answer"] = list(gold) if isinstance(gold, tuple) else gold
    if question.document is not None:
        record["gold_document"] = question.document
        record["gold_page"] = question.page
    return record


def run_batch(
    answerer: Answerer,
    questions: Iterable[Question],
    out: Path,
    concurrency: int = 4,
    progress: bool = True,
) -> BatchReport:
    """Answer every question not yet in `out`, `concurrency` at a time, appending as they finish."""
    questions = list(questions)
    done = finished_ids(out)
    todo = [q for q in questions if q.id not in done]
    report = BatchReport(total=len(questions), skipped=len(questions) - len(todo))
    out.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(
        total=len(todo), unit="q", desc="answering", disable=not progress, dynamic_ncols=True
    )
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="rag-batch")
    finished = False
    try:
        with bar, out.open("a", encoding="utf-8") as sink:
            futures = [pool.submit(_answer, answerer, q) for q in todo]
            for future in as_completed(futures):
                record = future.result()
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
                sink.flush()
                os.fsync(sink.fileno())
                if record["error"]:
                    report.failed += 1
                    report.errors.append((record["id"], record["error"]))
                else:
                    report.answered += 1
                    report.refused += bool(record.get("refused"))
                bar.set_postfix_str(f"{report.failed} failed", refresh=False)
                bar.update(1)
        finished = True
    finally:
        # On Ctrl-C the queued questions are dropped, not answered into the void: only those in
        # flight finish (their answers are lost; a rerun asks them again).
        pool.shutdown(wait=finished, cancel_futures=not finished)
    write_summary(out)
    return report


def write_summary(out: Path) -> Path:
    """A CSV beside the answers: one row per question with the headline numbers."""
    path = out.with_suffix(".csv")
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["id", "refused", "error", "citations", "sentences", "supported", "total_s", "answer"]
        )
        for row in rows:
            sentences = row.get("sentences") or []
            writer.writerow(
                [
                    row["id"],
                    row.get("refused"),
                    row.get("error") or "",
                    len(row.get("citations") or []),
                    len(sentences),
                    sum(bool(s.get("supported")) for s in sentences),
                    (row.get("timings") or {}).get("total_s", ""),
                    row.get("answer", ""),
                ]
            )
    return path
