"""Build or update the `demo` collection from the articles in ui/demo_corpus (`make demo`), and
train its own reranker once.

    python -m ui.demo             # then: streamlit run ui/app.py
    python -m ui.demo --no-tune   # the collection only

Incremental: a second run finds every article unchanged and only checks hashes. The reranker is
trained on the SQuAD questions in ui/demo_questions.jsonl (`rag tune reranker --questions`); once
a tuned reranker is saved for the collection, registered or refused, it is not trained again.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ingest.pipeline import IngestJob, IngestReport
from rag.collection import Collection
from rag.errors import RagError
from rag.generation import embedded_model_folder
from rag.settings import Settings
from rag.tune import TuneOptions, TuneReport, tune_reranker

DEMO_COLLECTION = "demo"
DEMO_CORPUS = Path(__file__).resolve().parent / "demo_corpus"
# SQuAD questions about the corpus with their gold passages (made by ui/demo_questions.py): the
# labels the demo's reranker is trained on.
DEMO_QUESTIONS = Path(__file__).resolve().parent / "demo_questions.jsonl"
# Credits for the corpus: shipped beside it, never ingested.
NOT_ARTICLES = frozenset({"ATTRIBUTION.md"})
# Articles shipped as PDF instead of Markdown (rendered from SQuAD as the SQuAD benchmark renders
# its PDFs, by `python -m ui.demo_questions`), so that the demo shows page previews too.
PDF_ARTICLES = ("Nikola_Tesla", "Steam_engine")
ARTICLE_SUFFIXES = (".md", ".pdf")


def demo_files(corpus: Path = DEMO_CORPUS) -> list[Path]:
    """The article files of the demo corpus (absolute, so reruns from any folder match)."""
    return sorted(
        p.resolve()
        for p in corpus.iterdir()
        if p.suffix in ARTICLE_SUFFIXES and p.name not in NOT_ARTICLES
    )


def build_demo(settings: Settings) -> IngestReport:
    """Create or update the demo collection under `settings.index_dir`."""
    files = demo_files()
    if not files:
        raise RagError(f"no demo articles found in {DEMO_CORPUS}")
    # prune: an article removed from the corpus (or a moved checkout) leaves no stale copy behind.
    return IngestJob(settings).run_files(DEMO_COLLECTION, files, prune=True)


def tune_demo(settings: Settings, options: TuneOptions | None = None) -> TuneReport | None:
    """Train the demo collection's reranker on the demo questions, unless a tuned one was already
    saved for it (the result is cached: registered or refused, it stands). None when skipped."""
    collection = Collection.open(settings.index_dir, DEMO_COLLECTION)
    try:
        done = sorted((collection.path / "models").glob("reranker-*/rag-tune.json"))
    finally:
        collection.close()
    if done:
        return None
    # Two in-training evaluations of 32 queries: each costs about a minute on 2 CPU cores.
    options = options or TuneOptions(questions_file=DEMO_QUESTIONS, evals=2, eval_queries=32)
    return tune_reranker(settings, DEMO_COLLECTION, options)


def _quiet_libraries() -> None:
    """Keep weight-loading bars and tokenizer warnings off the terminal; our own bar stays."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    for name in ("transformers", "sentence_transformers", "bm25s", "faiss"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    tune = "--no-tune" not in (sys.argv[1:] if argv is None else argv)
    _quiet_libraries()
    try:
        settings = Settings.load()
        report = build_demo(settings)
    except RagError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    print(report.summary())
    for source, reason in report.failed:
        print(f"failed: {source}: {reason}", file=sys.stderr)
    if tune:
        print(
            "Training the demo's reranker on its SQuAD questions, once (about 10 minutes on "
            "2 CPU cores; skip it with --no-tune)…"
        )
        try:
            tuned = tune_demo(settings)
        except RagError as e:
            print(f"warning: the demo reranker was not trained: {e}", file=sys.stderr)
        else:
            print(tuned.message if tuned else "The demo's reranker was trained before: kept.")
    if settings.llm_backend == "embedded":
        # Converting the packaged GGUF takes about 30 s, once: better here than on the first
        # question in the chat.
        print("Preparing the embedded answer model (SmolLM2-135M; about 30 s the first time)…")
        try:
            folder = embedded_model_folder()
        except RagError as e:
            print(f"warning: the embedded answer model is not available: {e}", file=sys.stderr)
        else:
            print(f"Embedded answer model ready in {folder}.")
    print(f"Collection {DEMO_COLLECTION!r} is in {settings.index_dir}.")
    print("Start the chat with: streamlit run ui/app.py   (or: make run)")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
