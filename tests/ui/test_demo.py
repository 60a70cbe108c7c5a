"""`python -m ui.demo`: the demo corpus, and building the demo collection from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.collection import Collection
from rag.settings import Settings
from ui.demo import DEMO_COLLECTION, DEMO_CORPUS, build_demo, demo_files, main

ARTICLES = 8


def test_corpus_is_eight_articles_with_attribution() -> None:
    files = demo_files()
    assert len(files) == ARTICLES and all(path.is_absolute() for path in files)
    assert "ATTRIBUTION.md" not in {path.name for path in files}
    attribution = (DEMO_CORPUS / "ATTRIBUTION.md").read_text()
    assert "CC BY-SA 4.0" in attribution and "rajpurkar.github.io/SQuAD-explorer" in attribution
    for path in files:
        first = path.read_text().split("\n", 1)[0]
        assert first == "# " + path.stem.replace("_", " ")
    assert sum(path.stat().st_size for path in DEMO_CORPUS.iterdir()) < 400_000


def test_bad_settings_exit_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAG_CHUNK_TOKENS", "many")
    assert main() == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: invalid settings: chunk_tokens") and err.count("\n") == 1


@pytest.mark.slow
def test_demo_builds_then_skips_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    index_dir = tmp_path / "indexes"
    monkeypatch.setenv("RAG_INDEX_DIR", str(index_dir))
    monkeypatch.setenv("RAG_DEVICE", "cpu")
    assert main() == 0
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
