"""Batch question answering: a question file in, one JSON line per answer out, resumable.

    questions = read_questions(Path("questions.jsonl"))
    report = answer_questions(settings, "papers", questions, Path("answers.jsonl"))

The engine is the one `settings.engine` names, as for ingest. Here, an answerer (from
`rag.stack.Stack`, or any other) answers `concurrency` questions at a time:

    report = run_batch(answerer, questions, Path("answers.jsonl"), concurrency=4)

Each finished answer is appended as one line and flushed to disk before the next is written, so a
job killed at any point keeps every finished answer. A torn last line is cut off when the job
starts again, and questions already answered are skipped.

On a Ray cluster (`engine = "ray"`, `rag batch --engine ray`), workers answer and this process
writes the file:

    report = run_batch_on_ray(settings, "papers", questions, Path("answers.jsonl"))

Both engines write the same records through the same loop, so either one resumes the other's file.
One run at a time writes an answers file: it is locked from before the finished ids are read until
the summary is written. Neither file ever replaces one that `rag batch` did not write.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import logging
import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from rag.collection import Collection
from rag.errors import ConfigError, RagError
from rag.pipeline import Answerer
from rag.questions import Question, answer_records, read_file_bytes
from rag.settings import Settings
from rag.stack import Stack

logger = logging.getLogger(__name__)

# CPUs a Ray worker asks for: it embeds the question and verifies the answer; the LLM is remote.
WORKER_CPUS = 1.0

# Where answers come from: records as they finish, stopped early by `close()`.
Records = Generator[dict[str, Any], None, None]
# The header row of the summary, which marks a CSV as one this command wrote.
SUMMARY_HEADER = "id,refused,error,citations,sentences,supported,total_s,answer"
# A spreadsheet reads a cell that starts with one of these as a formula (OWASP, "CSV Injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class BatchReport:
    total: int = 0
    skipped: int = 0
    answered: int = 0
    refused: int = 0
    failed: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    # Answered questions the LLM never saw: answered by the small reader, or refused before it.
    by_reader: int = 0
    without_llm: int = 0

    def summary(self) -> str:
        return (
            f"{self.total} questions: {self.answered} answered ({self.refused} refused), "
            f"{self.failed} failed, {self.skipped} already done; {self.by_reader} answered by "
            f"the small reader, {self.without_llm} LLM calls saved"
        )

    def count(self, record: dict[str, Any]) -> None:
        """Add one answered record (error-free) to the counts."""
        self.answered += 1
        self.refused += bool(record.get("refused"))
        self.by_reader += record.get("answered_by") == "reader"
        self.without_llm += "generate_s" not in (record.get("timings") or {})


def finished_ids(out: Path) -> set[str]:
    """Ids already in the answers file; a torn last line (killed mid-write) is cut off first."""
    if not out.exists():
        return set()
    data = read_file_bytes(out, "answers file")
    records, end = answer_records(data, out.name)
    if end < len(data):
        logger.warning("%s: dropping an unfinished last line", out)
        with out.open("r+b") as handle:
            handle.truncate(end)
    return {record["id"] for record in records}


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


def answer_questions(
    settings: Settings, collection: str, questions: Iterable[Question], out: Path
) -> BatchReport:
    """Answer every question not yet in `out` from `collection`, on the engine `settings.engine`
    names: here, `settings.llm_concurrency` at a time, or on a Ray cluster (`run_batch_on_ray`)."""
    if settings.engine == "ray":
        return run_batch_on_ray(settings, collection, questions, out)
    with Stack.open(settings, collection) as stack:
        return run_batch(
            stack.answerer, questions, out, settings.llm_concurrency, settings.progress
        )


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
    check_outputs(out)
    with _answers_file(out) as (sink, done):
        todo = [q for q in questions if q.id not in done]
        report = BatchReport(total=len(questions), skipped=len(questions) - len(todo))
        bar = tqdm(
            total=len(todo), unit="q", desc="answering", disable=not progress, dynamic_ncols=True
        )
        # Closing the source on Ctrl-C (or any error) drops its queue at once. With nothing to
        # do, it never starts: no threads, no Ray.
        with bar, closing(answer(todo)) as records:
            for record in records if todo else ():
                # A lone surrogate (from a broken LLM reply) can only sit in a JSON string, where
                # backslashreplace writes it as the JSON escape it came from.
                line = json.dumps(record, ensure_ascii=False) + "\n"
                _append(sink, out, line.encode("utf-8", "backslashreplace"))
                if record["error"]:
                    report.failed += 1
                    report.errors.append((record["id"], record["error"]))
                else:
                    report.count(record)
                bar.set_postfix_str(f"{report.failed} failed", refresh=False)
                bar.update(1)
        write_summary(out)
    return report


def check_outputs(out: Path, questions_file: Path | None = None) -> Path:
    """The summary path of answers file `out`, once neither would replace the questions file or a
    file `rag batch` did not write; a ConfigError names the clash."""
    if out.suffix.lower() != ".jsonl":
        raise ConfigError(
            f"the answers file must end in .jsonl, not {str(out)!r} (a .csv summary goes beside it)"
        )
    if out.exists() and not out.is_file():
        raise ConfigError(f"the answers file {out} is a folder or a device, not a file")
    summary = out.with_suffix(".csv")
    if questions_file is not None and _same_file(out, questions_file):
        raise ConfigError(f"the answers file {out} is the questions file: answer into another file")
    if questions_file is not None and _same_file(summary, questions_file):
        raise ConfigError(
            f"the summary {summary} would replace the questions file: answer into a file of "
            "another name"
        )
    if summary.exists() or summary.is_symlink():
        try:
            with summary.open("rb") as handle:
                ours = handle.readline(4096).rstrip(b"\r\n") == SUMMARY_HEADER.encode()
        except OSError:
            ours = False
        if not ours:
            raise ConfigError(
                f"{summary} exists and is not a rag batch summary, which is written beside the "
                "answers: move it away or answer into another file"
            )
    return summary


def _text_cell(value: object) -> str:
    """`value` as a CSV cell that a spreadsheet shows as text, never evaluates."""
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False


@contextmanager
def _answers_file(out: Path) -> Iterator[tuple[io.FileIO, set[str]]]:
    """`out` opened for appending by this run alone, and the ids it holds, its torn line cut.

    The lock is taken before the ids are read and held until the file is closed: a second run
    into the same file would answer the same questions again.
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        sink = out.open("ab", buffering=0)
    except OSError as e:
        raise ConfigError(f"cannot write the answers file {out}: {e.strerror or e}") from e
    with sink:
        try:
            fcntl.flock(sink, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"{out} is being written by another rag batch; wait for it to finish or answer "
                "into another file"
            ) from None
        data = out.read_bytes()
        # Appending is for files this command wrote: every record has an id and an error.
        records, end = answer_records(data, out.name, keys=("id", "error"))
        if end < len(data):
            logger.warning("%s: dropping an unfinished last line", out)
            os.ftruncate(sink.fileno(), end)
        yield sink, {record["id"] for record in records}


