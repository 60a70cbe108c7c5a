"""`python -m ui.demo`: the demo corpus, and building the demo collection from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.collection import Collection
from rag.settings import Settings
from ui.demo import DEMO_COLLECTION, DEMO_CORPUS, PDF_ARTICLES, build_demo, demo_files, main

ARTICLES = 8


def article_text(path: Path) -> list[str]:
    """Each page's text as ingest reads it, spaces normalised (a Markdown file is one page)."""
    from ingest.loaders import load_document

    return [" ".join(page.text.split()) for page in load_document(path).pages]


def test_corpus_is_eight_articles_with_attribution() -> None:
    files = demo_files()
    assert len(files) == ARTICLES and all(path.is_absolute() for path in files)
    assert "ATTRIBUTION.md" not in {path.name for path in files}
    attribution = (DEMO_CORPUS / "ATTRIBUTION.md").read_text()
    assert "CC BY-SA 4.0" in attribution and "rajpurkar.github.io/SQuAD-explorer" in attribution
    assert {path.stem for path in files if path.suffix == ".pdf"} == set(PDF_ARTICLES)
    for path in files:
        title = path.stem.replace("_", " ")
        if path.suffix == ".pdf":  # rendered with its title on top of the first page
            assert article_text(path)[0].startswith(title + " ")
        else:
            first = path.read_text().split("\n", 1)[0]
            assert first == "# " + title
    assert sum(path.stat().st_size for path in DEMO_CORPUS.iterdir()) < 400_000


def test_bad_settings_exit_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "many")
    assert main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: invalid settings: chunk_tokens") and err.count("\n") == 1


@pytest.mark.slow
def test_demo_builds_then_skips_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    index_dir = tmp_path / "indexes"
    monkeypatch.setenv("RAG_INDEX_DIR", str(index_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    assert main(["--no-tune"]) == 0
    out = capsys.readouterr().out
    assert f"{DEMO_COLLECTION}: {ARTICLES} ingested ({ARTICLES} new" in out
    assert "streamlit run ui/app.py" in out
    collection = Collection.open(index_dir, DEMO_COLLECTION)
    try:
        documents, chunks = collection.store.counts()
        sources = {Path(doc.source).name for doc in collection.store.documents()}
    finally:
        collection.close()
    assert documents == ARTICLES and chunks > ARTICLES
    assert "ATTRIBUTION.md" not in sources and "Warsaw.md" in sources

    again = build_demo(Settings.load(index_dir=index_dir, progress=False, device="cpu"))
    assert (again.unchanged, again.ingested, again.pruned, again.failed) == (ARTICLES, 0, 0, [])


def test_demo_questions_point_into_the_demo_articles(shared_data: Path) -> None:
    """Each shipped question names a demo article holding its gold sentence, and the file is what
    ui/demo_questions.py makes from SQuAD dev."""
    from rag.questions import read_questions
    from ui.demo import DEMO_QUESTIONS
    from ui.demo_questions import demo_questions

    questions = read_questions(DEMO_QUESTIONS)
    pages = {path.name: article_text(path) for path in demo_files()}
    assert len(questions) > 300 and {q.document for q in questions} == set(pages)
    for question in questions:
        # A PDF article's question names the page its paragraph is on; a Markdown one, none.
        is_pdf = str(question.document).endswith(".pdf")
        assert (question.page is not None) == is_pdf
        text = pages[str(question.document)][question.page - 1 if question.page else 0]
        assert question.paragraph and question.paragraph in text
        assert question.answer
    made = demo_questions(shared_data / "squad" / "dev-v1.1.json")
    assert [r["id"] for r in made] == [q.id for q in questions]


@pytest.mark.slow
def test_demo_reranker_is_trained_once(tmp_path: Path, minilm) -> None:
    """`python -m ui.demo` trains the demo's reranker on its questions (a few steps here), and a
    second run keeps what the first one saved instead of training again."""
    from ingest.pipeline import IngestJob
    from rag.tune import TuneOptions
    from ui.demo import DEMO_QUESTIONS, tune_demo

    settings = Settings.load(index_dir=tmp_path / "idx", progress=False, device="cpu")
    IngestJob(settings, embedder=minilm).run_files(DEMO_COLLECTION, demo_files()[:2])
    options = TuneOptions(
        questions_file=DEMO_QUESTIONS,
        max_steps=1,
        batch_size=2,
        max_length=64,
        negatives=1,
        held_out_max=4,
        eval_queries=2,
        evals=1,
    )
    report = tune_demo(settings, options)
    assert report is not None and (report.model_path / "rag-tune.json").is_file()
    data = report.card["data"]
    # Only the questions about the two ingested articles (21 + 48) are used.
    assert 60 <= data["queries"]["questions"] <= 69
    assert report.card["training"]["arch"] == "maxsim"
    from rag.tune.progress import TuneProgress

    progress = TuneProgress.read(settings.index_dir / DEMO_COLLECTION)
    assert progress is not None and progress.finished
    assert progress.stage == ("registered" if report.registered else "not registered")
    assert tune_demo(settings, options) is None


@pytest.mark.slow
def test_background_training_leaves_the_chat_free_and_reports_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make run` (`--background`): the collection is built now, the reranker trains in a child
    process that writes its progress where the chat reads it; a stopped child reads as stopped."""
    import os
    import signal

    from rag.tune.progress import TuneProgress
    from tests.conftest import wait_for

    index_dir = tmp_path / "indexes"
    monkeypatch.setenv("RAG_INDEX_DIR", str(index_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    assert main(["--background"]) == 0
    out = capsys.readouterr().out
    assert "Training the demo's reranker in the background" in out
    folder = index_dir / DEMO_COLLECTION
    wait_for(lambda: TuneProgress.read(folder) is not None, 180, "training progress")
    progress = TuneProgress.read(folder)
    assert progress is not None and progress.running and progress.pid != os.getpid()
    os.kill(progress.pid, signal.SIGTERM)
    wait_for(lambda: not TuneProgress.read(folder).running, 60, "the child to stop")
    assert "stopped while" in TuneProgress.read(folder).describe()
    assert (folder / "tune" / "background.log").is_file()
