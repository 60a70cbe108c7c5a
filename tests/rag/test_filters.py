"""`--where`: parsing, and scoped search over a real collection (filters before ranking)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.errors import ConfigError
from rag.filters import Where


def test_parse_groups_keys_and_ranges() -> None:
    where = Where.parse(["document=3M_*.pdf", "doc=ADOBE*", "page=40-60", "Year=2022", "year=2021"])
    assert where.documents == ("3M_*.pdf", "ADOBE*")
    assert where.pages == (40, 60)
    assert where.metadata == (("year", ("2022", "2021")),)
    assert where.describe() == "document=3M_*.pdf document=ADOBE* page=40-60 year=2022 year=2021"


@pytest.mark.parametrize(
    "item", ["document", "=x", "page=", "page=0", "page=9-3", "page=a-b", "bad key=1"]
)
def test_parse_refuses_in_one_line(item: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Where.parse([item])
    assert "\n" not in str(caught.value)


def test_matching_documents_pages_and_metadata() -> None:
    where = Where.parse(["document=3m_*", "company=3M", "page=5"])
    assert where.matches_document("/data/3M_2022_10K.pdf", {"Company": "3m"})
    assert not where.matches_document("/data/3M_2022_10K.pdf", {})
    assert not where.matches_document("/data/ADOBE_2015_10K.pdf", {"company": "3M"})
    assert where.matches_page(5) and not where.matches_page(6)
    # A folder in the pattern matches the whole path; the chat's picker matches exact names.
    assert Where.parse(["document=/data/*.pdf"]).matches_document("/data/a.pdf", {})
    exact = Where.for_documents(["/data/report[1].pdf"])
    assert exact.matches_document("/data/report[1].pdf", {})
    assert not exact.matches_document("/data/report1.pdf", {})
    assert not Where() and Where.parse(["page=2"])


@pytest.fixture(scope="module")
def scoped(tmp_path_factory, squad_paragraphs, minilm):
    """40 SQuAD paragraphs from several articles, one Markdown file each."""
    from ingest.pipeline import IngestJob
    from rag.collection import Collection
    from rag.retrieval import Searcher
    from rag.settings import Settings
    from tests.conftest import write_squad_docs

    root = tmp_path_factory.mktemp("scoped")
    docs = write_squad_docs(root / "docs", squad_paragraphs, 40)
    settings = Settings.load(index_dir=root / "idx", progress=False, device="cpu", rerank=False)
    IngestJob(settings, embedder=minilm).run_files("squad", docs)
    collection = Collection.open(settings.index_dir, "squad")
    yield Searcher(collection, settings, embedder=minilm, reranker=None), docs
    collection.close()


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_scope_applies_before_ranking(scoped, squad_paragraphs, mode: str) -> None:
    searcher, docs = scoped
    # A question about paragraph 0, scoped to five other files: still five hits, all in scope.
    question = str(squad_paragraphs[0]["questions"][0])  # type: ignore[index]
    names = [doc.name for doc in docs[30:35]]
    where = Where.parse([f"document={name}" for name in names])
    hits = searcher.search(question, top_k=5, mode=mode, where=where).hits
    unscoped = searcher.search(question, top_k=5, mode=mode).hits
    assert any(hit.chunk.source.endswith("p000.md") for hit in unscoped)
    assert all(Path(hit.chunk.source).name in names for hit in hits)
    if mode == "bm25":  # BM25 returns only chunks that share a term with the question
        assert hits
    else:
        assert len(hits) == 5


def test_scoped_dense_equals_exact_search_over_the_scope(scoped, minilm) -> None:
    searcher, _ = scoped
    where = Where.parse(["document=p01*.md"])
    hits = searcher.search("When was the university founded?", top_k=4, mode="dense", where=where)
    store = searcher.collection.store
    keys = store.live_keys_where(where)
    vectors = store.vectors(keys, 384)
    expected = keys[np.argsort(-(vectors @ minilm.embed(["When was the university founded?"])[0]))]
    found = [hit.chunk.id for hit in hits.hits]
    assert found == [store.chunks([int(k)])[int(k)].id for k in expected[:4]]


def test_page_range_and_a_filter_that_matches_nothing(scoped) -> None:
    searcher, _ = scoped
    assert searcher.search("university", where=Where.parse(["page=2-9"])).hits == ()
    result = searcher.search("university", where=Where.parse(["document=nothing-*.pdf"]))
    assert result.hits == ()
    assert "no chunk matches --where document=nothing-*.pdf" in result.notices
    assert searcher.search("university", where=Where.parse(["page=1"])).hits
