"""Build or update the `demo` collection from the articles in ui/demo_corpus (`make demo`), and
train its own reranker once.

    python -m ui.demo               # then: streamlit run ui/app.py
    python -m ui.demo --no-tune     # the collection only
    python -m ui.demo --background  # the collection now, the reranker in a background process
                                    # (what `make run` does: the chat is usable at once)

Incremental: a second run finds every article unchanged and only checks hashes. The reranker is
trained on the SQuAD questions in ui/demo_questions.jsonl (`rag tune reranker --questions`); once
a tuned reranker is saved for the collection, registered or refused, it is not trained again.
"""

from __future__ import annotations

import logging
import subprocess
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


def tuned_before(settings: Settings) -> bool:
    """Whether a tuned reranker (registered or refused) was saved for the demo already."""
    with Collection.open(settings.index_dir, DEMO_COLLECTION) as collection:
        return any((collection.path / "models").glob("reranker-*/rag-tune.json"))


def tune_in_background(settings: Settings) -> Path:
    """Start `python -m ui.demo --tune-only` as a child process that outlives this one; its
    output goes to a log file in the collection's folder (returned). The chat's sidebar shows
    its progress (rag/tune/progress.py); Ctrl-C in the terminal stops it with the chat, and the
    next run resumes from its last checkpoint."""
    with Collection.open(settings.index_dir, DEMO_COLLECTION) as collection:
        log = collection.path / "tune" / "background.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        subprocess.Popen(
            [sys.executable, "-m", "ui.demo", "--tune-only"],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return log


def _quiet_libraries() -> None:
    """Keep weight-loading bars and tokenizer warnings off the terminal; our own bar stays."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    for name in ("transformers", "sentence_transformers", "bm25s", "faiss"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    _quiet_libraries()
    if "--tune-only" in args:
        return _tune_only()
    tune = "--no-tune" not in args
    try:
        settings = Settings.load()
        report = build_demo(settings)
    except RagError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    print(report.summary())
    for source, reason in report.failed:
        print(f"failed: {source}: {reason}", file=sys.stderr)
    if tune and "--background" in args:
        if not tuned_before(settings):
            log = tune_in_background(settings)
            print(
                "Training the demo's reranker in the background (about 10 minutes on 2 CPU "
                f"cores); the chat shows its progress and switches to it when done. Log: {log}"
            )
        tune = False
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


def _tune_only() -> int:
    """The background half of `--background`: train (or resume) the demo's reranker."""
    try:
        settings = Settings.load(progress=False)
        tuned = tune_demo(settings)
    except RagError as e:
        print(f"the demo reranker was not trained: {e}", file=sys.stderr)
        return 1
    print(tuned.message if tuned else "The demo's reranker was trained before: kept.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
