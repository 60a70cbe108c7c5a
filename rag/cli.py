"""The `rag` command line: a thin face over rag/ and ingest/. Errors are one line, no traceback."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, get_args

import click

from rag.embedding import EMBED_BACKENDS
from rag.errors import RagError
from rag.index import INDEX_BUILDERS
from rag.retrieval import SEARCH_MODES
from rag.settings import LLMBackendName, Settings
from rag.tune import RERANKER_ARCHS as TUNE_ARCHS
from rag.tune import RERANKER_LOSSES as TUNE_LOSSES
from rag.tune import SYNTHETIC_SOURCES as TUNE_SYNTHETIC
from rag.types import shown

F = TypeVar("F", bound=Callable[..., Any])
LLM_BACKEND_NAMES: tuple[str, ...] = get_args(LLMBackendName)


def _quiet_libraries(verbose: bool) -> None:
    """Keep third-party chatter (weight-loading bars, tokenizer warnings) off the terminal."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s: %(message)s"
    )
    for name in ("transformers", "sentence_transformers", "bm25s", "faiss", "pypdf", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


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


def settings_options(func: F) -> F:
    """--config and --index-dir, shared by every command that reads settings."""

    @click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path),
        help="TOML settings file (default: ./rag.toml).",
    )
    @click.option(
        "--index-dir",
        type=click.Path(path_type=Path),
        help="Where collections live (RAG_INDEX_DIR).",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def engine_options(workers_help: str) -> Callable[[F], F]:
    """--engine, --address and --workers: where a job runs (docs/scaling.md)."""

    def decorate(func: F) -> F:
        func = click.option(
            "--workers", "ray_workers", type=click.IntRange(min=1), help=workers_help
        )(func)
        func = click.option(
            "--address", "ray_address", help="Ray cluster address (default: RAY_ADDRESS)."
        )(func)
        return click.option(
            "--engine",
            type=click.Choice(["local", "ray"]),
            help="Run here (default) or on a Ray cluster; see docs/scaling.md.",
        )(func)

    return decorate


def load_settings(config_file: Path | None, **overrides: Any) -> Settings:
    return Settings.load(config_file, **overrides)


@click.group(cls=RagGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log what each stage does.")
@click.version_option(package_name="rag")
def cli(verbose: bool) -> None:
    """Ingest documents into collections and search them."""
    _quiet_libraries(verbose)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-c", "--collection", required=True, help="Collection to create or update.")
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
@click.option(
    "--index-type", type=click.Choice(["auto", *INDEX_BUILDERS]), help="FAISS index kind."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where embeddings run.")
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
@click.option("--ocr", type=click.Choice(["auto", "off", "force"]), help="OCR PDF pages (auto).")
@engine_options("Ray actors that embed (default: one per GPU, else one per 2 CPUs).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
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

    settings = load_settings(config_file, progress=False if no_progress else None, **overrides)
    # Each failure was reported on its own line as it happened; the summary counts them.
    report = IngestJob(settings).run_files(collection, list(paths), prune=prune)
    click.echo(report.summary())
    if report.failed:
        sys.exit(1)


@cli.command()
@click.argument("query")
@click.option("-c", "--collection", required=True, help="Collection to search.")
@click.option("-k", "--top-k", type=int, help="How many hits to show.")
@click.option(
    "--mode",
    "search_mode",
    type=click.Choice(SEARCH_MODES),
    help="Retrieval mode (default hybrid).",
)
@click.option(
    "--rerank/--no-rerank",
    default=None,
    help="Rerank the top hits (default on when a reranker is available: the collection's own, "
    "registered by `rag tune reranker`, else the `reranker` setting).",
)
@click.option(
    "--reranker", help="Reranker: a cross-encoder hub id or folder, or `maxsim` (untrained)."
)
@click.option(
    "--embedder",
    "embedding_model",
    help="Refuse to search unless the collection uses this embedder.",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"hits": [...]} as JSON.')
@settings_options
def search(
    query: str, collection: str, as_json: bool, config_file: Path | None, **overrides: Any
) -> None:
    """Search a collection and print the best chunks."""
    from rag.collection import Collection
    from rag.retrieval import Searcher

    settings = load_settings(config_file, **overrides)
    opened = Collection.open(settings.index_dir, collection)
    try:
        result = Searcher(opened, settings).search(query)
    finally:
        opened.close()
    for notice in result.notices:
        click.echo(notice, err=True)
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
        return
    if not result.hits:
        click.echo("No matching passages.")
    for rank, hit in enumerate(result.hits, start=1):
        text = " ".join(hit.chunk.text.split())
        click.echo(f"{rank}. [{hit.score:.4f}] {shown(hit.chunk.source)} (page {hit.chunk.page})")
        click.echo(f"   {text[:400]}{'…' if len(text) > 400 else ''}")


@cli.command()
@click.argument("question")
@click.option("-c", "--collection", required=True, help="Collection to answer from.")
@click.option("--backend", "llm_backend", type=click.Choice(LLM_BACKEND_NAMES), help="LLM backend.")
@click.option("--model", "llm_model", help="LLM model name (openai) or folder (transformers).")
@click.option(
    "--base-url", "llm_base_url", help="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1."
)
@click.option("--mode", "search_mode", type=click.Choice(SEARCH_MODES), help="Retrieval mode.")
@click.option("--rerank/--no-rerank", default=None, help="Rerank the top hits with the reranker.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer record as JSON.")
@settings_options
def ask(
    question: str, collection: str, as_json: bool, config_file: Path | None, **overrides: Any
) -> None:
    """Answer QUESTION from a collection, citing numbered sources."""
    from rag.collection import Collection
    from rag.generation import make_llm
    from rag.pipeline import Answerer
    from rag.retrieval import Searcher
    from rag.types import AnswerDone, AnswerToken

    settings = load_settings(config_file, **overrides)
    opened = Collection.open(settings.index_dir, collection)
    try:
        answerer = Answerer(Searcher(opened, settings), make_llm(settings), settings)
        answer = None
        for event in answerer.stream(question):
            if isinstance(event, AnswerToken) and not as_json:
                click.echo(event.text, nl=False)
            elif isinstance(event, AnswerDone):
                answer = event.answer
    finally:
        opened.close()
    if answer is None:  # the stream always ends with AnswerDone; this keeps types honest
        raise RagError("no answer was produced")
    for notice in answer.notices:
        click.echo(notice, err=True)
    if as_json:
        click.echo(json.dumps(answer.to_json(), ensure_ascii=False, indent=2))
        return
    if answer.refused:
        click.echo(answer.text)
        return
    click.echo("\n")
    unsupported = [s for s in answer.sentences if not s.supported]
    for citation in answer.citations:
        text = " ".join(citation.chunk.text.split())
        click.echo(f"[{citation.n}] {shown(citation.chunk.source)} (page {citation.chunk.page})")
        click.echo(f"    {text[:300]}{'…' if len(text) > 300 else ''}")
    if unsupported:
        click.echo(f"\n{len(unsupported)} sentence(s) not supported by their cited sources:")
        for sentence in unsupported:
            click.echo(f"  - {shown(sentence.text)} (support {sentence.support:.2f})")


@cli.command()
@click.argument("questions", type=click.Path(path_type=Path))
@click.option("-c", "--collection", required=True, help="Collection to answer from.")
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Answers file (JSONL); a CSV summary is written beside it.",
)
@click.option(
    "--concurrency", "llm_concurrency", type=int, help="Questions in flight at once (default 4)."
)
@click.option("--backend", "llm_backend", type=click.Choice(LLM_BACKEND_NAMES), help="LLM backend.")
@click.option("--model", "llm_model", help="LLM model name (openai) or folder (transformers).")
@click.option("--base-url", "llm_base_url", help="OpenAI-compatible endpoint.")
@engine_options("Ray workers sharing the --concurrency slots (default: one per CPU).")
@click.option("--no-progress", is_flag=True)
@settings_options
def batch(
    questions: Path,
    collection: str,
    out: Path,
    no_progress: bool,
    config_file: Path | None,
    **overrides: Any,
) -> None:
    """Answer every question in QUESTIONS (JSONL or CSV: id, question[, answer, document, page]).

    Resumable: run it again and questions already in OUT are skipped, whichever engine wrote it.
    With --engine ray, workers on a Ray cluster answer; the index folder must be at the same path on
    every node.
    """
    from rag.batch import check_outputs, run_batch, run_batch_on_ray
    from rag.collection import Collection
    from rag.generation import make_llm
    from rag.pipeline import Answerer
    from rag.questions import read_questions
    from rag.retrieval import Searcher

    settings = load_settings(config_file, progress=False if no_progress else None, **overrides)
    check_outputs(out, questions)  # before anything is answered, or a clash is found at the end
    items = read_questions(questions)
    if settings.engine == "ray":
        report = run_batch_on_ray(settings, collection, items, out)
    else:
        opened = Collection.open(settings.index_dir, collection)
        try:
            answerer = Answerer(Searcher(opened, settings), make_llm(settings), settings)
            report = run_batch(answerer, items, out, settings.llm_concurrency, settings.progress)
        finally:
            opened.close()
    for qid, error in report.errors[:20]:
        click.echo(f"failed: {shown(qid)}: {shown(error)}", err=True)
    click.echo(report.summary())
    if report.failed:
        sys.exit(1)


@cli.group()
def collections() -> None:
    """List, inspect and delete collections."""


@collections.command("list")
@click.option("--json", "as_json", is_flag=True)
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
@click.option("--json", "as_json", is_flag=True)
@settings_options
def collections_info(
    name: str, as_json: bool, config_file: Path | None, index_dir: Path | None
) -> None:
    """Documents, chunks, embedder, chunking, index and reranker of a collection."""
    from rag.collection import Collection

    settings = load_settings(config_file, index_dir=index_dir)
    opened = Collection.open(settings.index_dir, name)
    try:
        documents, chunks = opened.store.counts()
        manifest = opened.manifest
        index = opened.index_info()
        info = {
            "name": opened.name,
            "path": str(opened.path),
            "documents": documents,
            "chunks": chunks,
            "embedder": manifest["embedder"],
            "chunking": manifest["chunking"],
            "index": {
                "type": index.get("kind", "not built"),
                "setting": settings.index_type,
                **({"tuning": index["tuning"]} if "tuning" in index else {}),
            },
            "lexical": manifest.get("lexical"),
            "reranker": manifest.get("reranker"),
            "created_at": manifest.get("created_at"),
        }
    finally:
        opened.close()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo(f"{info['name']}  ({info['path']})")
    click.echo(f"  documents: {documents}   chunks: {chunks}")
    click.echo(
        f"  embedder:  {manifest['embedder']['name']} ({manifest['embedder']['dimension']}-d)"
    )
    chunking = manifest["chunking"]
    click.echo(
        f"  chunking:  {chunking['chunk_tokens']} tokens, overlap {chunking['chunk_overlap']}"
    )
    tuning = index.get("tuning")
    tuned = ", ".join(f"{k} {v}" for k, v in tuning.items()) if tuning else ""
    click.echo(f"  index:     {info['index']['type']}" + (f" (tuned: {tuned})" if tuned else ""))
    reranker = manifest.get("reranker")
    if reranker:
        fusion = reranker.get("fusion") or {}
        kind = reranker.get("arch", "cross-encoder")
        weight = f", fusion weight {fusion['weight']}" if "weight" in fusion else ""
        click.echo(f"  reranker:  {reranker['path']} ({kind}{weight})")
    else:
        click.echo("  reranker:  none registered")


@collections.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@settings_options
def collections_delete(
    name: str, yes: bool, config_file: Path | None, index_dir: Path | None
) -> None:
    """Delete a collection, its files and its uploads (even when damaged)."""
    from rag.collection import collection_path, delete_collection

    settings = load_settings(config_file, index_dir=index_dir)
    collection_path(settings.index_dir, name)  # fail early, naming the known collections
    if not yes and not click.confirm(f"Delete collection {name!r}?", default=False):
        click.echo("Kept.")
        return
    delete_collection(settings.index_dir, name)
    click.echo(f"Deleted {name}.")


@cli.group("eval")
def eval_group() -> None:
    """Measure retrieval quality on judged datasets."""


@eval_group.command("retrieval")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option(
    "--split", default="test", show_default=True, help="Which qrels/<split>.tsv to score."
)
@click.option(
    "-c", "--collection", help="Collection to build/reuse (default: the dataset folder's name)."
)
@click.option(
    "--config-name",
    "configs",
    multiple=True,
    help="Only these configs (dense, bm25, hybrid, dense+rerank, hybrid+rerank).",
)
@click.option(
    "--reranker", help="Reranker: a cross-encoder hub id or folder, or `maxsim` (untrained)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--no-progress", is_flag=True)
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
    settings = load_settings(config_file, progress=False if no_progress else None, **overrides)
    data = BeirDataset(dataset)
    data.check(split)
    name = collection or data.name
    report = IngestJob(settings).run(name, document_sources(data.documents()), prune=True)
    click.echo(report.summary(), err=True)
    queries, qrels = data.queries(split), data.qrels(split)
    opened = Collection.open(settings.index_dir, name)
    try:
        searcher = Searcher(opened, settings)
        notice = searcher.reranker().reason
        if notice:
            click.echo(notice, err=True)
        results = evaluate_retrieval(
            searcher,
            queries,
            qrels,
            data.doc_id_of,
            list(configs) or None,
            progress=settings.progress,
        )
    finally:
        opened.close()
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
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
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
@click.option("-c", "--collection", required=True, help="Collection to search.")
@click.option(
    "-k",
    "ks",
    type=int,
    multiple=True,
    help="Cut-offs to report (repeatable; default 1, 5 and 10).",
)
@click.option("--mode", "search_mode", type=click.Choice(SEARCH_MODES), help="Retrieval mode.")
@click.option("--rerank/--no-rerank", default=None, help="Rerank the top hits with the reranker.")
@click.option(
    "--details",
    type=click.Path(path_type=Path),
    help="Write each question's gold-passage and gold-document rank here (JSONL).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
@click.option("--no-progress", is_flag=True)
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

    settings = load_settings(config_file, progress=False if no_progress else None, **overrides)
    items = read_questions(questions)
    opened = Collection.open(settings.index_dir, collection)
    try:
        searcher = Searcher(opened, settings)
        notice = searcher.reranker().reason
        if notice:
            click.echo(notice, err=True)
        scores = evaluate_hits(searcher, items, ks or HIT_KS, progress=settings.progress)
    finally:
        opened.close()
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


# -- rag tune -----------------------------------------------------------------------------------


def tune_options(func: F) -> F:
    """The options `rag tune reranker` and `rag tune retriever` share."""
    options = [
        click.option("-c", "--collection", required=True, help="Collection to train on."),
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
            type=click.Choice(list(TUNE_SYNTHETIC)),
            default="auto",
            show_default=True,
            help="Where queries come from without labels: "
            + "; ".join(f"{k}: {v}" for k, v in TUNE_SYNTHETIC.items()),
        ),
        click.option(
            "--max-queries",
            type=int,
            default=2000,
            show_default=True,
            help="Synthetic queries to make (one per sampled chunk).",
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
            "--held-out-max", type=int, default=200, show_default=True, help="At most this many."
        ),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option(
            "--restart", is_flag=True, help="Start afresh instead of resuming an interrupted run."
        ),
        click.option(
            "--no-register",
            is_flag=True,
            help="Train and evaluate, but leave the collection as is.",
        ),
        click.option(
            "--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Where to train."
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the report and card as JSON."),
        click.option("--no-progress", is_flag=True),
        settings_options,
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _run_tune(
    kind: str, collection: str, as_json: bool, config_file: Path | None, **kw: Any
) -> None:
    from rag.tune import TuneOptions, tune_reranker, tune_retriever

    no_progress = kw.pop("no_progress")
    settings = load_settings(
        config_file,
        progress=False if no_progress else None,
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


@cli.group()
def tune() -> None:
    """Train the collection's own reranker or retriever on its documents."""


@tune.command("reranker")
@tune_options
@click.option(
    "--arch",
    type=click.Choice(list(TUNE_ARCHS)),
    default="maxsim",
    show_default=True,
    help="; ".join(f"{k}: {v}" for k, v in TUNE_ARCHS.items()),
)
@click.option(
    "--loss",
    type=click.Choice(list(TUNE_LOSSES)),
    default="mnrl",
    show_default=True,
    help="Cross-encoders only (maxsim trains with mnrl). "
    + "; ".join(f"{k}: {v}" for k, v in TUNE_LOSSES.items()),
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


def main() -> None:
    cli(prog_name="rag")


if __name__ == "__main__":
    main()
