"""Every error the service returns is JSON with one clear message, OpenAI's shape:

    {"error": {"message": "no collection named 'x'", "type": "not_found", "code": 404}}

so that `openai` SDK clients show the message, and so do curl and the browser. A `RagError`
from the library becomes the same one line the CLI prints; a request refused before it reaches
the library (too large, wrong content type, malformed JSON) changes nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rag.errors import (
    CollectionError,
    ConfigError,
    DiskFullError,
    EmbedderMismatchError,
    GenerationError,
    LoadError,
    RagError,
)

logger = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request_error",
    502: "upstream_error",
    507: "insufficient_storage",
}


class ApiError(Exception):
    """A refusal the service decides itself: an HTTP status and one line for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_body(status: int, message: str) -> dict[str, Any]:
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "code": status}}


def error_response(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def status_of(error: RagError) -> int:
    """The HTTP status a library error stands for."""
    if isinstance(error, DiskFullError):
        return 507
    if isinstance(error, EmbedderMismatchError):
        return 409
    if isinstance(error, CollectionError):
        text = str(error)
        if "already exists" in text or "being written" in text:
            return 409
        if text.startswith("no collection named"):
            return 404
        return 500  # a damaged collection: the operator's to repair
    if isinstance(error, GenerationError):
        return 502
    if isinstance(error, ConfigError | LoadError):
        return 400
    return 400


def install_error_handlers(app: FastAPI) -> None:
    """Turn every failure into one JSON message."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message)

    @app.exception_handler(RagError)
    async def _rag(request: Request, error: RagError) -> JSONResponse:
        return error_response(status_of(error), str(error))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else str(error.detail)
        if error.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return error_response(error.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(*_describe_invalid(error))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error in %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(error).__name__}")


def _describe_invalid(error: RequestValidationError) -> tuple[int, str]:
    """FastAPI's list of problems as one status and one line: the first problem, where it is."""
    problems = list(error.errors())
    if not problems:
        return 422, "the request is not valid"
    first = problems[0]
    if first.get("type") == "json_invalid":
        reason = first.get("ctx", {}).get("error", "")
        return 400, f"the request body is not valid JSON{': ' + reason if reason else ''}"
    place = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(place)
    message = str(first.get("msg", "is not valid"))
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return 422, (f"{field}: {message}" if field else message) + more


class RequestLimits:
    """ASGI middleware: a body larger than its route allows is refused with 413, and a body of
    the wrong content type with 415, before anything reads it."""

    def __init__(self, app: ASGIApp, json_limit: int, upload_limit: int) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        upload = scope["path"].rstrip("/").endswith(("/documents", "/batches"))
        limit = self.upload_limit if upload else self.json_limit
        refusal = _refusal(headers, upload, limit)
        if refusal is not None:
            await error_response(*refusal)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, _too_large(limit))
            return message

        await self.app(scope, counted, send)


def _refusal(headers: dict[str, str], upload: bool, limit: int) -> tuple[int, str] | None:
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        return 413, _too_large(limit)
    if length == "0" and not upload:
        return None  # no body at all: the route says whether it needs one
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    wanted = "multipart/form-data" if upload else "application/json"
    if kind != wanted and (upload or kind):
        shown = kind or "none"
        return 415, f"expected Content-Type {wanted}, got {shown}"
    return None


def _too_large(limit: int) -> str:
    return f"the request body is over the {limit / 1024 / 1024:.0f} MB limit"
