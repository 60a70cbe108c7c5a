"""Batch question answering: a question file in, one JSON line per answer out, resumable.

    questions = read_questions(Path("questions.jsonl"))
    report = run_batch(answerer, questions, Path("answers.jsonl"), concurrency=4)

Each finished answer is appended as one line and flushed to disk before the next is written, so a
job killed at any point keeps every finished answer. A torn last line is cut off when the job
starts again, and questions already answered are skipped.

On a Ray cluster (`rag batch --engine ray`), workers answer and this process writes the file:

    report = run_batch_on_ray(settings, "papers", questions, Path("answers.jsonl"))

Both engines write the same records through the same loop, so either one resumes the other's file.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rag.errors import ConfigError, RagError
from rag.pipeline import Answerer
from rag.settings import Settings

logger = logging.getLogger(__name__)

QUESTION_SUFFIXES = (".jsonl", ".csv")
# CPUs a Ray worker asks for: it embeds the question and verifies the answer; the LLM is remote.
WORKER_CPUS = 1.0

# Where answers come from: records as they finish, stopped early by `close()`.
Records = Generator[dict[str, Any], None, None]


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
    return _write_answers(
        questions, out, progress, lambda todo: _answer_in_threads(answerer, todo, concurrency)
    )


def run_batch_on_ray(
    settings: Settings, collection: str, questions: Iterable[Question], out: Path
) -> BatchReport:
    """`run_batch` with the questions answered by workers on a Ray cluster.

    Each worker opens `collection` from `settings.index_dir` itself, so the index folder must be
    at the same path on every node (a shared filesystem). `settings.llm_concurrency` questions
    are in flight at once, spread over the workers; this process writes the answers file.
    """
    from rag.collection import Collection

    # Relative paths would resolve against each worker's own working directory.
    settings = settings.model_copy(update={"index_dir": settings.index_dir.resolve()})
    Collection.open(settings.index_dir, collection).close()  # fail here, before Ray starts
    return _write_answers(
        questions, out, settings.progress, lambda todo: _answer_on_ray(settings, collection, todo)
    )


def _write_answers(
    questions: Iterable[Question],
    out: Path,
    progress: bool,
    answer: Callable[[list[Question]], Records],
) -> BatchReport:
    """The questions not yet in `out`, answered by `answer` and appended as records arrive."""
    questions = list(questions)
    done = finished_ids(out)
    todo = [q for q in questions if q.id not in done]
    report = BatchReport(total=len(questions), skipped=len(questions) - len(todo))
    out.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(
        total=len(todo), unit="q", desc="answering", disable=not progress, dynamic_ncols=True
    )
    # Closing the source on Ctrl-C (or any error) drops its queue at once. With nothing to do,
    # it never starts: no threads, no Ray.
    with bar, out.open("a", encoding="utf-8") as sink, closing(answer(todo)) as records:
        for record in records if todo else ():
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
    write_summary(out)
    return report


def _answer_in_threads(answerer: Answerer, todo: list[Question], concurrency: int) -> Records:
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="rag-batch")
    finished = False
    try:
        futures = [pool.submit(_answer, answerer, q) for q in todo]
        for future in as_completed(futures):
            yield future.result()
        finished = True
    finally:
        # On Ctrl-C the queued questions are dropped, not answered into the void: only those in
        # flight finish (their answers are lost; a rerun asks them again).
        pool.shutdown(wait=finished, cancel_futures=not finished)


class BatchWorker:
    """A Ray actor answering questions from one collection, several at a time (threads)."""

    def __init__(self, values: dict[str, Any], collection: str) -> None:
        self.values = values
        self.collection = collection
        self.answerer: Answerer | None = None

    def start(self) -> None:
        """Open the collection and the LLM; a RagError here reaches the driver as itself."""
        from rag.collection import Collection
        from rag.distributed import worker_settings
        from rag.generation import make_llm
        from rag.retrieval import Searcher

        settings = worker_settings(self.values)
        opened = Collection.open(settings.index_dir, self.collection)
        self.answerer = Answerer(Searcher(opened, settings), make_llm(settings), settings)

    def answer(self, question: Question) -> dict[str, Any]:
        if self.answerer is None:
            raise RagError("BatchWorker.answer called before start")
        return _answer(self.answerer, question)


def _answer_on_ray(settings: Settings, collection: str, todo: list[Question]) -> Records:
    """Records from Ray workers, as they finish; the queue stays here, handed out as slots free.

    Closing the generator (Ctrl-C, an error) kills the workers: questions in flight are
    dropped (a rerun asks them again) and the queued ones were never sent.
    """
    from rag.distributed import import_ray, ray_session, settings_for_workers

    ray = import_ray()
    concurrency = settings.llm_concurrency
    with ray_session(settings.ray_address) as resources:
        workers = _worker_count(settings, resources)
        threads = -(-concurrency // workers)  # ceil: the workers share the slots
        remote = ray.remote(num_cpus=WORKER_CPUS, max_concurrency=threads)(BatchWorker)
        values = settings_for_workers(settings)
        actors = [remote.remote(values, collection) for _ in range(workers)]
        logger.info("answering on %d Ray workers, %d questions each at most", workers, threads)
        try:
            _ray_get(ray, [actor.start.remote() for actor in actors])
            queue = deque(todo)
            load = [0] * workers
            in_flight: dict[Any, int] = {}  # object ref -> the worker answering it
            while queue or in_flight:
                while queue and len(in_flight) < concurrency:
                    n = min(range(workers), key=load.__getitem__)
                    in_flight[actors[n].answer.remote(queue.popleft())] = n
                    load[n] += 1
                [ready], _ = ray.wait(list(in_flight), num_returns=1)
                load[in_flight.pop(ready)] -= 1
                yield _ray_get(ray, ready)
        finally:
            for actor in actors:
                ray.kill(actor)


def _worker_count(settings: Settings, resources: dict[str, float]) -> int:
    """`settings.ray_workers`, else one per CPU; never more than the question slots or than
    the cluster can place (workers that never start would stall the job)."""
    from rag.distributed import default_workers

    placeable = int(resources.get("CPU", 0) // WORKER_CPUS)
    if placeable < 1:
        raise RagError(f"the Ray cluster has no CPU for a batch worker (resources: {resources})")
    wanted = settings.ray_workers or default_workers(resources, WORKER_CPUS)
    workers = min(wanted, placeable, settings.llm_concurrency)
    if settings.ray_workers and workers < settings.ray_workers:
        logger.warning(
            "using %d Ray workers, not %d: the cluster has %d CPUs and %d questions are in flight "
            "at once (--concurrency)",
            workers,
            settings.ray_workers,
            placeable,
            settings.llm_concurrency,
        )
    return workers


def _ray_get(ray: Any, refs: Any) -> Any:
    """`ray.get`, with a worker's RagError raised as itself and any other failure as a RagError."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, RagError):
            raise e.cause from None
        failure: Exception = e
        reason = f"{type(e.cause).__name__}: {e.cause}"
    except ray.exceptions.RayError as e:  # a worker lost (killed, out of memory, node gone)
        failure = e
        reason = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
    raise RagError(
        f"a Ray worker failed ({reason}); the answers written so far are kept: run the job "
        "again to answer the rest"
    ) from failure


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
