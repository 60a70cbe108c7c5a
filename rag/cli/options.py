"""Options that several commands share, declared once; every choice list comes from a registry.

    @click.command()
    @collection_option("Collection to search.")
    @retrieval_options
    @json_option("Print the hits as JSON.")
    @settings_options
    def search(collection: str, as_json: bool, config_file: Path | None, **overrides: Any): ...

An option named after a setting (`--mode` is `search_mode`) arrives in `**overrides`, which
`load_settings` lays over the settings file and the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from rag.retrieval import SEARCH_MODES
from rag.settings import ANSWER_MODES, DEVICES, ENGINES, LLM_BACKEND_NAMES, Settings

F = TypeVar("F", bound=Callable[..., Any])


def load_settings(config_file: Path | None, **overrides: Any) -> Settings:
    """The settings, with the command's flags (None: not given) over the file and environment."""
    return Settings.load(config_file, **overrides)


def progress_setting(no_progress: bool) -> bool | None:
    """The `progress` override `--no-progress` stands for (None: leave the setting as it is)."""
    return False if no_progress else None


def apply_options(func: F, options: list[Callable[[F], F]]) -> F:
    """`options` applied so that `--help` lists them in the order given."""
    for option in reversed(options):
        func = option(func)
    return func


def settings_options(func: F) -> F:
    """--config and --index-dir, shared by every command that reads settings."""
    return apply_options(
        func,
        [
            click.option(
                "--config",
                "config_file",
                type=click.Path(path_type=Path),
                help="TOML settings file (default: ./rag.toml).",
            ),
            click.option(
                "--index-dir",
                type=click.Path(path_type=Path),
                help="Where collections live (RAG_INDEX_DIR).",
            ),
        ],
    )


def collection_option(help: str, required: bool = True) -> Callable[[F], F]:
    """-c/--collection: the collection a command reads or writes."""
    return click.option("-c", "--collection", required=required, help=help)


def retrieval_options(func: F) -> F:
    """--mode and --rerank/--no-rerank: how search finds the passages."""
    return apply_options(
        func,
        [
            click.option(
                "--mode",
                "search_mode",
                type=click.Choice(SEARCH_MODES),
                help=f"Retrieval mode (default {Settings.model_fields['search_mode'].default}).",
            ),
            click.option(
                "--rerank/--no-rerank",
                default=None,
                help="Rerank the top hits (default on when a reranker is available: the "
                "collection's own, registered by `rag tune reranker`, else the `reranker` "
                "setting).",
            ),
            click.option(
                "--glossary",
                "query_glossaries",
                multiple=True,
                metavar="NAME|FILE",
                callback=_glossaries,
                help="Add the words a glossary gives for a question's terms before searching "
                "(repeatable): a built-in one (finance, the default) or a TOML file; "
                "`--glossary none` searches the question as asked.",
            ),
        ],
    )


def _glossaries(_ctx: Any, _param: Any, value: tuple[str, ...]) -> tuple[str, ...] | None:
    if not value:
        return None
    return tuple(name for name in value if name.lower() != "none")


def where_option(func: F) -> F:
    """--where KEY=VALUE (repeatable): the documents and pages a search may return."""
    return click.option(
        "--where",
        multiple=True,
        metavar="KEY=VALUE",
        callback=lambda _ctx, _param, value: tuple(value) or None,
        help="Search only matching chunks (repeatable; different keys must all match): "
        "document=GLOB (file name), page=N or A-B, or a metadata key=value given at ingest "
        "with --meta (also title= and type=).",
    )(func)


def reranker_option(func: F) -> F:
    """--reranker: the configured reranker, for a collection that has none of its own."""
    return click.option(
        "--reranker",
        help="Reranker: a cross-encoder hub id or folder, a MaxSim model folder `rag tune` saved, "
        "`maxsim` (untrained) or `maxsim:<bi-encoder>`.",
    )(func)


def llm_options(func: F) -> F:
    """--answer-mode, and --backend, --model and --base-url: the LLM that writes the answers."""
    return apply_options(
        func,
        [
            click.option(
                "--answer-mode",
                "answer_mode",
                type=click.Choice(ANSWER_MODES),
                help="Who answers: the small reader when sure, else the LLM (auto); the reader "
                "only (extractive); the LLM only (llm).",
            ),
            click.option(
                "--backend",
                "llm_backend",
                type=click.Choice(LLM_BACKEND_NAMES),
                help="LLM backend.",
            ),
            click.option(
                "--model", "llm_model", help="LLM model name (openai) or folder (transformers)."
            ),
            click.option(
                "--base-url",
                "llm_base_url",
                help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1.",
            ),
        ],
    )


def device_option(help: str) -> Callable[[F], F]:
    """--device: where the command's models run."""
    return click.option("--device", type=click.Choice(DEVICES), help=help)


def engine_options(workers_help: str) -> Callable[[F], F]:
    """--engine, --address and --workers: where a job runs (docs/scaling.md)."""

    def decorate(func: F) -> F:
        return apply_options(
            func,
            [
                click.option(
                    "--engine",
                    type=click.Choice(ENGINES),
                    help="Run here (default) or on a Ray cluster; see docs/scaling.md.",
                ),
                click.option(
                    "--address", "ray_address", help="Ray cluster address (default: RAY_ADDRESS)."
                ),
                click.option(
                    "--workers", "ray_workers", type=click.IntRange(min=1), help=workers_help
                ),
            ],
        )

    return decorate


def json_option(help: str | None = None) -> Callable[[F], F]:
    """--json: print the result as JSON instead of lines for a person."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def progress_option(func: F) -> F:
    """--no-progress: no progress bar (the `progress` setting, off)."""
    return click.option("--no-progress", is_flag=True, help="No progress bar.")(func)
