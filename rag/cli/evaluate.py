"""`rag eval`: retrieval quality on judged datasets, gold-passage hit rates, answer scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rag.cli.options import (
    collection_option,
    json_option,
    load_settings,
    progress_option,
    progress_setting,
    reranker_option,
    retrieval_options,
    settings_options,
    where_option,
)
from rag.errors import RagError

if TYPE_CHECKING:
    from rag.retrieval import Searcher


@click.group("eval")
def eval_group() -> None:
    """Measure retrieval quality on judged datasets."""


@eval_group.command("retrieval")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--split", default="test", show_default=True, help="Which qrels/<split>.tsv to score."
)
@collection_option(
    "Collection to build/reuse (default: the dataset folder's name).", required=False
)
@click.option(
    "--config-name",
    "configs",
    multiple=True,
    help="Only these configs (dense, bm25, hybrid, dense+rerank, hybrid+rerank).",
)
@reranker_option
@json_option("Print the results as JSON.")
@progress_option
@settings_options
def eval_retrieval(
    dataset: Path,
    split: str,
    collection: str | None,
    configs: tuple[str, ...],
    as_json: bool,
    no_progress: bool,
    config_file: Path | None,
    **overrides: Any,
) -> None:
    """nDCG@10, recall@10/100 and MRR@10 on a BEIR-format DATASET, through ingest and search."""
    from ingest.beir import BeirDataset
    from ingest.pipeline import IngestJob
    from ingest.sources import document_sources
    from rag.collection import Collection
    from rag.evaluation import CONFIGS, evaluate_retrieval
    from rag.retrieval import Searcher

    unknown = [name for name in configs if name not in CONFIGS]
    if unknown:
        raise RagError(f"unknown config {unknown[0]!r} (valid: {', '.join(CONFIGS)})")
    settings = load_settings(config_file, progress=progress_setting(no_progress), **overrides)
    data = BeirDataset(dataset)
    data.check(split)
    name = collection or data.name
    report = IngestJob(settings).run(name, document_sources(data.documents()), prune=True)
    click.echo(report.summary(), err=True)
    queries, qrels = data.queries(split), data.qrels(split)
    with Collection.open(settings.index_dir, name) as opened:
        searcher = Searcher(opened, settings)
        _say_why_reranking_is_off(searcher)
        results = evaluate_retrieval(
            searcher,
            queries,
            qrels,
            data.doc_id_of,
            list(configs) or None,
            progress=settings.progress,
        )
    if as_json:
        click.echo(
            json.dumps(
                {"dataset": data.name, "queries": len(queries), "results": results}, indent=2
            )
        )
        return
    click.echo(f"{data.name} ({split}, {len(queries)} queries)")
    metrics = list(next(iter(results.values())).keys()) if results else []
    click.echo(f"{'config':<15}" + "".join(f"{m:>12}" for m in metrics))
    for config, scores in results.items():
        click.echo(f"{config:<15}" + "".join(f"{scores[m]:>12.4f}" for m in metrics))


@eval_group.command("answers")
@click.argument("answers", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--report",
    type=click.Path(path_type=Path),
    help="Write a Markdown report (and a PNG plot) here.",
)
@json_option("Print the scores as JSON.")
def eval_answers(answers: tuple[Path, ...], report: Path | None, as_json: bool) -> None:
    """Score `rag batch` ANSWERS files against their gold labels; compare several runs."""
    from rag.answer_eval import ANSWER_METRICS, evaluate_answers, load_records, write_report

    runs = {path.stem: evaluate_answers(load_records(path)) for path in answers}
    if report is not None:
        write_report(runs, report)
        click.echo(f"wrote {report}", err=True)
    if as_json:
        click.echo(json.dumps(runs if len(runs) > 1 else next(iter(runs.values())), indent=2))
        return
    click.echo(f"{'run':<20}" + "".join(f"{m:>24}" for m in ANSWER_METRICS))
    for name, scores in runs.items():
        cells = "".join(
            f"{'-' if scores[m] is None else f'{scores[m]:.4f}':>24}" for m in ANSWER_METRICS
        )
        click.echo(f"{name:<20}{cells}")


@eval_group.command("hits")
@click.argument("questions", type=click.Path(path_type=Path))
@collection_option("Collection to search.")
@click.option(
    "-k",
    "ks",
    type=int,
    multiple=True,
    help="Cut-offs to report (repeatable; default 1, 5 and 10).",
)
@retrieval_options
@where_option
@click.option(
    "--details",
    type=click.Path(path_type=Path),
    help="Write each question's gold-passage and gold-document rank here (JSONL).",
)
@json_option("Print the scores as JSON.")
@progress_option
@settings_options
def eval_hits(
    questions: Path,
    collection: str,
    ks: tuple[int, ...],
    details: Path | None,
    as_json: bool,
    no_progress: bool,
    config_file: Path | None,
    **overrides: Any,
) -> None:
    """Gold-passage hit rate @k of QUESTIONS (JSONL or CSV with document, and paragraph or page).

    A hit is a retrieved chunk of the gold document that overlaps the gold paragraph (or lies on
    the gold page); retrieval is the same search as `rag search`. See docs/batch.md.
    """
    from rag.collection import Collection
    from rag.evaluation import HIT_KS, evaluate_hits
    from rag.questions import read_questions
    from rag.retrieval import Searcher

    settings = load_settings(config_file, progress=progress_setting(no_progress), **overrides)
    items = read_questions(questions)
    with Collection.open(settings.index_dir, collection) as opened:
        searcher = Searcher(opened, settings)
        _say_why_reranking_is_off(searcher)
        scores = evaluate_hits(searcher, items, ks or HIT_KS, progress=settings.progress)
    per_question = scores.pop("per_question")
    if details is not None:
        details.parent.mkdir(parents=True, exist_ok=True)
        details.write_text(
            "".join(json.dumps(row) + "\n" for row in per_question), encoding="utf-8"
        )
        click.echo(f"wrote {details}", err=True)
    if as_json:
        click.echo(json.dumps({"collection": collection, **scores}, indent=2))
        return
    click.echo(f"{collection}: {scores['questions']} questions ({settings.search_mode})")
    for name, value in scores.items():
        if name != "questions":
            click.echo(f"  {name:<18}{value:.4f}")


def _say_why_reranking_is_off(searcher: Searcher) -> None:
    """The reason the searcher reranks nothing, on stderr (nothing when it reranks)."""
    notice = searcher.reranker_choice().reason
    if notice:
        click.echo(notice, err=True)
