"""Routes for collections, their documents and the ingest jobs that fill them.

GET    /v1/collections                          the collections the caller may read
POST   /v1/collections {"name": ...}            a new, empty collection (the caller owns it)
GET    /v1/collections/{name}                   counts, embedder, chunking, index, owner
DELETE /v1/collections/{name}                   the collection and its uploaded files
PUT    /v1/collections/{name}/shares/{user}     let another user read it (owner, admin)
DELETE /v1/collections/{name}/shares/{user}
GET    /v1/collections/{name}/documents         its documents
POST   /v1/collections/{name}/documents         upload files (multipart): an ingest job
DELETE /v1/collections/{name}/documents/{id}    one document (and its uploaded file)
GET    /v1/jobs/{id}                            a job's state and progress
GET    /v1/jobs/{id}/events                     the same, streamed as server-sent events
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path, PurePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict

from ingest.chunking import Chunker
from ingest.uploads import MAX_UPLOAD_BYTES, check_upload, safe_name, save_upload
from rag.collection import Collection, check_name, delete_collection, uploads_dir
from rag.errors import CollectionError
from rag.index import index_params
from rag.manifest import EmbedderInfo
from rag.server.auth import Caller, caller, visible
from rag.server.errors import ApiError
from rag.server.jobs import JobRecord, Jobs
from rag.server.library import Library
from rag.store import StoredDocument
from rag.types import shown

router = APIRouter(tags=["collections"])
CallerDep = Annotated[Caller, Depends(caller)]
# At most this many files in one upload request.
MAX_FILES = 20
# File types by what browsers and curl send for them; "application/octet-stream" (unknown) is
# taken for any: the suffix and the loader decide.
_CONTENT_TYPES = {
    ".pdf": {"application/pdf", "application/x-pdf"},
    ".txt": {"text/plain"},
    ".md": {"text/markdown", "text/x-markdown", "text/plain"},
    ".markdown": {"text/markdown", "text/x-markdown", "text/plain"},
    ".html": {"text/html", "application/xhtml+xml"},
    ".htm": {"text/html", "application/xhtml+xml"},
}
_ANY = {"", "application/octet-stream", "binary/octet-stream"}


class NewCollection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


def library(request: Request) -> Library:
    return request.app.state.library


def jobs(request: Request) -> Jobs:
    return request.app.state.jobs


@router.get("/v1/collections")
def list_route(who: CallerDep) -> dict[str, Any]:
    """The collections the caller may read."""
    return {"collections": who.readable_names()}


@router.post("/v1/collections", status_code=201)
def create_route(body: NewCollection, who: CallerDep, request: Request) -> dict[str, Any]:
    """Create an empty collection with the server's embedder and chunking; the caller owns it."""
    root = who.settings.index_dir
    try:
        check_name(body.name)
    except CollectionError as e:
        raise ApiError(400, str(e)) from e
    if Collection.exists(root, body.name):
        # The same answer whether or not the caller may see it: the name is taken.
        raise ApiError(409, f"collection {body.name!r} already exists")
    embedder = library(request).embedder()
    settings = who.settings
    chunking = Chunker(
        settings.chunk_tokens, settings.chunk_overlap, context=settings.chunk_context
    ).describe()
    info = EmbedderInfo(embedder.name, embedder.dimension)
    Collection.create(root, body.name, info, chunking).close()
    if who.accounts is not None:
        # Owner and shares left by a collection of that name deleted behind the service's back
        # (`rag collections delete`) must not carry over to the new one.
        who.accounts.forget_collection(body.name)
        who.accounts.set_owner(body.name, who.user.name)
    return _info(who, body.name)


@router.get("/v1/collections/{name}")
def info_route(name: str, who: CallerDep) -> dict[str, Any]:
    """Documents, chunks, embedder, chunking, index and reranker of a collection."""
    return _info(who, who.readable(name))


@router.delete("/v1/collections/{name}")
def delete_route(name: str, who: CallerDep, request: Request) -> dict[str, Any]:
    """Delete a collection, its files and its uploads (refused while a job writes to it)."""
    who.writable(name)
    library(request).forget(name)
    delete_collection(who.settings.index_dir, name)
    if who.accounts is not None:
        who.accounts.forget_collection(name)
    jobs(request).forget_collection(name)
    return {"deleted": name}


@router.put("/v1/collections/{name}/shares/{user}")
def share_route(name: str, user: str, who: CallerDep) -> dict[str, Any]:
    """Let `user` read the collection."""
    who.writable(name)
    if who.accounts is None:
        raise ApiError(400, "accounts are off: every collection is open to every caller")
    if who.accounts.user(user) is None:
        raise ApiError(404, f"no user named {user!r}")
    who.accounts.share(name, user)
    return {"collection": name, "shared_with": who.accounts.shared_with(name)}


@router.delete("/v1/collections/{name}/shares/{user}")
def unshare_route(name: str, user: str, who: CallerDep) -> dict[str, Any]:
    who.writable(name)
    if who.accounts is None:
        raise ApiError(400, "accounts are off: every collection is open to every caller")
    who.accounts.unshare(name, user)
    return {"collection": name, "shared_with": who.accounts.shared_with(name)}


@router.get("/v1/collections/{name}/documents")
def documents_route(name: str, who: CallerDep) -> dict[str, Any]:
    """The collection's documents, by name, with their pages, chunks and metadata."""
    who.readable(name)
    with Collection.open(who.settings.index_dir, name) as opened:
        documents = opened.store.documents()
    uploads = uploads_dir(who.settings.index_dir, name)
    return {"documents": [_document_json(doc, uploads) for doc in documents]}


