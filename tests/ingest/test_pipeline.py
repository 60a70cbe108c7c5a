"""The ingest job on real files: incremental, prunes, reports failures, never half-publishes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.beir import BeirDataset
from ingest.chunking import Chunker
from ingest.pipeline import IngestJob
from ingest.sources import document_sources
from rag.collection import Collection, list_collections
from rag.embedding import HashEmbedder
from rag.errors import CollectionError, EmbedderMismatchError, RagError
from rag.retrieval import Searcher
from tests.conftest import write_squad_docs


def job(settings) -> IngestJob:
    return IngestJob(settings, embedder=HashEmbedder(), chunker=Chunker(80, 10))


def chunk_ids(settings, name: str) -> list[str]:
    collection = Collection.open(settings.index_dir, name)
    try:
        keys, _ = collection.store.live_texts()
        return sorted(c.id for c in collection.store.chunks(list(keys)).values())
    finally:
        collection.close()


def test_ingest_real_pdfs_and_text(
    settings, shared_data: Path, tmp_path: Path, squad_paragraphs
) -> None:
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 3)
    pdf = shared_data / "pdfs" / "real" / "1706.03762.pdf"
    report = job(settings).run_files("mixed", [pdf, *docs])
    assert (report.added, report.failed) == (4, [])
    assert report.pages == 15 + 3
    collection = Collection.open(settings.index_dir, "mixed")
    documents, chunks = collection.store.counts()
    assert (documents, chunks) == (4, report.chunks)
    # FAISS ids and SQLite rows agree.
    index = collection.dense_index(Searcher(collection, settings, embedder=HashEmbedder())._params)
    assert index.size == chunks
    assert collection.lexical_index().size == chunks
    # Offsets point back into the page text; pages count from 1.
    keys, _ = collection.store.live_texts()
    some = next(iter(collection.store.chunks(list(keys[:1])).values()))
    assert some.page >= 1 and some.end - some.start == len(some.text)
    collection.close()


def test_same_input_twice_is_a_no_op(settings, tmp_path: Path, squad_paragraphs) -> None:
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 5)
    first = job(settings).run_files("c", docs)
    before = chunk_ids(settings, "c")
    generation = Collection.open(settings.index_dir, "c").store.generation
    second = job(settings).run_files("c", docs)
    assert (first.added, second.added, second.unchanged) == (5, 0, 5)
    assert chunk_ids(settings, "c") == before
    assert Collection.open(settings.index_dir, "c").store.generation == generation


def test_changed_file_replaces_its_chunks_and_prune_removes_gone_files(
    settings, tmp_path: Path, squad_paragraphs
) -> None:
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 4)
    job(settings).run_files("c", [tmp_path / "docs"])
    docs[0].write_text("# Changed\n\nA completely different paragraph about lighthouses.\n")
    docs[1].unlink()
    report = job(settings).run_files("c", [tmp_path / "docs"], prune=True)
    assert (report.replaced, report.unchanged, report.pruned) == (1, 2, 1)
    collection = Collection.open(settings.index_dir, "c")
    sources = [d.source for d in collection.store.documents()]
    assert str(docs[1]) not in sources and len(sources) == 3
    hits = Searcher(collection, settings, embedder=HashEmbedder(), reranker=None).retrieve(
        "lighthouses", 1, "bm25"
    )
    assert hits[0].chunk.source == str(docs[0])
    # No duplicates: one live document per source, and no orphan chunks.
    assert collection.store.counts()[0] == 3
    collection.close()


def test_broken_pdfs_are_reported_and_the_job_goes_on(settings, shared_data: Path) -> None:
    broken = shared_data / "pdfs" / "broken"
    # Without OCR: encrypted_doc_no_id.pdf is a scanned patent with no text layer.
    settings = settings.model_copy(update={"ocr": "off"})
    report = job(settings).run_files("hostile", [broken])
    failed = dict(report.failed)
    assert failed[str(broken / "encrypted-file.pdf")].startswith("needs a password")
    assert failed[str(broken / "crazyones-encrypted-256.pdf")].startswith("needs a password")
    assert failed[str(broken / "encrypted_doc_no_id.pdf")].startswith("no text layer")
    assert str(broken / "r2-empty-password.pdf") not in failed  # empty user password: opens
    assert report.ingested == len(list(broken.glob("*.pdf"))) - len(failed)
    assert report.ingested >= 5


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="no tesseract")
def test_a_scan_without_text_layer_is_ingested_with_ocr(settings, shared_data: Path) -> None:
    pdf = shared_data / "pdfs" / "broken" / "encrypted_doc_no_id.pdf"
    report = job(settings).run_files("scan", [pdf])  # ocr = auto, the default
    assert (report.ingested, report.failed) == (1, [])
    collection = Collection.open(settings.index_dir, "scan")
    try:
        hits = Searcher(collection, settings, embedder=HashEmbedder(), reranker=None).retrieve(
            "abbreviations", 3, "bm25"
        )
    finally:
        collection.close()
    assert hits and hits[0].chunk.page == 2  # the OCR text is that page's text


def test_image_only_pages_are_reported_not_indexed(settings, shared_data: Path) -> None:
    pdf = (
        shared_data / "pdfs" / "sample-files" / "007-imagemagick-images" / "imagemagick-images.pdf"
    )
    report = job(settings).run_files("images", [pdf])
    assert report.ingested == 1
    assert any("pages 4, 5 have no text layer" in w for w in report.warnings)


def test_all_files_failing_leaves_no_empty_collection(settings, shared_data: Path) -> None:
    pdf = shared_data / "pdfs" / "broken" / "encrypted-file.pdf"
    report = job(settings).run_files("nothing", [pdf])
    assert report.ingested == 0 and len(report.failed) == 1
    assert list_collections(settings.index_dir) == []


def test_staged_work_of_a_killed_job_is_invisible_then_adopted(
    settings, tmp_path: Path, squad_paragraphs
) -> None:
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 3)
    job(settings).run_files("c", docs[:1])
    # What a killed job leaves: a document staged but never published.
    collection = Collection.open(settings.index_dir, "c")
    chunker, embedder = Chunker(80, 10), HashEmbedder()
    from ingest.loaders import load_document

    staged = load_document(docs[1])
    chunks = chunker.split(staged)
    collection.store.stage(staged, "file", chunks, embedder.embed([c.text for c in chunks]))
    assert collection.store.counts()[0] == 1  # search cannot see it
    collection.close()
    report = job(settings).run_files("c", docs)
    assert (report.unchanged, report.resumed, report.added) == (1, 1, 1)
    assert Collection.open(settings.index_dir, "c").store.counts()[0] == 3


def test_index_files_are_rebuilt_from_the_store(settings, tmp_path: Path, squad_paragraphs) -> None:
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 3)
    job(settings).run_files("c", docs)
    folder = settings.index_dir / "c"
    for path in folder.glob("dense-*"):
        path.unlink()
    for path in folder.glob("lexical-*"):
        shutil.rmtree(path)
    collection = Collection.open(settings.index_dir, "c")
    searcher = Searcher(collection, settings, embedder=HashEmbedder(), reranker=None)
    assert searcher.retrieve(str(squad_paragraphs[0]["context"])[:80], 1, "hybrid")
    assert any(folder.glob("dense-*.faiss")) and any(folder.glob("lexical-*"))


def test_missing_path_and_empty_folder(settings, tmp_path: Path) -> None:
    with pytest.raises(RagError, match=r"path not found: .*nowhere"):
        job(settings).run_files("c", [tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(RagError, match=r"no supported documents in folder .*empty \(looked for"):
        job(settings).run_files("c", [tmp_path / "empty"])


def test_bad_collection_name(settings, tmp_path: Path) -> None:
    with pytest.raises(CollectionError, match=r"invalid collection name '../x'"):
        job(settings).run_files("../x", [tmp_path])


def test_other_embedder_is_refused(settings, tmp_path: Path, squad_paragraphs) -> None:
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 1)
    job(settings).run_files("c", docs)
    other = IngestJob(settings, embedder=HashEmbedder(name="test/other"), chunker=Chunker(80, 10))
    with pytest.raises(
        EmbedderMismatchError, match="built with embedder 'test/hash-embedder', not 'test/other'"
    ):
        other.run_files("c", docs)
    collection = Collection.open(settings.index_dir, "c")
    with pytest.raises(EmbedderMismatchError, match="not 'test/other'"):
        Searcher(collection, settings, embedder=HashEmbedder(name="test/other"))


def test_beir_records_and_prune(settings, shared_data: Path, tmp_path: Path) -> None:
    # A real BEIR folder cut down to 50 SciFact abstracts.
    folder = tmp_path / "scifact-mini"
    (folder / "qrels").mkdir(parents=True)
    lines = (shared_data / "scifact" / "corpus.jsonl").read_text().splitlines()[:50]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copy(shared_data / "scifact" / "queries.jsonl", folder / "queries.jsonl")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")
    data = BeirDataset(folder)
    report = job(settings).run("mini", document_sources(data.documents()), prune=True)
    assert report.added == 50
    fewer = list(data.documents())[:40]
    again = job(settings).run("mini", document_sources(fewer), prune=True)
    assert (again.unchanged, again.pruned) == (40, 10)


def test_sources_are_absolute_keep_symlinks_and_dedupe(
    settings, tmp_path: Path, squad_paragraphs, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_squad_docs(tmp_path / "docs", squad_paragraphs, 2)
    (tmp_path / "link").symlink_to(tmp_path / "docs")
    monkeypatch.chdir(tmp_path)
    # A folder and a file inside it: the file is ingested once.
    report = job(settings).run_files("c", [Path("link"), Path("link/p000.md")])
    assert report.added == 2
    collection = Collection.open(settings.index_dir, "c")
    sources = {d.source for d in collection.store.documents()}
    collection.close()
    assert sources == {str(tmp_path / "link" / "p000.md"), str(tmp_path / "link" / "p001.md")}
    # From another working directory the same files are the same documents.
    monkeypatch.chdir(tmp_path / "docs")
    assert job(settings).run_files("c", [Path("../link")]).unchanged == 2


def test_nothing_to_do_loads_no_model(settings, tmp_path: Path, squad_paragraphs, minilm) -> None:
    from rag.embedding import SentenceTransformerEmbedder

    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 2)
    IngestJob(settings, embedder=minilm).run_files("c", docs)
    fresh = SentenceTransformerEmbedder(minilm.name, device="cpu")
    report = IngestJob(settings, embedder=fresh).run_files("c", docs)
    assert report.unchanged == 2
    assert fresh._model is None  # an unchanged collection costs no model load


def test_progress_callback_counts_files(
    settings, tmp_path: Path, squad_paragraphs, shared_data
) -> None:
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 3)
    broken = shared_data / "pdfs" / "broken" / "encrypted-file.pdf"
    seen: list[tuple[int, int]] = []
    job(settings).run_files(
        "c", [*docs, broken], progress=lambda done, total: seen.append((done, total))
    )
    assert seen[0] == (0, 4) and seen[-1] == (4, 4)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    again: list[tuple[int, int]] = []
    job(settings).run_files("c", docs, progress=lambda done, total: again.append((done, total)))
    assert again == [(3, 3)]  # all unchanged: one call, complete


def test_a_long_document_shows_how_far_its_embedding_has_got(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rag.settings import Settings

    # Progress on, and a small batch: the paper's chunks take several embedding calls.
    settings = Settings.load(index_dir=tmp_path / "indexes", progress=True, embed_batch_size=8)
    paper = shared_data / "pdfs" / "real" / "1706.03762.pdf"
    report = job(settings).run_files("c", [paper])
    shown = capsys.readouterr().err
    assert report.chunks > 8 * 8  # longer than a whole batch limit: embedded in parts
    assert f"embedding chunks: 16 of {report.chunks}" in shown
    assert f"embedding chunks: {report.chunks} of {report.chunks}" in shown


def test_a_pdf_being_read_shows_its_pages(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rag.settings import Settings

    settings = Settings.load(index_dir=tmp_path / "indexes", progress=True)
    paper = shared_data / "pdfs" / "real" / "1706.03762.pdf"
    report = job(settings).run_files("c", [paper])
    shown = capsys.readouterr().err
    assert report.added == 1
    assert "reading 1706.03762.pdf: page 1 of 15" in shown  # the first page is always shown
