"""The MCP tools through the `mcp` package's own client: over streamable HTTP at /mcp of the
real server (accounts on: keys and access as everywhere else), and over stdio with `rag mcp`."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from rag.accounts import ACCOUNTS_FILE, Accounts
from rag.server import create_app
from tests.conftest import REPO
from tests.server.conftest import Running, ingest_demo, service_settings, serving
from tests.servers.openai_compat import OpenAICompatServer

QUESTION = "Who won Super Bowl 50?"


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, minilm: Any, server: OpenAICompatServer
) -> Iterator[tuple[Running, dict[str, str]]]:
    index_dir = tmp_path_factory.mktemp("mcp") / "indexes"
    settings = service_settings(index_dir, server.base_url, accounts=True)
    ingest_demo(settings, minilm, "demo")
    accounts = Accounts(index_dir / ACCOUNTS_FILE)
    keys = {"ana": accounts.add_user("ana"), "ben": accounts.add_user("ben")}
    accounts.set_owner("demo", "ana")
    with serving(create_app(settings, embedder=minilm)) as url:
        yield Running(url, settings, None), keys


async def calls(session: ClientSession) -> dict[str, Any]:
    """Every tool once, and a search of a collection that is not there."""
    await session.initialize()
    tools = await session.list_tools()
    return {
        "tools": sorted(tool.name for tool in tools.tools),
        "list": await session.call_tool("list_collections", {}),
        "search": await session.call_tool(
            "search", {"collection": "demo", "query": QUESTION, "where": {"topic": "sport"}}
        ),
        "ask": await session.call_tool("ask", {"collection": "demo", "question": QUESTION}),
        "missing": await session.call_tool("search", {"collection": "nope", "query": "x"}),
        "bad_key": await session.call_tool(
            "search", {"collection": "demo", "query": "x", "where": {"topc": "sport"}}
        ),
    }


def over_http(url: str, key: str | None) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=120) as http,
            streamable_http_client(f"{url}/mcp", http_client=http) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            return await calls(session)

    return anyio.run(run)


def error_text(result: Any) -> str:
    """A tool error's message, without the SDK's "Error executing tool NAME: " prefix."""
    assert result.is_error
    return str(result.content[0].text).partition(": ")[2]


def check_results(results: dict[str, Any]) -> None:
    assert results["tools"] == ["ask", "list_collections", "search"]
    assert results["list"].structured_content == {"result": ["demo"]}
    hits = results["search"].structured_content["hits"]
    assert hits and all(hit["document"].endswith("Super_Bowl_50.md") for hit in hits)
    answer = results["ask"].structured_content
    assert answer["answer"].startswith("I read sources [1]") and answer["citations"]
    assert results["missing"].is_error
    assert error_text(results["missing"]) == "no collection named 'nope'"
    assert results["bad_key"].is_error
    assert error_text(results["bad_key"]).startswith("unknown filter key 'topc'")


def test_tools_over_streamable_http(api: tuple[Running, dict[str, str]]) -> None:
    running, keys = api
    check_results(over_http(running.url, keys["ana"]))


def test_mcp_over_http_keeps_collections_private(api: tuple[Running, dict[str, str]]) -> None:
    running, keys = api
    results = over_http(running.url, keys["ben"])
    assert results["list"].structured_content == {"result": []}
    assert results["search"].is_error
    assert error_text(results["search"]) == "no collection named 'demo'"
    assert error_text(results["ask"]) == "no collection named 'demo'"
    response = httpx2.post(
        f"{running.url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Accept": "application/json, text/event-stream"},
    )
    assert response.status_code == 401
    assert response.json()["error"]["message"].startswith("an API key is required")


def test_tools_over_stdio(api: tuple[Running, dict[str, str]], server: OpenAICompatServer) -> None:
    running, keys = api
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAG_API_KEY": keys["ana"],
        "RAG_ACCOUNTS": "true",
        "RAG_DEVICE": "cpu",
        "RAG_RERANK": "false",
        "RAG_CHUNKS_PER_PAGE": "0",
        "RAG_ANSWER_MODE": "llm",
    }
    index_dir: Path = running.settings.index_dir
    parameters = StdioServerParameters(
        command=sys.executable,
        args=[
            *("-m", "rag.cli", "mcp", "--index-dir", str(index_dir)),
            *("--backend", "openai", "--base-url", server.base_url, "--model", "test/echo"),
        ],
        env=env,
        cwd=str(REPO),
    )

    async def run() -> dict[str, Any]:
        async with (
            stdio_client(parameters) as streams,
            ClientSession(streams[0], streams[1]) as session,
        ):
            return await calls(session)

    check_results(anyio.run(run))
