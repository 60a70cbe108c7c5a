"""Build or update the `demo` collection from the articles in ui/demo_corpus (`make demo`).

    python -m ui.demo          # then: streamlit run ui/app.py

Incremental: a second run finds every article unchanged and only checks hashes.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ingest.pipeline import IngestJob, IngestReport
from rag.errors import RagError
from rag.generation import embedded_model_folder
from rag.settings import Settings

DEMO_COLLECTION = "demo"
DEMO_CORPUS = Path(__file__).resolve().parent / "demo_corpus"
# Credits for the corpus: shipped beside it, never ingested.
NOT_ARTICLES = frozenset({"ATTRIBUTION.md"})


def demo_files(corpus: Path = DEMO_CORPUS) -> list[Path]:
    """The article files of the demo corpus (absolute, so reruns from any folder match)."""
    return sorted(p.resolve() for p in corpus.glob("*.md") if p.name not in NOT_ARTICLES)


def build_demo(settings: Settings) -> IngestReport:
    """Create or update the demo collection under `settings.index_dir`."""
    files = demo_files()
    if not files:
        raise RagError(f"no demo articles found in {DEMO_CORPUS}")
    # prune: an article removed from the corpus (or a moved checkout) leaves no stale copy behind.
    return IngestJob(settings).run_files(DEMO_COLLECTION, files, prune=True)


def _quiet_libraries() -> None:
    """Keep weight-loading bars and tokenizer warnings off the terminal; our own bar stays."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    for name in ("transformers", "sentence_transformers", "bm25s", "faiss"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main() -> int:
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
