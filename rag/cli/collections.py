"""`rag collections`: list, inspect and delete collections."""

from __future__ import annotations

import json
from pathlib import Path

import click

from rag.cli.options import json_option, load_settings, settings_options


@click.group()
def collections() -> None:
    """List, inspect and delete collections."""


@collections.command("list")
@json_option()
@settings_options
def collections_list(as_json: bool, config_file: Path | None, index_dir: Path | None) -> None:
    """Names of the collections in the index folder."""
    from rag.collection import list_collections

    settings = load_settings(config_file, index_dir=index_dir)
    names = list_collections(settings.index_dir)
    if as_json:
        click.echo(json.dumps({"collections": names}))
    elif not names:
        click.echo(f"No collections in {settings.index_dir}.")
    else:
        click.echo("\n".join(names))


@collections.command("info")
@click.argument("name")
@json_option()
@settings_options
def collections_info(
    name: str, as_json: bool, config_file: Path | None, index_dir: Path | None
) -> None:
    """Documents, chunks, embedder, chunking, index and reranker of a collection."""
    from rag.collection import Collection

    settings = load_settings(config_file, index_dir=index_dir)
    with Collection.open(settings.index_dir, name) as opened:
        info = opened.describe(settings.index_type)
    if as_json:
        click.echo(json.dumps(info.to_json(), indent=2))
    else:
        click.echo("\n".join(info.lines()))


@collections.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@settings_options
def collections_delete(
    name: str, yes: bool, config_file: Path | None, index_dir: Path | None
) -> None:
    """Delete a collection, its files and its uploads (even when damaged)."""
    from rag.accounts import forget_collection
    from rag.collection import collection_path, delete_collection

    settings = load_settings(config_file, index_dir=index_dir)
    collection_path(settings.index_dir, name)  # fail early, naming the known collections
    if not yes and not click.confirm(f"Delete collection {name!r}?", default=False):
        click.echo("Kept.")
        return
    delete_collection(settings.index_dir, name)
    forget_collection(settings.index_dir, name)  # `rag serve`'s owner and shares of it
    click.echo(f"Deleted {name}.")
