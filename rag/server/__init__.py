"""`rag serve`: the library as an HTTP service for teams, a face like the CLI and the chat.

    from rag.server import create_app
    app = create_app(Settings.load())

Collections, documents and ingest jobs (collections.py), search and ask (query.py), an
OpenAI-compatible endpoint (openai_api.py), access checks over rag/accounts.py (auth.py), and
MCP tools (mcp_tools.py). See the README's "HTTP API" section.
"""

from rag.server.app import create_app

__all__ = ["create_app"]
