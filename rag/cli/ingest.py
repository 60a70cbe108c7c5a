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
from rag.settings import INDEX_TYPES, OCR_MODES, PDF_TEXT_READERS


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@collection_option("Collection to create or update.")
@click.option("--prune", is_flag=True, help="Remove documents whose files are gone.")
@click.option(
    "--meta",
    multiple=True,
    metavar="KEY=VALUE",
    help="Attach metadata to every document of this run (repeatable): searchable with "
    "--where KEY=VALUE, and part of the name each chunk is indexed with.",
)
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
@click.option(
    "--ocr",
    type=click.Choice(OCR_MODES),
    help="Read PDF pages with Tesseract: those with no usable text (auto, the default), "
    "every page (force), or none (off).",
)
@click.option(
    "--pdf-text",
    type=click.Choice(PDF_TEXT_READERS),
    help="What reads PDF text: PDFium (the default; fast) or pypdf alone.",
)
@engine_options("Ray actors that embed (default: one per GPU, else one per 2 CPUs).")
@progress_option
@settings_options
def ingest(
    paths: tuple[Path, ...],
    collection: str,
    prune: bool,
    meta: tuple[str, ...],
    no_progress: bool,
    config_file: Path | None,
    **overrides: Any,
) -> None:
    """Load, chunk, embed and index PATHS (files or folders) into a collection."""
    from ingest.pipeline import IngestJob
    from rag.filters import parse_pairs

    metadata = dict(parse_pairs(meta, "--meta"))
    settings = load_settings(config_file, progress=progress_setting(no_progress), **overrides)
    # Each failure was reported on its own line as it happened; the summary counts them.
    job = IngestJob(settings)
    report = job.run_files(collection, list(paths), prune=prune, metadata=metadata)
    click.echo(report.summary())
    if report.failed:
        sys.exit(1)