@router.post("/v1/collections/{name}/documents", status_code=202)
async def upload_route(
    name: str,
    who: CallerDep,
    request: Request,
    files: Annotated[list[UploadFile], File(description="PDF, text, Markdown or HTML files")],
) -> dict[str, Any]:
    """Upload files, checked as the chat checks them, and ingest them in a background job.

    Every file is checked before any is saved: one refused file refuses the whole request, and
    nothing changes."""
    who.writable(name)
    if len(files) > MAX_FILES:
        raise ApiError(400, f"{len(files)} files in one request; send at most {MAX_FILES}")
    checked: list[tuple[str, bytes]] = []
    for upload in files:
        given = upload.filename or ""
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        size = upload.size if upload.size is not None else len(data)
        refusal = _refusal(given, size, upload.content_type, data)
        if refusal is not None:
            status, reason = refusal
            raise ApiError(status, f"{shown(given) or '(no name)'}: {reason}")
        checked.append((safe_name(given), data))
    folder = uploads_dir(who.settings.index_dir, name)
    saved = [save_upload(folder, safe, data) for safe, data in checked]
    record = jobs(request).submit(name, saved, who.user.name)
    return record.to_json()


@router.delete("/v1/collections/{name}/documents/{document_id}")
def delete_document_route(name: str, document_id: str, who: CallerDep) -> dict[str, Any]:
    """Remove one document (by id, as listed) from the collection, and its uploaded file."""
    who.writable(name)
    settings = who.settings
    with Collection.open(settings.index_dir, name) as opened, opened.writer_lock():
        match = [doc for doc in opened.store.documents() if doc.id == document_id]
        if not match:
            raise ApiError(404, f"no document with id {document_id!r} in {name!r}")
        source = match[0].source
        # Staged rows of a killed job would be published along with the removal: drop them
        # (the job, resumed, stages them again).
        opened.store.discard_staged(keep=set())
        opened.store.publish(remove=[source])
        opened.refresh_indexes(index_params(settings))
    uploads = uploads_dir(settings.index_dir, name)
    if Path(source).parent == uploads:
        Path(source).unlink(missing_ok=True)
    return {"deleted": document_id}


@router.get("/v1/jobs")
def jobs_route(who: CallerDep, request: Request) -> dict[str, Any]:
    """The jobs the caller may see (ingests into collections they read, their own batches),
    newest first."""
    return {"jobs": [r.to_json() for r in jobs(request).all() if visible(who, r)]}


@router.get("/v1/jobs/{job_id}")
def job_route(job_id: str, who: CallerDep, request: Request) -> dict[str, Any]:
    """A job's state, progress and, when finished, its report."""
    return _job(job_id, who, request).to_json()


@router.get("/v1/jobs/{job_id}/events")
async def job_events_route(job_id: str, who: CallerDep, request: Request) -> StreamingResponse:
    """The job's record as server-sent events (`event: progress`), each time it changes, until
    it is done or failed (`event: done`)."""
    _job(job_id, who, request)
    runner = jobs(request)

    async def events() -> AsyncIterator[str]:
        last = None
        while True:
            record = runner.get(job_id)
            if record is None:
                return
            if record != last:
                kind = "done" if record.finished else "progress"
                yield f"event: {kind}\ndata: {json.dumps(record.to_json())}\n\n"
                last = record
            if record.finished or await request.is_disconnected():
                return
            await asyncio.sleep(0.2)

    return StreamingResponse(events(), media_type="text/event-stream")


def _job(job_id: str, who: Caller, request: Request) -> JobRecord:
    record = jobs(request).get(job_id)
    if record is None or not visible(who, record):
        raise ApiError(404, f"no job with id {job_id!r}")
    return record


def _info(who: Caller, name: str) -> dict[str, Any]:
    with Collection.open(who.settings.index_dir, name) as opened:
        info = opened.describe(who.settings.index_type).to_json()
    info.pop("path", None)  # where the server keeps it is no business of the caller's
    if who.accounts is not None:
        info["owner"] = who.accounts.owner(name)
        info["shared_with"] = who.accounts.shared_with(name)
    return info


def _document_json(doc: StoredDocument, uploads: Path) -> dict[str, Any]:
    source = Path(doc.source)
    return {
        "id": doc.id,
        "name": source.name if source.parent == uploads else doc.source,
        "title": doc.title,
        "type": doc.fields["type"],
        "pages": doc.pages,
        "chunks": doc.chunks,
        "added_at": doc.added_at,
        "metadata": doc.metadata,
    }


def _refusal(name: str, size: int, content_type: str | None, data: bytes) -> tuple[int, str] | None:
    """Why a file is refused (the chat's checks, then its declared type and first bytes), with
    the status that says so; None when it may be ingested."""
    if not name or re.search(r"[/\\\x00-\x1f]", name) or name.strip() in (".", ".."):
        return 400, "a file name must be a plain name, without folders or control characters"
    reason = check_upload(name, size)
    if reason is not None:
        return (413 if size > MAX_UPLOAD_BYTES else 415 if size else 400), reason
    suffix = PurePath(safe_name(name)).suffix
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in _ANY and declared not in _CONTENT_TYPES.get(suffix, set()):
        return 415, f"content type {declared!r} does not match a {suffix} file"
    if suffix == ".pdf" and not data.lstrip()[:5].startswith(b"%PDF-"):
        return 415, "not a PDF: the file does not start with %PDF-"
    return None
