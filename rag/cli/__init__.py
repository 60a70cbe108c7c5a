"""The `rag` command line: a thin face over rag/ and ingest/. Errors are one line, no traceback.

One module per family of commands: ingest.py, query.py (search, ask, batch), collections.py,
evaluate.py (eval), tune.py and serve.py (serve, mcp, users); options.py declares the options
they share.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

import click

from rag.cli.collections import collections
from rag.cli.evaluate import eval_group
from rag.cli.ingest import ingest
from rag.cli.query import ask, batch, search
from rag.cli.serve import mcp, serve, users
from rag.cli.tune import tune
from rag.errors import RagError


def _quiet_libraries(verbose: bool) -> None:
    """Keep third-party chatter (weight-loading bars, tokenizer warnings) off the terminal."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s: %(message)s"
    )
    if not verbose:
        # Deprecation notices for the libraries' next versions (transformers' gradient
        # checkpointing during `rag tune`, for one): nothing a user of this tool can act on.
        warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("transformers", "sentence_transformers", "bm25s", "faiss", "pypdf", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # transformers reads these when it is first imported; importing it here only to quiet it
    # would cost every command seconds, most of which never load it.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:  # already imported (a test, an embedding program)
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


class RagGroup(click.Group):
    """Turns RagError into `Error: <one line>` and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RagError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)


@click.group(cls=RagGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log what each stage does.")
@click.version_option(package_name="rag")
def cli(verbose: bool) -> None:
    """Ingest documents into collections and search them."""
    _quiet_libraries(verbose)


for _command in (ingest, search, ask, batch, collections, eval_group, tune, serve, mcp, users):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="rag")
