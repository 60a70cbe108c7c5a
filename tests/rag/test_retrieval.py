"""Search with the real MiniLM, BM25 and a real cross-encoder over SQuAD paragraphs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sentence_transformers import CrossEncoder

from ingest.pipeline import IngestJob
from rag.collection import Collection
from rag.errors import ConfigError
from rag.langchain import CollectionRetriever
from rag.rerank import CrossEncoderReranker, choose_reranker
from rag.retrieval import Searcher, reciprocal_rank_fusion, score_fusion, with_document_prior
from rag.types import Chunk, Hit
from tests.conftest import write_squad_docs

PARAGRAPHS = 60


@pytest.fixture(scope="module")
def squad_collection(tmp_path_factory, squad_paragraphs, minilm):
    """60 real SQuAD paragraphs, one Markdown file each, embedded with the packaged MiniLM."""
    from rag.settings import Settings

    root = tmp_path_factory.mktemp("squad")
    docs = write_squad_docs(root / "docs", squad_paragraphs, PARAGRAPHS)
    settings = Settings.load(index_dir=root / "indexes", progress=False, device="cpu")
    IngestJob(settings, embedder=minilm).run_files("squad", docs)
    collection = Collection.open(settings.index_dir, "squad")
    yield collection, settings, docs
    collection.close()


def test_rrf_orders_by_summed_reciprocal_ranks() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1]], k=60)
    assert [key for key, _ in fused] == [1, 3, 2]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_weighted_rrf_scales_each_list() -> None:
    fused = reciprocal_rank_fusion([[1, 2], [2, 1]], k=60, weights=[0.8, 0.2])
    assert [key for key, _ in fused] == [1, 2]
    assert fused[0][1] == pytest.approx(0.8 / 61 + 0.2 / 62)


def test_score_fusion_keeps_the_gaps_that_ranks_lose() -> None:
    # Dense puts chunk 1 far ahead; BM25 puts it third, close behind 2 and 3. Reciprocal rank sees
    # only the places and puts 2 first; the scores keep 1's lead.
    dense = ([1, 2, 3, 4], [0.9, 0.5, 0.45, 0.1])
    lexical = ([2, 3, 1, 4], [12.0, 11.0, 10.0, 2.0])
    assert [key for key, _ in reciprocal_rank_fusion([dense[0], lexical[0]])] == [2, 1, 3, 4]
    fused = score_fusion([dense, lexical], [0.5, 0.5])
    assert [key for key, _ in fused] == [1, 2, 3, 4]
    # Each list's best is 1 and its last 0: 1 is (1 + 0.8) / 2, 2 is (0.5 + 1) / 2.
    assert dict(fused)[1] == pytest.approx(0.9) and dict(fused)[2] == pytest.approx(0.75)
    assert dict(fused)[4] == 0.0
    bm25_heavy = score_fusion([dense, lexical], [0.1, 0.9])
    assert [key for key, _ in bm25_heavy] == [2, 3, 1, 4]


def test_score_fusion_of_uneven_lists() -> None:
    # A key in one list only scores 0 in the other; a list of equal scores (or of one) gives 1.
    fused = score_fusion([([7], [0.3]), ([8, 9], [2.0, 2.0]), ([], [])], [0.6, 0.3, 0.1])
    assert fused == [(7, pytest.approx(0.6)), (8, pytest.approx(0.3)), (9, pytest.approx(0.3))]


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_questions_find_their_paragraph(squad_collection, squad_paragraphs, minilm, mode) -> None:
    collection, settings, docs = squad_collection
    searcher = Searcher(collection, settings, embedder=minilm, reranker=None)
    found = total = 0
    for n, paragraph in enumerate(squad_paragraphs[:PARAGRAPHS:3]):
        question = paragraph["questions"][0]
        hits = searcher.retrieve(question, 5, mode)
        total += 1
        found += str(docs[n * 3]) in {hit.chunk.source for hit in hits}
        assert all(hit.stage == mode for hit in hits)
    # Many SQuAD paragraphs share an article, so a top-5 hit rate well above chance is the bar.
    assert found / total >= 0.7, f"{mode}: {found}/{total}"


@pytest.mark.parametrize("fusion", ["scores", "rrf"])
def test_hybrid_fuses_the_two_rankings_as_the_settings_say(
    squad_collection, minilm, fusion: str
) -> None:
    collection, settings, _ = squad_collection
    chosen = settings.model_copy(
        update={"hybrid_fusion": fusion, "dense_weight": 0.7, "document_prior": 0.0}
    )
    searcher = Searcher(collection, chosen, embedder=minilm, reranker=None)
    query = "Which NFL team represented the AFC at Super Bowl 50?"
    dense = searcher.retrieve(query, chosen.candidates, "dense")
    lexical = searcher.retrieve(query, chosen.candidates, "bm25")
    number = {hit.chunk.id: n for n, hit in enumerate([*dense, *lexical])}
    rankings = [
        ([number[h.chunk.id] for h in hits], [h.score for h in hits]) for hits in (dense, lexical)
    ]
    if fusion == "scores":
        expected = score_fusion(rankings, [0.7, 0.3])
    else:
        expected = reciprocal_rank_fusion([keys for keys, _ in rankings], chosen.rrf_k, [0.7, 0.3])
    found = searcher.retrieve(query, 10, "hybrid")
    assert [number[hit.chunk.id] for hit in found] == [key for key, _ in expected[:10]]
    assert [hit.score for hit in found] == pytest.approx([score for _, score in expected[:10]])
    assert found[0].chunk.text.count("Denver Broncos") or found[0].chunk.text.count("AFC")


def _hit(source: str, page: int, score: float) -> Hit:
    return Hit(Chunk(f"{source}:{page}", source, source, page, 0, 1, "x"), score, "hybrid")


def test_the_best_matching_document_keeps_its_pages_together() -> None:
    # The 3M filing matches best; one page of another filing scores just above 3M's second page.
    hits = [_hit("3M.pdf", 40, 0.9), _hit("Boeing.pdf", 12, 0.7), _hit("3M.pdf", 41, 0.65)]
    hits.append(_hit("3M.pdf", 7, 0.1))
    ranked = with_document_prior(hits, 0.5)
    assert [(h.chunk.source, h.chunk.page) for h in ranked] == [
        ("3M.pdf", 40),
        ("3M.pdf", 41),  # (0.65 + 0.45) / 1.5 against Boeing's (0.7 + 0.35) / 1.5
        ("Boeing.pdf", 12),
        ("3M.pdf", 7),  # within a document the order stays: a weak page stays behind
    ]
    assert [h.score for h in ranked[:3]] == pytest.approx([0.9, 1.1 / 1.5, 0.7])  # each best stays
    assert with_document_prior(hits, 0.0) == hits
    # Only the gaps between scores count: the same scores scaled and shifted, the same order.
    moved = [_hit(h.chunk.source, h.chunk.page, 3 * h.score - 1) for h in hits]
    assert [h.chunk.id for h in with_document_prior(moved, 0.5)] == [h.chunk.id for h in ranked]


def test_hybrid_search_adds_the_document_prior(squad_collection, minilm) -> None:
    collection, settings, _ = squad_collection
    query = "Which NFL team represented the AFC at Super Bowl 50?"
    plain = settings.model_copy(update={"document_prior": 0.0})
    before = Searcher(collection, plain, embedder=minilm).retrieve(query, settings.candidates)
    after = Searcher(collection, settings, embedder=minilm).retrieve(query, 10)
    assert settings.document_prior == 0.5
    expected = with_document_prior(before, 0.5)[:10]
    assert [h.chunk.id for h in after] == [h.chunk.id for h in expected]
    assert [h.score for h in after] == pytest.approx([h.score for h in expected])


def test_search_without_a_reranker_says_why(squad_collection, minilm) -> None:
    collection, settings, _ = squad_collection
    result = Searcher(collection, settings, embedder=minilm).search("Super Bowl 50 winner")
    assert len(result.hits) == settings.top_k
    assert any(n.startswith("reranking is off: cross-encoder") for n in result.notices)


def test_cross_encoder_reranks_with_its_own_scores(
    squad_collection, minilm, cross_encoder_dir
) -> None:
    collection, settings, _ = squad_collection
    reranker = CrossEncoderReranker(str(cross_encoder_dir), device="cpu")
    searcher = Searcher(collection, settings, embedder=minilm, reranker=reranker)
    query = "Which NFL team represented the AFC at Super Bowl 50?"
    result = searcher.search(query, top_k=5)
    assert result.notices == ()
    assert [hit.stage for hit in result.hits] == ["rerank"] * 5
    scores = [hit.score for hit in result.hits]
    assert scores == sorted(scores, reverse=True)
    # The scores are the cross-encoder's own, for exactly these pairs.
    model = CrossEncoder(str(cross_encoder_dir), device="cpu")
    expected = model.predict([(query, hit.chunk.text) for hit in result.hits])
    assert scores == pytest.approx([float(s) for s in expected], abs=1e-4)
    # And they re-order the first stage's top candidates.
    candidates = searcher.retrieve(query, settings.rerank_depth)
    assert {h.chunk.id for h in result.hits} <= {h.chunk.id for h in candidates}


def test_search_reports_its_stage_times(squad_collection, minilm, cross_encoder_dir) -> None:
    collection, settings, _ = squad_collection
    query = "Which NFL team represented the AFC at Super Bowl 50?"
    plain = Searcher(collection, settings, embedder=minilm, reranker=None).search(query)
    assert set(plain.timings) == {"retrieve_s"} and plain.timings["retrieve_s"] > 0
    reranker = CrossEncoderReranker(str(cross_encoder_dir), device="cpu")
    reranked = Searcher(collection, settings, embedder=minilm, reranker=reranker).search(query)
    assert set(reranked.timings) == {"retrieve_s", "rerank_s"}
    assert all(value > 0 for value in reranked.timings.values())


def test_searcher_applies_the_torch_thread_setting(squad_collection, minilm) -> None:
    import torch

    collection, settings, _ = squad_collection
    before = torch.get_num_threads()
    try:
        Searcher(collection, settings.model_copy(update={"torch_threads": 1}), embedder=minilm)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_registered_reranker_is_used_by_default(squad_collection, cross_encoder_dir) -> None:
    choice = choose_reranker(str(cross_encoder_dir), "missing/model", True, "cpu", 256)
    assert choice.reranker is not None and choice.reason is None
    off = choose_reranker(None, "missing/model", True, "cpu", 256)
    assert off.reranker is None and "'missing/model' is not on this machine" in str(off.reason)
    disabled = choose_reranker(str(cross_encoder_dir), "x", False, "cpu", 256)
    assert disabled.reranker is None and "disabled" in str(disabled.reason)


def test_bad_mode_and_empty_query(squad_collection, minilm) -> None:
    collection, settings, _ = squad_collection
    searcher = Searcher(collection, settings, embedder=minilm, reranker=None)
    with pytest.raises(
        ConfigError, match=r"unknown search mode 'fuzzy' \(valid: dense, bm25, hybrid\)"
    ):
        searcher.retrieve("x", 3, "fuzzy")
    with pytest.raises(ConfigError, match="the query is empty"):
        searcher.retrieve("   ", 3)


def test_langchain_retriever(squad_collection, minilm, squad_paragraphs) -> None:
    collection, settings, docs = squad_collection
    retriever = CollectionRetriever(
        searcher=Searcher(collection, settings, embedder=minilm, reranker=None), top_k=3
    )
    question = squad_paragraphs[0]["questions"][0]
    found = retriever.invoke(question)
    assert len(found) == 3
    assert found[0].metadata["source"] == str(docs[0])
    assert found[0].metadata["page"] == 1 and found[0].page_content
    assert Path(found[0].metadata["source"]).exists()


@pytest.fixture(scope="module")
def paper(tmp_path_factory, shared_data, minilm):
    """One real 15-page paper, several chunks a page."""
    from rag.settings import Settings

    root = tmp_path_factory.mktemp("paper")
    settings = Settings.load(index_dir=root / "idx", progress=False, device="cpu", rerank=False)
    IngestJob(settings, embedder=minilm).run_files("p", [shared_data / "pdfs/real/1706.03762.pdf"])
    with Collection.open(settings.index_dir, "p") as collection:
        yield collection, settings


@pytest.mark.parametrize("mode", ["dense", "hybrid"])
def test_results_keep_one_chunk_a_page_by_default(paper, minilm, mode: str) -> None:
    collection, settings = paper
    query = "multi-head attention with scaled dot-product attention"
    pages = [
        hit.chunk.page
        for hit in Searcher(collection, settings, embedder=minilm).search(query, 8, mode).hits
    ]
    assert len(pages) == 8 and len(set(pages)) == 8
    unlimited = settings.model_copy(update={"chunks_per_page": 0})
    everything = Searcher(collection, unlimited, embedder=minilm).search(query, 8, mode).hits
    repeated = [hit.chunk.page for hit in everything]
    assert len(set(repeated)) < len(repeated)  # the same query finds pages twice without it
    # The best chunk of each page stands for it, in the order the unlimited search gives.
    firsts = list(dict.fromkeys(repeated))
    assert pages[: len(firsts)] == firsts[: len(pages)]


def test_a_long_document_without_pages_is_not_cut_to_one_chunk(
    tmp_path_factory, squad_paragraphs, minilm
) -> None:
    """A Markdown article is all "page 1": the per-page limit counts it by page-length stretches,
    so that several of its paragraphs can answer, while neighbouring chunks still count once."""
    from rag.retrieval import TEXT_PAGE_CHARS, page_key
    from rag.settings import Settings

    root = tmp_path_factory.mktemp("long-md")
    bowl = [p["context"] for p in squad_paragraphs if p["title"] == "Super_Bowl_50"][:20]
    article = root / "Super_Bowl_50.md"
    article.write_text("# Super Bowl 50\n\n" + "\n\n".join(bowl) + "\n")
    settings = Settings.load(index_dir=root / "idx", progress=False, device="cpu", rerank=False)
    IngestJob(settings, embedder=minilm).run_files("long", [article])
    with Collection.open(settings.index_dir, "long") as collection:
        hits = Searcher(collection, settings, embedder=minilm).search("Super Bowl 50", 5).hits
    assert len(hits) == 5 and {hit.chunk.page for hit in hits} == {1}
    keys = [page_key(hit.chunk) for hit in hits]
    assert len(set(keys)) == 5  # one chunk a page-length stretch
    assert all(
        key[2] == hit.chunk.start // TEXT_PAGE_CHARS for key, hit in zip(keys, hits, strict=True)
    )


@pytest.fixture(scope="module")
def filing_pages(tmp_path_factory, shared_data, minilm):
    """Pages 40 to 60 of 3M's 2022 annual report (the auditor's report, the statements of
    income, comprehensive income, balance sheet, equity and cash flows, the first notes)."""
    from pypdf import PdfReader, PdfWriter

    from rag.settings import Settings

    root = tmp_path_factory.mktemp("filing")
    writer = PdfWriter()
    for page in PdfReader(shared_data / "financebench-dev/pdfs/3M_2022_10K.pdf").pages[39:60]:
        writer.add_page(page)
    path = root / "3M_2022_10K.pdf"
    with path.open("wb") as out:
        writer.write(out)
    settings = Settings.load(index_dir=root / "idx", progress=False, device="cpu", rerank=False)
    IngestJob(settings, embedder=minilm).run_files("f", [path])
    with Collection.open(settings.index_dir, "f") as collection:
        yield collection, settings


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
@pytest.mark.parametrize(
    "question",
    [
        "What is 3M's FY2022 fixed asset turnover ratio?",
        "Does 3M have positive working capital based on FY2022 data?",
    ],
)
def test_a_glossary_leads_a_ratio_question_to_the_statement(
    filing_pages, minilm, mode: str, question: str
) -> None:
    """A ratio's inputs are line items of the balance sheet (property, plant and equipment;
    current assets and liabilities), which never names the ratio."""
    collection, settings = filing_pages
    balance_sheet = 11  # page 50 of the filing
    plain = settings.model_copy(update={"query_glossaries": ()})
    without = Searcher(collection, plain, embedder=minilm).search(question, 5, mode).hits
    found = Searcher(collection, settings, embedder=minilm).search(question, 5, mode).hits
    assert without[0].chunk.page != balance_sheet
    assert found[0].chunk.page == balance_sheet
    # The search says what it added; the hits keep the question as asked.
    notices = Searcher(collection, settings, embedder=minilm).search(question, 5, mode).notices
    [notice] = [n for n in notices if n.startswith("also searched for the glossary's words: ")]
    assert "total current" in notice or "property plant and equipment" in notice