def _append(sink: io.FileIO, out: Path, line: bytes) -> None:
    """One record, on disk before the next; a failed write is cut back to the records before."""
    size = os.fstat(sink.fileno()).st_size
    try:
        view = memoryview(line)
        while view:
            view = view[sink.write(view) :]
        os.fsync(sink.fileno())
    except OSError as e:
        with suppress(OSError):
            os.ftruncate(sink.fileno(), size)
        todo = "free some space, then run" if e.errno == errno.ENOSPC else "run"
        raise RagError(
            f"cannot write to {out} ({e.strerror or e}); the answers written before are kept: "
            f"{todo} the job again to answer the rest"
        ) from e


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
        self.stack: Stack | None = None

    def start(self) -> None:
        """Open the answering stack; a RagError here reaches the driver as itself. It stays open
        for the worker's life (Ray ends the process when the job kills the worker)."""
        from rag.distributed import worker_settings

        self.stack = Stack.open(worker_settings(self.values), self.collection)

    def answer(self, question: Question) -> dict[str, Any]:
        if self.stack is None:
            raise RagError("BatchWorker.answer called before start")
        return _answer(self.stack.answerer, question)


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
    """A CSV beside the answers: one row per question with the headline numbers.

    Written whole to a temporary file and renamed, so a reader never sees half of it. Ids,
    errors and answers come from questions files, documents and LLMs: one that a spreadsheet
    would run as a formula is written with a leading apostrophe (`_text_cell`); the answers
    file keeps every value as it was.
    """
    path = check_outputs(out)
    records, _ = answer_records(read_file_bytes(out, "answers file"), out.name)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # backslashreplace: a lone surrogate in an answer must not stop the summary.
        with temporary.open("w", encoding="utf-8", errors="backslashreplace", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(SUMMARY_HEADER.split(","))
            for row in records:
                sentences = row.get("sentences") or []
                writer.writerow(
                    [
                        _text_cell(row["id"]),
                        row.get("refused"),
                        _text_cell(row.get("error") or ""),
                        len(row.get("citations") or []),
                        len(sentences),
                        sum(bool(s.get("supported")) for s in sentences),
                        (row.get("timings") or {}).get("total_s", ""),
                        _text_cell(row.get("answer", "")),
                    ]
                )
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as e:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise RagError(
            f"cannot write the summary {path} ({e.strerror or e}); the answers are all in "
            f"{out.name}: run the job again to write it"
        ) from e
    return path
