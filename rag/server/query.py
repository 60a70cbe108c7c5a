"""Routes that read a collection: search, and ask (JSON, or the chat's events as SSE).

    POST /v1/collections/{name}/search  {"query": "...", "top_k": 5, "where": {"company": "3M"}}
    POST /v1/collections/{name}/ask     {"question": "...", "stream": true}

`where` is the CLI's `--where`: a list of "key=value" strings, or an object of key to value (or
list of values). A key no document of the collection has is refused (400), never ignored. An
unknown field in the body is refused too (422), so a misspelt option is never silently dropped.

The streamed answer is the `AnswerEvent`s the chat renders, as server-sent events:

    event: sources   data: {"sources": [{"n", "document", "page", "chunk_id", "text"}, ...]}
    event: token     data: {"text": "..."}                (as the LLM writes)
    event: done      data: the checked answer, exactly `rag ask --json`'s record
    event: error     data: {"error": {"message", "type", "code"}}   (instead of done)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from rag.errors import RagError
from rag.generation import Message
from rag.retrieval import check_query
from rag.server.auth import Caller, caller
from rag.server.errors import error_body, status_of
from rag.server.library import Library, SearchOptions
from rag.types import Answer, AnswerDone, AnswerEvent, AnswerToken, SourcesFound

logger = logging.getLogger(__name__)
router = APIRouter(tags=["query"])
CallerDep = Annotated[Caller, Depends(caller)]

WhereValue = str | int | list[str | int]
Scope = list[str] | dict[str, WhereValue] | None


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str
    top_k: int | None = Field(None, ge=1, le=100)
    mode: Literal["dense", "bm25", "hybrid"] | None = None
    rerank: bool = True
    where: Scope = None


class Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: str


class AskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str
    history: list[Turn] = Field(default_factory=list, max_length=50)
    where: Scope = None
    stream: bool = False


def where_items(where: Scope) -> tuple[str, ...]:
    """The API's `where` as the CLI's `--where` strings."""
    if where is None:
        return ()
    if isinstance(where, list):
        return tuple(where)
    items: list[str] = []
    for key, value in where.items():
        values = value if isinstance(value, list) else [value]
        items.extend(f"{key}={item}" for item in values)
    return tuple(items)


def library(request: Request) -> Library:
    return request.app.state.library


@router.post("/v1/collections/{name}/search")
def search_route(
    name: str, body: SearchRequest, who: CallerDep, request: Request
) -> dict[str, Any]:
    """The best chunks for `query`, as `rag search --json` prints them, plus notices."""
    who.readable(name)
    options = SearchOptions(body.top_k, body.mode, body.rerank, where_items(body.where))
    result = library(request).search(name, body.query, options)
    return {**result.to_json(), "notices": list(result.notices)}


@router.post("/v1/collections/{name}/ask", response_model=None)
async def ask_route(
    name: str, body: AskRequest, who: CallerDep, request: Request
) -> dict[str, Any] | StreamingResponse:
    """A grounded answer with citations: `rag ask --json`'s record, or its events as SSE."""
    who.readable(name)
    check_query(body.question, who.settings.max_question_chars)
    history = [Message(turn.role, turn.content) for turn in body.history]
    where = where_items(body.where)
    events = await run_in_threadpool(library(request).answer, name, body.question, history, where)
    if not body.stream:
        answer = await run_in_threadpool(finished, events)
        return answer.to_json()
    return StreamingResponse(sse(events), media_type="text/event-stream")


def finished(events: Iterator[AnswerEvent]) -> Answer:
    """The answer at the end of the stream."""
    for event in events:
        if isinstance(event, AnswerDone):
            return event.answer
    raise RagError("no answer was produced")


def sse(events: Iterator[AnswerEvent]) -> Iterator[str]:
    """The answer's events as server-sent events; a failure midway ends it with `error`."""
    try:
        for event in events:
            yield event_text(*event_json(event))
    except RagError as e:
        yield event_text("error", error_body(status_of(e), str(e)))
    except Exception as e:
        logger.exception("answer stream failed")
        yield event_text("error", error_body(500, f"internal error: {type(e).__name__}"))
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def event_json(event: AnswerEvent) -> tuple[str, dict[str, Any]]:
    """An answer event's SSE name and payload."""
    if isinstance(event, SourcesFound):
        return "sources", {"sources": [c.to_json() for c in event.sources]}
    if isinstance(event, AnswerToken):
        return "token", {"text": event.text}
    return "done", event.answer.to_json()


def event_text(kind: str, payload: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"
