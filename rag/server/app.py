"""The service's FastAPI application, built from settings like every other face.

    app = create_app(Settings.load())            # then: uvicorn.run(app, host=..., port=...)

The routes are thin: collections and documents (collections.py), search and ask (query.py),
batches of questions (batches.py), the OpenAI-compatible endpoint (openai_api.py), MCP tools at
/mcp (mcp_tools.py). What answers is `Library` over `rag.stack.Stack`, what ingests is
`ingest.pipeline.IngestJob`, and what answers a batch is `rag.batch.run_batch`, as for `rag ask`,
`rag ingest` and `rag batch`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Route

from ingest.uploads import MAX_UPLOAD_BYTES
from rag.accounts import ACCOUNTS_FILE, Accounts
from rag.embedding import Embedder
from rag.generation import LLM
from rag.server.batches import batch_runner
from rag.server.batches import router as batches_router
from rag.server.collections import router as collections_router
from rag.server.errors import RequestLimits, install_error_handlers
from rag.server.jobs import Jobs
from rag.server.library import Library
from rag.server.mcp_tools import build_mcp, http_endpoint
from rag.server.openai_api import router as openai_router
from rag.server.query import router as query_router
from rag.server.readiness import readiness_problems
from rag.settings import Settings

logger = logging.getLogger(__name__)

# A JSON body (a question with its history, a search) is small; an upload carries up to
# `MAX_FILES` files of up to MAX_UPLOAD_BYTES each, but one request at most this much.
JSON_LIMIT = 4 * 1024 * 1024
UPLOAD_LIMIT = 4 * MAX_UPLOAD_BYTES + 1024 * 1024


def create_app(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    llm: LLM | None = None,
    job_workers: int = 2,
    host: str = "127.0.0.1",
) -> FastAPI:
    """The application serving `settings.index_dir`. `embedder` and `llm`, when given, are used
        instead of the ones the settings name (a caller that holds them already, such as a test);
        accounts are on when `settings.accounts` is; `job_workers` background jobs (ingests,
    batches) run at once. `host` is the address it listens on (MCP's
        DNS-rebinding protection is on for loopback only)."""
    settings.index_dir.mkdir(parents=True, exist_ok=True)
    library = Library(settings, embedder=embedder, llm=llm)
    jobs = Jobs(settings, embedder=library.given_embedder(), workers=job_workers)
    jobs.runners["batch"] = batch_runner(library)
    accounts = Accounts(settings.index_dir / ACCOUNTS_FILE) if settings.accounts else None

    mcp = build_mcp(library, accounts)
    mcp_endpoint = http_endpoint(mcp, accounts, host)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        jobs.start()
        async with mcp.session_manager.run():
            yield
        jobs.close()
        library.close()

    app = FastAPI(
        title="rag",
        summary="Search and ask your documents, with citations you can check.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.library = library
    app.state.jobs = jobs
    app.state.accounts = accounts
    install_error_handlers(app)
    app.add_middleware(RequestLimits, json_limit=JSON_LIMIT, upload_limit=UPLOAD_LIMIT)
    for router in (collections_router, query_router, batches_router, openai_router):
        app.include_router(router)
    # MCP over streamable HTTP: the tools of mcp_tools.py, for agents and desktop assistants.
    methods = ["GET", "POST", "DELETE"]
    app.router.routes.append(Route("/mcp", endpoint=mcp_endpoint, methods=methods))

    @app.get("/health", tags=["service"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["service"], response_model=None)
    def ready(request: Request) -> dict[str, Any] | JSONResponse:
        """Readiness: the index folder takes writes, every collection opens, and the accounts
        file (when on) reads; otherwise 503 with one line a problem."""
        problems = readiness_problems(settings.index_dir, accounts)
        if problems:
            return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
        return {"status": "ready", "accounts": accounts is not None}

    return app
