"""`rag tune reranker` and `rag tune retriever`: train the collection's own models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from rag.cli.options import (
    F,
    apply_options,
    collection_option,
    device_option,
    json_option,
    load_settings,
    progress_option,
    progress_setting,
    settings_options,
)
from rag.tune import RARE_SHARE, RERANKER_ARCHS, RERANKER_LOSSES, SYNTHETIC_SOURCES


def tune_options(func: F) -> F:
    """The options `rag tune reranker` and `rag tune retriever` share."""
    return apply_options(
        func,
        [
            collection_option("Collection to train on."),
            click.option(
                "--queries",
                "queries_file",
                type=click.Path(path_type=Path),
                help="Labelled queries (BEIR queries.jsonl); with --qrels.",
            ),
            click.option(
                "--qrels",
                "qrels_file",
                type=click.Path(path_type=Path),
                help="Judgments (BEIR qrels .tsv: query-id, corpus-id, score); with --queries.",
            ),
            click.option(
                "--questions",
                "questions_file",
                type=click.Path(path_type=Path),
                help="Questions with their gold passage (JSONL/CSV as `rag eval hits` reads: id, "
                "question, document, and paragraph or page), judged passage by passage.",
            ),
            click.option(
                "--synthetic",
                type=click.Choice(list(SYNTHETIC_SOURCES)),
                default="auto",
                show_default=True,
                help="Where queries come from without labels: "
                + "; ".join(f"{k}: {v}" for k, v in SYNTHETIC_SOURCES.items()),
            ),
            click.option(
                "--max-queries",
                type=int,
                default=2000,
                show_default=True,
                help="Synthetic queries to make (one per sampled chunk).",
            ),
            click.option(
                "--drop-rare",
                "rare_share",
                type=click.FloatRange(0.0, 0.9),
                default=RARE_SHARE,
                show_default=True,
                help="Self-supervised queries: the share of a cut-out sentence's distinct words "
                "dropped from its query, rarest first.",
            ),
            click.option("--base", help="Model to start from (hub id or folder)."),
            click.option("--epochs", type=float, default=1.0, show_default=True),
            click.option(
                "--max-steps", type=int, help="Stop after this many steps (overrides epochs)."
            ),
            click.option("--batch-size", type=int, help="Training batch size."),
            click.option("--lr", "learning_rate", type=float, help="Peak learning rate."),
            click.option(
                "--negatives",
                type=int,
                default=3,
                show_default=True,
                help="Hard negatives per query, mined by dense and BM25 search.",
            ),
            click.option(
                "--held-out",
                type=float,
                default=0.2,
                show_default=True,
                help="Fraction of queries held out for evaluation.",
            ),
            click.option(
                "--held-out-max",
                type=int,
                default=200,
                show_default=True,
                help="At most this many.",
            ),
            click.option("--seed", type=int, default=0, show_default=True),
            click.option(
                "--restart",
                is_flag=True,
                help="Start afresh instead of resuming an interrupted run.",
            ),
            click.option(
                "--no-register",
                is_flag=True,
                help="Train and evaluate, but leave the collection as is.",
            ),
            device_option("Where to train."),
            json_option("Print the report and card as JSON."),
            progress_option,
            settings_options,
        ],
    )


def _run_tune(
    kind: str, collection: str, as_json: bool, config_file: Path | None, **kw: Any
) -> None:
    from rag.tune import TuneOptions, tune_reranker, tune_retriever

    settings = load_settings(
        config_file,
        progress=progress_setting(kw.pop("no_progress")),
        index_dir=kw.pop("index_dir"),
        device=kw.pop("device"),
    )
    options = TuneOptions(register=not kw.pop("no_register"), **kw)
    run = tune_reranker if kind == "reranker" else tune_retriever
    report = run(settings, collection, options)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(report.message)


@click.group()
def tune() -> None:
    """Train the collection's own reranker or retriever on its documents."""


@tune.command("reranker")
@tune_options
@click.option(
    "--arch",
    type=click.Choice(list(RERANKER_ARCHS)),
    default="maxsim",
    show_default=True,
    help="; ".join(f"{k}: {v}" for k, v in RERANKER_ARCHS.items()),
)
@click.option(
    "--loss",
    type=click.Choice(list(RERANKER_LOSSES)),
    default="mnrl",
    show_default=True,
    help="Cross-encoders only (maxsim trains with mnrl). "
    + "; ".join(f"{k}: {v}" for k, v in RERANKER_LOSSES.items()),
)
@click.option(
    "--max-length",
    type=int,
    default=256,
    show_default=True,
    help="Tokens per text (maxsim) or per pair (cross-encoder).",
)
def tune_reranker_command(
    collection: str, as_json: bool, config_file: Path | None, **kw: Any
) -> None:
    """Fine-tune a reranker on the collection and register it when it beats no reranking.

    Labels (--queries/--qrels) when given, else synthetic queries; hard negatives from the
    collection's own dense and BM25 search; a held-out part decides. Ctrl-C keeps the best
    checkpoint so far; the same command resumes an interrupted run.
    """
    _run_tune("reranker", collection, as_json, config_file, **kw)


@tune.command("retriever")
@tune_options
def tune_retriever_command(
    collection: str, as_json: bool, config_file: Path | None, **kw: Any
) -> None:
    """Fine-tune the bi-encoder (MultipleNegativesRankingLoss), re-embed the collection and make
    the tuned model its embedder when held-out dense nDCG@10 improves."""
    _run_tune("retriever", collection, as_json, config_file, **kw)
