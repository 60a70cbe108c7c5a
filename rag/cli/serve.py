"""`rag serve` (the HTTP API) and `rag users` (its accounts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from rag.cli.options import llm_options, load_settings, settings_options


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--accounts/--no-accounts",
    default=None,
    help="Require API keys (`rag users add`) and keep collections per user (setting `accounts`; "
    "off by default, for local use).",
)
@click.option(
    "--job-workers",
    default=2,
    show_default=True,
    type=int,
    help="Background jobs (ingests, batches of questions) run at once.",
)
@llm_options
@settings_options
def serve(
    host: str, port: int, job_workers: int, config_file: Path | None, **overrides: Any
) -> None:
    """Serve the collections over HTTP: REST, OpenAI-compatible and MCP (docs at /docs)."""
    import uvicorn

    from rag.server import create_app

    settings = load_settings(config_file, progress=False, **overrides)
    app = create_app(settings, job_workers=job_workers, host=host)
    mode = "accounts on: every request needs an API key" if settings.accounts else "no accounts"
    click.echo(f"Serving {settings.index_dir} on http://{host}:{port} ({mode}); docs at /docs")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@click.command()
@llm_options
@settings_options
def mcp(config_file: Path | None, **overrides: Any) -> None:
    """Serve the MCP tools (list_collections, search, ask) over stdio, for an agent or a desktop
    assistant that starts this command. With accounts on, RAG_API_KEY names the user."""
    import os

    from rag.accounts import ACCOUNTS_FILE, Accounts
    from rag.server.library import Library
    from rag.server.mcp_tools import build_mcp, stdio_user_for

    settings = load_settings(config_file, progress=False, **overrides)
    accounts = Accounts(settings.index_dir / ACCOUNTS_FILE) if settings.accounts else None
    user = stdio_user_for(accounts, os.environ.get("RAG_API_KEY"))
    library = Library(settings)
    try:
        build_mcp(library, accounts, stdio_user=user).run("stdio")
    finally:
        library.close()


@click.group()
def users() -> None:
    """Accounts of `rag serve --accounts`: users, API keys and shared collections."""


def _accounts(config_file: Path | None, index_dir: Path | None) -> Any:
    from rag.accounts import ACCOUNTS_FILE, Accounts

    settings = load_settings(config_file, index_dir=index_dir)
    return Accounts(settings.index_dir / ACCOUNTS_FILE)


@users.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May read and change every collection.")
@settings_options
def users_add(name: str, admin: bool, config_file: Path | None, index_dir: Path | None) -> None:
    """Create user NAME and print their API key (shown this once; only its hash is kept)."""
    key = _accounts(config_file, index_dir).add_user(name, admin=admin)
    click.echo(key)


@users.command("key")
@click.argument("name")
@settings_options
def users_key(name: str, config_file: Path | None, index_dir: Path | None) -> None:
    """Print a new API key for user NAME (their other keys keep working)."""
    click.echo(_accounts(config_file, index_dir).new_key(name))


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@settings_options
def users_list(as_json: bool, config_file: Path | None, index_dir: Path | None) -> None:
    """The users, and which are admins."""
    found = _accounts(config_file, index_dir).users()
    if as_json:
        click.echo(json.dumps({"users": [{"name": u.name, "admin": u.admin} for u in found]}))
        return
    for user in found:
        click.echo(f"{user.name}{'  (admin)' if user.admin else ''}")


@users.command("remove")
@click.argument("name")
@settings_options
def users_remove(name: str, config_file: Path | None, index_dir: Path | None) -> None:
    """Delete user NAME and their keys; collections they owned become an admin's."""
    _accounts(config_file, index_dir).remove_user(name)
    click.echo(f"Removed {name}.")


@users.command("share")
@click.argument("collection")
@click.argument("name")
@click.option("--owner", is_flag=True, help="Make NAME the collection's owner instead.")
@settings_options
def users_share(
    collection: str, name: str, owner: bool, config_file: Path | None, index_dir: Path | None
) -> None:
    """Let user NAME read COLLECTION (or, with --owner, own it)."""
    accounts = _accounts(config_file, index_dir)
    if owner:
        accounts.set_owner(collection, name)
        click.echo(f"{name} owns {collection}.")
    else:
        accounts.share(collection, name)
        click.echo(f"{collection} is shared with {name}.")
