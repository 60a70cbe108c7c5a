"""Batches of questions: a question file in, `rag batch`'s answers file out, as a background job.

    POST /v1/collections/{name}/batches   multipart `questions`: JSONL or CSV (id, question...)
    GET  /v1/jobs/{id}                    state, progress (answers written so far)
    GET  /v1/jobs/{id}/answers            the answers file (JSONL), `?format=csv` its summary

The questions are read (and refused with one line when they are not a question file) before
anything is saved. The answers are written by `rag.batch.run_batch`, the code behind `rag batch`,
with the server's answerer for the collection: each answer is flushed as it finishes, so a job
run again after a crash (see jobs.py) skips the questions already answered. A batch's questions
and answers are its submitter's: other users, even readers of the collection, do not see it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import FileResponse

from rag.batch import run_batch, write_summary
from rag.questions import QUESTION_SUFFIXES, read_questions
from rag.server.auth import Caller, caller, visible
from rag.server.errors import ApiError
from rag.server.jobs import JobRecord, Jobs
from rag.server.library import Library

router = APIRouter(tags=["batches"])
CallerDep = Annotated[Caller, Depends(caller)]
MAX_QUESTIONS_BYTES = 10 * 1024 * 1024
ANSWERS = "answers.jsonl"


def batch_runner(library: Library) -> Callable[..., tuple[str, dict[str, Any]]]:
    """The job runner for kind "batch": answer the questions not yet in the answers file."""

    def run(record: JobRecord, progress: Callable[[int, int], None]) -> tuple[str, dict[str, Any]]:
        if record.output is None:
            raise ApiError(500, "a batch job without an answers file")
        questions = read_questions(Path(record.files[0]))
        answerer = library.served(record.collection).stack.answerer
        concurrency = library.settings.llm_concurrency
        report = run_batch(answerer, questions, Path(record.output), concurrency, progress=False)
        details = {
            "total": report.total,
            "answered": report.answered,
            "refused": report.refused,
            "failed": report.failed,
            "skipped": report.skipped,
            "errors": [{"id": qid, "error": error} for qid, error in report.errors[:20]],
        }
        return report.summary(), details

    return run


def jobs(request: Request) -> Jobs:
    return request.app.state.jobs


@router.post("/v1/collections/{name}/batches", status_code=202)
async def batch_route(
    name: str,
    who: CallerDep,
    request: Request,
    questions: Annotated[UploadFile, File(description="JSONL or CSV: id, question[, answer...]")],
) -> dict[str, Any]:
    """Answer every question of the file from the collection, in a background job."""
    who.readable(name)
    given = Path(questions.filename or "questions.jsonl").name
    suffix = Path(given).suffix.lower()
    if suffix not in QUESTION_SUFFIXES:
        listed = ", ".join(QUESTION_SUFFIXES)
        raise ApiError(415, f"unsupported question file {given!r} (use {listed})")
    data = await questions.read(MAX_QUESTIONS_BYTES + 1)
    if len(data) > MAX_QUESTIONS_BYTES:
        raise ApiError(413, f"{given}: a question file may be at most 10 MB")
    runner = jobs(request)
    job_id = runner.new_id()
    with tempfile.TemporaryDirectory(prefix=".batch-", dir=runner.folder.parent) as scratch:
        staged = Path(scratch) / f"questions{suffix}"
        staged.write_bytes(data)
        count = len(read_questions(staged))  # a bad file is refused here, nothing kept
        folder = runner.folder / job_id
        folder.mkdir(parents=True)
        saved = folder / staged.name
        shutil.move(staged, saved)
    record = runner.submit(
        name,
        [saved],
        who.user.name,
        kind="batch",
        total=count,
        output=folder / ANSWERS,
        job_id=job_id,
    )
    return record.to_json()


@router.get("/v1/jobs/{job_id}/answers", response_model=None)
def answers_route(
    job_id: str,
    who: CallerDep,
    request: Request,
    format: Annotated[str, Query(pattern="^(jsonl|csv)$")] = "jsonl",
) -> FileResponse:
    """The batch's answers so far (JSONL, one `rag ask --json` record a line with `id` and
    `error`), or with `?format=csv` the one-line-a-question summary."""
    record = jobs(request).get(job_id)
    if record is None or record.kind != "batch" or not visible(who, record):
        raise ApiError(404, f"no batch job with id {job_id!r}")
    answers = Path(record.output or "")
    if not answers.is_file():
        raise ApiError(404, f"batch {job_id} has no answers yet")
    if format == "csv":
        return FileResponse(write_summary(answers), media_type="text/csv", filename="answers.csv")
    return FileResponse(answers, media_type="application/jsonl", filename=ANSWERS)
