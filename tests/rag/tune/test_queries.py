"""The queries `rag tune` trains on: labels, questions with gold passages, synthetic queries, and
the negatives mined for them."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from ingest.pipeline import IngestJob
from rag.collection import Collection
from rag.embedding import HashEmbedder
from rag.errors import ConfigError
from rag.evaluation import overlap
from rag.questions import Question
from rag.retrieval import Searcher
from rag.settings import Settings
from rag.tune.heldout import held_out_candidates
from rag.tune.negatives import mine_negatives
from rag.tune.queries import (
    WORD,
    _clean_query,
    labelled_queries,
    question_queries,
    read_qrels,
    read_queries,
    self_supervised_queries,
    source_matcher,
    without_rare_words,
)


def test_beir_readers_and_source_matching(tmp_path: Path) -> None:
    (tmp_path / "q.jsonl").write_text('{"_id": "1", "text": "what?"}\n\n')
    (tmp_path / "r.tsv").write_text("query-id\tcorpus-id\tscore\n1\tdoc7\t1\n")
    assert read_queries(tmp_path / "q.jsonl") == {"1": "what?"}
    assert read_qrels(tmp_path / "r.tsv") == {"1": {"doc7": 1}}
    with pytest.raises(ConfigError, match="queries file not found"):
        read_queries(tmp_path / "nope.jsonl")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ConfigError, match="line 1: not a BEIR query"):
        read_queries(tmp_path / "bad.jsonl")
    match = source_matcher(["scifact:doc7", "/data/papers/rag.pdf"])
    assert match("doc7") == "scifact:doc7"
    assert match("rag") == "/data/papers/rag.pdf"
    assert match("other") is None


def test_llm_replies_become_queries_or_are_dropped() -> None:
    assert _clean_query('Query: "Who won Super Bowl 50?"\nmore') == "Who won Super Bowl 50?"
    assert _clean_query("") is None
    assert _clean_query("Yes") is None


def test_self_supervised_queries_cut_the_query_out(hashed) -> None:
    searcher, _ = hashed
    collection = searcher.collection
    queries = self_supervised_queries(collection, limit=20, seed=1)
    assert len(queries) >= 10
    keys, _ = collection.store.live_texts()
    chunks = {chunk.id: chunk for chunk in collection.store.chunks(keys.tolist()).values()}
    for query in queries:
        assert query.origin == "self" and len(query.positives) == 1
        # The sentence is gone from the positive; the query is that sentence less its rarest
        # words, and it is judged by passage: the chunks that hold the sentence.
        assert query.cut and query.positive_text and query.cut not in query.positive_text
        assert query.passages and query.relevant
        assert all(query.cut in chunks[chunk_id].text for chunk_id in query.relevant)
        kept, cut = WORD.findall(query.text), WORD.findall(query.cut)
        assert 3 <= len(kept) < len(cut) and set(kept) <= set(cut)
    assert self_supervised_queries(collection, limit=20, seed=1) == queries
    whole = self_supervised_queries(collection, limit=20, seed=1, rare_share=0.0)
    assert [query.text for query in whole] == [" ".join(query.cut.split()) for query in whole]


def test_sentences_broken_across_pdf_lines_are_cut_out_too(tmp_path, shared_data) -> None:
    # A PDF's text breaks lines inside sentences: those sentences are queries too (the query
    # reads them as one line), while headings and table rows are not.
    pdf = tmp_path / "KnowledgePackingInLM.pdf"
    pdf.write_bytes((shared_data / "pdfs" / "real" / pdf.name).read_bytes())
    embedder = HashEmbedder()
    settings = Settings.load(
        index_dir=tmp_path / "idx", progress=False, device="cpu", embedding_model=embedder.name
    )
    IngestJob(settings, embedder=embedder).run_files("pdf", [pdf])
    with closing(Collection.open(settings.index_dir, "pdf")) as collection:
        queries = self_supervised_queries(collection, limit=200, seed=0)
    broken = [q for q in queries if q.cut and "\n" in q.cut]
    assert len(broken) >= 5
    for query in broken:
        assert "\n" not in query.text and "|" not in query.cut and "\n\n" not in query.cut


def test_the_rarest_words_go_first() -> None:
    rarity = {"tesla": 1, "alternating": 2, "current": 9, "motor": 5, "built": 30, "first": 40}
    sentence = "Tesla built the first alternating current motor."
    assert without_rare_words(sentence, rarity, 0.5) == "built the first current."
    assert without_rare_words(sentence, rarity, 0.2) == "built the first current motor."
    assert without_rare_words(sentence, rarity, 0.0) == sentence
    # Fewer than three content words left: no query.
    assert without_rare_words("Tesla built motors.", rarity, 0.5) is None


def test_labelled_queries_map_qrels_to_chunks_and_negatives_avoid_them(
    hashed, squad_paragraphs
) -> None:
    searcher, docs = hashed
    queries = {f"q{n}": squad_paragraphs[n]["questions"][0] for n in range(6)}
    qrels = {f"q{n}": {docs[n].stem: 1} for n in range(6)}
    qrels["q9"] = {"not-in-the-collection": 1}
    found = labelled_queries(searcher, {**queries, "q9": "x"}, qrels)
    assert [q.qid for q in found] == [f"q{n}" for n in range(6)]
    assert all(q.relevant == frozenset({str(docs[int(q.qid[1:])])}) for q in found)
    examples = mine_negatives(searcher, found, negatives=2, progress=False)
    assert len(examples) == 6
    texts = {chunk.source: chunk.text for chunk in _all_chunks(searcher.collection)}
    for example in examples:
        n = int(next(q.qid for q in found if q.text == example.query)[1:])
        assert example.positive == texts[str(docs[n])]
        assert texts[str(docs[n])] not in example.negatives and len(example.negatives) == 2
    with pytest.raises(ConfigError, match="no judged query names a document"):
        labelled_queries(searcher, {"q9": "x"}, {"q9": {"nothing": 1}})


@pytest.fixture(scope="module")
def articles(tmp_path_factory):
    """Two whole demo articles (SQuAD dev, many chunks each), hash-embedded."""
    from rag.settings import Settings
    from ui.demo import DEMO_CORPUS

    root = tmp_path_factory.mktemp("articles")
    embedder = HashEmbedder()
    settings = Settings.load(
        index_dir=root / "indexes", progress=False, device="cpu", embedding_model=embedder.name
    )
    files = [DEMO_CORPUS / "Super_Bowl_50.md", DEMO_CORPUS / "Warsaw.md"]
    IngestJob(settings, embedder=embedder).run_files("a", files)
    collection = Collection.open(settings.index_dir, "a")
    yield Searcher(collection, settings, embedder=embedder, reranker=None)
    collection.close()


def test_question_queries_judge_passages_not_documents(articles, squad_paragraphs) -> None:
    searcher = articles
    bowl = [p for p in squad_paragraphs if p["title"] == "Super_Bowl_50"][:6]
    questions = [
        Question(f"q{n}", p["questions"][0], document="Super_Bowl_50.md", paragraph=p["context"])
        for n, p in enumerate(bowl)
    ]
    questions.append(Question("gone", "Who?", document="Nowhere.md", paragraph="x"))
    found = question_queries(searcher, questions)
    assert [q.qid for q in found] == [f"q{n}" for n in range(6)]
    chunks = {c.id: c for c in _all_chunks(searcher.collection)}
    bowl_chunks = [c for c in chunks.values() if c.source.endswith("Super_Bowl_50.md")]
    for query, paragraph in zip(found, bowl, strict=True):
        assert query.passages and query.origin == "questions"
        # Only the chunks holding the gold paragraph are relevant, not the whole article.
        assert query.relevant and len(query.relevant) < len(bowl_chunks)
        assert all(overlap(chunks[i].text, paragraph["context"]) >= 0.5 for i in query.relevant)
    examples = mine_negatives(searcher, found, negatives=3, progress=False)
    relevant_texts = {chunks[i].text for q in found for i in q.relevant}
    negatives = [n for e in examples for n in e.negatives]
    assert examples and all(e.positive in relevant_texts for e in examples)
    # Other passages of the same article are fair negatives now.
    bowl_texts = {c.text for c in bowl_chunks}
    assert any(n in bowl_texts for n in negatives)
    for example in examples:
        query = next(q for q in found if q.text == example.query)
        assert not {chunks[i].text for i in query.relevant} & set(example.negatives)
    [candidates] = held_out_candidates(searcher, found[:1], depth=10)
    assert set(candidates.units) <= set(chunks)
    with pytest.raises(ConfigError, match="no question has a gold passage"):
        question_queries(searcher, questions[-1:])


def _all_chunks(collection: Collection):
    keys, _ = collection.store.live_texts()
    return collection.store.chunks([int(k) for k in keys]).values()


class _EchoLLM:
    """Answers every prompt with a fixed reply, remembering the prompts (a deterministic fake)."""

    name = "fake"

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.prompts: list[str] = []

    def stream(self, messages, *, max_tokens: int, temperature: float):
        from rag.generation import Delta, Done

        self.prompts.append(messages[-1].content)
        yield Delta(self.reply)
        yield Done(None, "stop")


def test_llm_queries_ask_for_one_query_per_passage(hashed) -> None:
    from rag.tune.queries import llm_queries

    searcher, _ = hashed
    llm = _EchoLLM('Query: "when was the stadium built"')
    queries = llm_queries(searcher.collection, llm, limit=3, progress=False)
    assert [q.text for q in queries] == ["when was the stadium built"] * 3
    assert all(q.origin == "llm" and len(q.relevant) == 1 for q in queries)
    assert "Passage:" in llm.prompts[0] and "$passage" not in llm.prompts[0]
    assert llm_queries(searcher.collection, _EchoLLM("ok"), limit=3, progress=False) == []
