"""`rag ingest`: files and folders into a collection."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from rag.cli.options import (
    collection_option,
    device_option,
    engine_options,
    load_settings,
    progress_option,
    progress_setting,
    settings_options,
)
from rag.embedding import EMBED_BACKENDS
from rag.settings import INDEX_TYPES


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@collection_option("Collection to create or update.")
@click.option("--prune", is_flag=True, help="Remove documents whose files are gone.")
@click.option(
    "--embedder", "embedding_model", help="Bi-encoder (hub id or folder) for a new collection."
)
@click.option(
    "--chunk-tokens", type=int, help="Chunk size in the embedder's tokens (new collection)."
)
@click.option(
    "--chunk-overlap", type=int, help="Overlap between chunks, in tokens (new collection)."
)
@click.option("--index-type", type=click.Choice(INDEX_TYPES), help="FAISS index kind.")
@device_option("Where embeddings run.")
@click.option(
    "--embed-backend",
    type=click.Choice(list(EMBED_BACKENDS)),
    help="How the embedder runs on the CPU (default int8).",
)
@click.option(
    "--follow-links",
    is_flag=True,
    default=None,
    help="Also ingest files that links inside a folder point to outside it.",
)
@click.option(
    "--max-file-mb", type=float, help="Skip (and report) files larger than this (default 100)."
)
@engine_options("Ray actors that embed (default: one per GPU, else one per 2 CPUs).")
@progress_option
@settings_options
def ingest(
    paths: tuple[Path, ...],
    collection: str,
    prune: bool,
    no_progress: bool,
    config_file: Path | None,
    **overrides: Any,
) -> None:
    """Load, chunk, embed and index PATHS (files or folders) into a collection."""
    from ingest.pipeline import IngestJob

    settings = load_settings(config_file, progress=progress_setting(no_progress), **overrides)
    # Each failure was reported on its own line as it happened; the summary counts them.
    report = IngestJob(settings).run_files(collection, list(paths), prune=prune)
    click.echo(report.summary())
    if report.failed:
        sys.exit(1)
