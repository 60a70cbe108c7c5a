"""The collections as Model Context Protocol tools: `list_collections`, `search` and `ask`.

Over streamable HTTP at `/mcp` inside `rag serve` (with accounts on, the client sends its API key
as `Authorization: Bearer KEY`, as for every other route), and over stdio with `rag mcp` (a local
process: the operator's own, or with accounts on, the user whose key is in `RAG_API_KEY`).

The tools call the same `Library` as the HTTP routes, with the same access checks: a collection
the caller may not read is "no collection named ..." here too.
"""

from __future__ import annotations

from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Receive, Scope, Send

from rag.accounts import LOCAL_USER, Accounts, User
from rag.errors import RagError
from rag.server.auth import Caller
from rag.server.errors import ApiError, error_response
from rag.server.library import Library, SearchOptions
from rag.server.query import finished
from rag.settings import Settings

INSTRUCTIONS = (
    "Search and ask the user's document collections. Call list_collections first; answers "
    "from `ask` cite their sources as [n], and each citation names its document and page."
)
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_mcp(
    library: Library, accounts: Accounts | None, stdio_user: User | None = None
) -> MCPServer:
    """An MCP server whose tools read `library` as the caller may. `stdio_user` is who a
    request without headers (stdio) comes from when accounts are on."""
    settings = library.settings
    server = MCPServer(name="rag", instructions=INSTRUCTIONS, version="0.1.0", log_level="WARNING")

    def who(ctx: Context) -> Caller:
        return _caller(ctx.headers, settings, accounts, stdio_user)

    @server.tool()
    async def list_collections(ctx: Context) -> list[str]:
        """The names of the document collections you may search."""
        return who(ctx).readable_names()

    @server.tool()
    async def search(
        collection: str,
        query: str,
        ctx: Context,
        top_k: int = 5,
        where: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The passages of `collection` that best match `query`, best first, each with its
        document and page. `where` keeps the search to matching documents: {"document":
        "report*.pdf", "page": "3-10"} or any metadata key the collection has."""
        caller = who(ctx)

        def run() -> dict[str, Any]:
            caller.readable(collection)
            options = SearchOptions(top_k=max(1, min(top_k, 50)), where=_items(where))
            result = library.search(collection, query, options)
            return {**result.to_json(), "notices": list(result.notices)}

        return await _in_thread(run)

    @server.tool()
    async def ask(
        collection: str, question: str, ctx: Context, where: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """A grounded answer to `question` from `collection`: its text with [n] citations, the
        cited passages (document, page, text), and how well each sentence is supported. It
        says so when the documents do not contain an answer."""
        caller = who(ctx)

        def run() -> dict[str, Any]:
            caller.readable(collection)
            events = library.answer(collection, question, (), _items(where))
            return finished(events).to_json()

        return await _in_thread(run)

    return server


def http_endpoint(server: MCPServer, accounts: Accounts | None, host: str) -> MCPAuthGate:
    """The ASGI endpoint serving `server` over streamable HTTP (stateless: any replica can take
    any request), behind the service's API-key check. Run `server.session_manager.run()` in
    the application's lifespan."""
    # DNS-rebinding protection only makes sense for a server on loopback; behind a load
    # balancer the Host header is the balancer's name.
    security = (
        None
        if host in _LOOPBACK
        else TransportSecuritySettings(enable_dns_rebinding_protection=False)
    )
    server.streamable_http_app(
        stateless_http=True, json_response=True, transport_security=security, host=host
    )
    return MCPAuthGate(StreamableHTTPASGIApp(server.session_manager), accounts)


class MCPAuthGate:
    """ASGI wrapper: with accounts on, a request without a valid API key gets the service's
    401 before the MCP layer sees it."""

    def __init__(self, app: StreamableHTTPASGIApp, accounts: Accounts | None) -> None:
        self.app = app
        self.accounts = accounts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.accounts is not None:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            message = _key_problem(headers, self.accounts)
            if message is not None:
                await error_response(401, message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _caller(
    headers: Any, settings: Settings, accounts: Accounts | None, stdio_user: User | None
) -> Caller:
    if accounts is None:
        return Caller(LOCAL_USER, None, settings)
    if headers is None:
        if stdio_user is None:
            raise ToolError("accounts are on: start `rag mcp` with RAG_API_KEY set to your key")
        return Caller(stdio_user, accounts, settings)
    lowered = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    message = _key_problem(lowered, accounts)
    if message is not None:
        raise ToolError(message)
    user = accounts.authenticate(_bearer(lowered))
    if user is None:
        raise ToolError("the API key is not valid")
    return Caller(user, accounts, settings)


def _key_problem(headers: dict[str, str], accounts: Accounts) -> str | None:
    key = _bearer(headers)
    if not key:
        return "an API key is required: send 'Authorization: Bearer <key>'"
    if accounts.authenticate(key) is None:
        return "the API key is not valid"
    return None


def _bearer(headers: dict[str, str]) -> str:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key", "").strip()


def _items(where: dict[str, str] | None) -> tuple[str, ...]:
    return tuple(f"{key}={value}" for key, value in (where or {}).items())


async def _in_thread(run: Any) -> dict[str, Any]:
    """Run a blocking library call off the event loop; its refusals become tool errors with
    the same one line the HTTP routes answer with."""
    try:
        result: dict[str, Any] = await anyio.to_thread.run_sync(run)
    except ApiError as e:
        raise ToolError(e.message) from e
    except RagError as e:
        raise ToolError(str(e)) from e
    return result


def stdio_user_for(accounts: Accounts | None, key: str | None) -> User | None:
    """The user `rag mcp` acts as: none needed without accounts; else the key's owner."""
    if accounts is None:
        return None
    user = accounts.authenticate(key or "")
    if user is None:
        raise RagError("accounts are on: set RAG_API_KEY to a key from `rag users add`")
    return user
