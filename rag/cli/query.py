"""`rag search`, `rag ask` and `rag batch`: passages, one answer, or a file of answers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from rag.cli.options import (
    collection_option,
    engine_options,
    json_option,
    llm_options,
    load_settings,
    progress_option,
    progress_setting,
    reranker_option,
    retrieval_options,
    settings_options,
    where_option,
)
from rag.errors import RagError
from rag.types import Answer, shown


@click.command()
@click.argument("query")
@collection_option("Collection to search.")
@click.option("-k", "--top-k", type=int, help="How many hits to show.")
@retrieval_options
@where_option
@reranker_option
@click.option(
    "--embedder",
    "embedding_model",
    help="Refuse to search unless the collection uses this embedder.",
)
@json_option('Print {"hits": [...]} as JSON.')
@settings_options
def search(
    query: str, collection: str, as_json: bool, config_file: Path | None, **overrides: Any
) -> None:
    """Search a collection and print the best chunks."""
    from rag.collection import Collection
    from rag.retrieval import Searcher

    settings = load_settings(config_file, **overrides)
    with Collection.open(settings.index_dir, collection) as opened:
        result = Searcher(opened, settings).search(query)
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


@click.command()
@click.argument("question")
@collection_option("Collection to answer from.")
@llm_options
@retrieval_options
@where_option
@json_option("Print the answer record as JSON.")
@settings_options
def ask(
    question: str, collection: str, as_json: bool, config_file: Path | None, **overrides: Any
) -> None:
    """Answer QUESTION from a collection, citing numbered sources."""
    from rag.stack import Stack
    from rag.types import AnswerDone, AnswerToken

    settings = load_settings(config_file, **overrides)
    answer = None
    with Stack.open(settings, collection) as stack:
        for event in stack.answerer.stream(question):
            if isinstance(event, AnswerToken) and not as_json:
                click.echo(event.text, nl=False)
            elif isinstance(event, AnswerDone):
                answer = event.answer
    if answer is None:  # the stream always ends with AnswerDone; this keeps types honest
        raise RagError("no answer was produced")
    for notice in answer.notices:
        click.echo(notice, err=True)
    if as_json:
        click.echo(json.dumps(answer.to_json(), ensure_ascii=False, indent=2))
    elif answer.refused:
        click.echo(answer.text)
        click.echo(answered_by_line(answer))
    else:
        _print_sources(answer)


def _print_sources(answer: Answer) -> None:
    """After the streamed answer: who wrote it, its numbered sources (the quoted sentence for a
    reader's answer), and the sentences they do not support."""
    click.echo("\n")
    click.echo(answered_by_line(answer))
    unsupported = [s for s in answer.sentences if not s.supported]
    quote = answer.quote
    for citation in answer.citations:
        text = " ".join(citation.chunk.text.split())
        if quote is not None and quote.n == citation.n:
            text = "“" + " ".join(citation.chunk.text[quote.start : quote.end].split()) + "”"
        click.echo(f"[{citation.n}] {shown(citation.chunk.source)} (page {citation.chunk.page})")
        click.echo(f"    {text[:300]}{'…' if len(text) > 300 else ''}")
    if unsupported:
        click.echo(f"\n{len(unsupported)} sentence(s) not supported by their cited sources:")
        for sentence in unsupported:
            why = f": {sentence.reason}" if sentence.reason else ""
            click.echo(f"  - {shown(sentence.text)} (support {sentence.support:.2f}{why})")


def answered_by_line(answer: Answer) -> str:
    """Who wrote the answer and how sure the reader was, in words."""
    reasons = [] if answer.confidence is None else [f"reader confidence {answer.confidence:.0%}"]
    if answer.answered_by == "refused" and answer.answerable is not None:
        reasons.append(f"{answer.answerable:.0%} likely they do")
    sure = f" ({'; '.join(reasons)})" if reasons else ""
    if answer.answered_by == "reader":
        return f"Answered by the small reader, quoting its source{sure}."
    if answer.answered_by == "refused":
        return f"Refused: the sources do not answer this{sure}."
    return f"Written by the LLM from the sources{sure}."


@click.command()
@click.argument("questions", type=click.Path(path_type=Path))
@collection_option("Collection to answer from.")
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
@llm_options
@where_option
@engine_options("Ray workers sharing the --concurrency slots (default: one per CPU).")
@progress_option
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
    With --engine ray (or the `engine` setting), workers on a Ray cluster answer; the index
    folder must be at the same path on every node.
    """
    from rag.batch import answer_questions, check_outputs
    from rag.questions import read_questions

    settings = load_settings(config_file, progress=progress_setting(no_progress), **overrides)
    check_outputs(out, questions)  # before anything is answered, or a clash is found at the end
    report = answer_questions(settings, collection, read_questions(questions), out)
    for qid, error in report.errors[:20]:
        click.echo(f"failed: {shown(qid)}: {shown(error)}", err=True)
    click.echo(report.summary())
    if report.failed:
        sys.exit(1)
