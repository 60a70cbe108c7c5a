"""The OpenAI-compatible face: a collection is a model.

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=KEY)
    client.models.list()                                 # the collections the caller may read
    client.chat.completions.create(model="papers", messages=[...], stream=True)

The last user message is the question and the turns before it the history (follow-ups are
rewritten as standalone questions, as in the chat); system messages are not used: the product's
own prompt is. The reply's content is the checked answer followed by its sources:

    Super Bowl 50 was won by the Denver Broncos [1].

    Sources:
    [1] Super_Bowl_50.md, page 1

and the response carries, beside OpenAI's fields, `citations` (the cited sources) and `rag` (the
whole `rag ask --json` record; in a stream, on the last chunk). Sampling options (temperature,
max_tokens...) are accepted and left to the server's settings; `where` (an extra body field)
scopes the search as in `/ask`.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from rag.errors import RagError
from rag.generation import Message
from rag.retrieval import check_query
from rag.server.auth import Caller, caller
from rag.server.errors import ApiError, error_body, status_of
from rag.server.library import Library
from rag.server.query import Scope, finished, where_items
from rag.types import Answer, AnswerDone, AnswerEvent, AnswerToken, shown

logger = logging.getLogger(__name__)
router = APIRouter(tags=["openai"])
CallerDep = Annotated[Caller, Depends(caller)]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    # Clients send many sampling options; they are accepted, and the server's settings decide.
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    where: Scope = None


def library(request: Request) -> Library:
    return request.app.state.library


@router.get("/v1/models")
def models_route(who: CallerDep) -> dict[str, Any]:
    """The collections the caller may read, as models."""
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "rag"}
        for name in who.readable_names()
    ]
    return {"object": "list", "data": data}


@router.get("/v1/models/{name}")
def model_route(name: str, who: CallerDep) -> dict[str, Any]:
    who.readable(name)
    return {"id": name, "object": "model", "created": 0, "owned_by": "rag"}


@router.post("/v1/chat/completions", response_model=None)
async def chat_route(
    body: ChatRequest, who: CallerDep, request: Request
) -> dict[str, Any] | StreamingResponse:
    """Answer the last user message from collection `model`, with citations."""
    name = who.readable(body.model)
    question, history = _conversation(body.messages)
    check_query(question, who.settings.max_question_chars)
    events = await run_in_threadpool(
        library(request).answer, name, question, history, where_items(body.where)
    )
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    if not body.stream:
        answer = await run_in_threadpool(finished, events)
        return _completion(completion_id, name, answer)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunks = _chunks(completion_id, name, events, include_usage)
    return StreamingResponse(chunks, media_type="text/event-stream")


def _conversation(messages: list[ChatMessage]) -> tuple[str, list[Message]]:
    """The question (the last message, a user's) and the user and assistant turns before it."""
    turns = [(m.role, _text(m.content)) for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1][0] != "user":
        raise ApiError(400, "the last message must be the user's question")
    history = [Message(role, text) for role, text in turns[:-1]]
    return turns[-1][1], history


def _text(content: str | list[dict[str, Any]] | None) -> str:
    """A message's text: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content if part.get("type") == "text")


def sources_text(answer: Answer) -> str:
    """The cited sources, one a line, to follow the answer's text."""
    if answer.refused or not answer.citations:
        return ""
    lines = [
        f"[{c.n}] {shown(c.chunk.source.rsplit('/', 1)[-1])}, page {c.chunk.page}"
        for c in answer.citations
    ]
    return "\n\nSources:\n" + "\n".join(lines)


def _usage(answer: Answer) -> dict[str, int]:
    usage = answer.usage or {}
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _completion(completion_id: str, model: str, answer: Answer) -> dict[str, Any]:
    record = answer.to_json()
    message = {"role": "assistant", "content": answer.text + sources_text(answer)}
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": _usage(answer),
        "citations": record["citations"],
        "rag": record,
    }


def _chunks(
    completion_id: str, model: str, events: Iterator[AnswerEvent], include_usage: bool
) -> Iterator[str]:
    """The answer as chat.completion.chunk events: tokens as the LLM writes them, then the
    sources, then the finish with the checked answer (`rag`), then [DONE]."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    answer = None
    try:
        for event in events:
            if isinstance(event, AnswerToken):
                yield chunk({"content": event.text})
            elif isinstance(event, AnswerDone):
                answer = event.answer
    except RagError as e:
        yield f"data: {json.dumps(error_body(status_of(e), str(e)))}\n\n"
        return
    except Exception as e:
        logger.exception("chat completion stream failed")
        yield f"data: {json.dumps(error_body(500, f'internal error: {type(e).__name__}'))}\n\n"
        return
    if answer is None:
        yield f"data: {json.dumps(error_body(500, 'no answer was produced'))}\n\n"
        return
    if answer.refused:
        # Nothing was streamed (the LLM was not asked), or the LLM's NOT_FOUND: say it plainly.
        yield chunk({"content": answer.text})
    elif tail := sources_text(answer):
        yield chunk({"content": tail})
    record = answer.to_json()
    yield chunk({}, "stop", citations=record["citations"], rag=record)
    if include_usage:
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [],
            "usage": _usage(answer),
        }
        yield f"data: {json.dumps(payload)}\n\n"
    yield "data: [DONE]\n\n"
