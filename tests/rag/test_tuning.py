"""Training data for `rag tune`: labels, synthetic queries, negatives, held-out scoring, fusion."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import IngestJob
from rag.collection import Collection
from rag.embedding import HashEmbedder
from rag.errors import ConfigError, ModelError
from rag.evaluation import overlap
from rag.questions import Question
from rag.rerank import Fusion
from rag.retrieval import Searcher
from rag.tune.heldout import (
    Candidates,
    dense_ndcg,
    evaluate_reranking,
    held_out_candidates,
    split_held_out,
)
from rag.tune.negatives import mine_negatives
from rag.tune.queries import (
    TrainQuery,
    _clean_query,
    labelled_queries,
    question_queries,
    read_qrels,
    read_queries,
    self_supervised_queries,
    source_matcher,
)
from rag.types import Chunk
from tests.conftest import write_squad_docs


@pytest.fixture(scope="module")
def hashed(tmp_path_factory, squad_paragraphs):
    """24 real SQuAD paragraphs in a collection embedded by the hash-seeded fake embedder (the
    logic here does not depend on embedding quality)."""
    from rag.settings import Settings

    root = tmp_path_factory.mktemp("tuning")
    docs = write_squad_docs(root / "docs", squad_paragraphs, 24)
    embedder = HashEmbedder()
    settings = Settings.load(
        index_dir=root / "indexes", progress=False, device="cpu", embedding_model=embedder.name
    )
    IngestJob(settings, embedder=embedder).run_files("t", docs)
    collection = Collection.open(settings.index_dir, "t")
    yield Searcher(collection, settings, embedder=embedder, reranker=None), docs
    collection.close()


def test_fusion_weights_between_the_two_orders() -> None:
    scores = [0.1, 0.9, 0.5]  # the reranker puts candidate 1 first, then 2, then 0
    order = lambda fused: sorted(range(3), key=lambda i: -fused[i])  # noqa: E731
    assert order(Fusion(1.0).fuse(scores)) == [1, 2, 0]
    assert order(Fusion(0.0).fuse(scores)) == [0, 1, 2]
    with pytest.raises(ModelError, match="fusion weight must be within"):
        Fusion(1.5)


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


def test_held_out_split_is_stable_and_checked() -> None:
    queries = [TrainQuery(str(n), "q", (n,), frozenset({"s"}), "self") for n in range(50)]
    train, held = split_held_out(queries, 0.2)
    assert (train, held) == split_held_out(list(queries), 0.2)
    assert len(train) + len(held) == 50 and 3 <= len(held) <= 20
    _, capped = split_held_out(queries, 0.5, limit=4)
    assert len(capped) == 4
    with pytest.raises(ConfigError, match="too few to train on"):
        split_held_out(queries[:1], 0.2)
    with pytest.raises(ConfigError, match="held-out fraction must be between 0 and 1"):
        split_held_out(queries, 1.0)


def test_llm_replies_become_queries_or_are_dropped() -> None:
    assert _clean_query('Query: "Who won Super Bowl 50?"\nmore') == "Who won Super Bowl 50?"
    assert _clean_query("") is None
    assert _clean_query("Yes") is None


def test_self_supervised_queries_cut_the_query_out(hashed) -> None:
    searcher, _ = hashed
    queries = self_supervised_queries(searcher.collection, limit=20, seed=1)
    assert len(queries) >= 10
    for query in queries:
        assert query.origin == "self" and len(query.positives) == 1
        assert query.positive_text and query.text not in query.positive_text
    assert self_supervised_queries(searcher.collection, limit=20, seed=1) == queries


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


class _Oracle:
    """Scores a text 1 when it is a relevant passage: a reranker that is always right."""

    def __init__(self, relevant: set[str]) -> None:
        self.relevant = relevant

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        return [1.0 if text in self.relevant else 0.0 for text in texts]


class _Constant:
    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        return [0.0] * len(texts)


def test_held_out_scoring_picks_a_fusion_weight_and_guards_against_no_gain() -> None:
    query = TrainQuery("1", "q", (1,), frozenset({"b"}), "labelled")
    candidates = [Candidates(query, ("text a", "text b"), ("a", "b"))]
    good = evaluate_reranking(candidates, _Oracle({"text b"}), progress=False)
    assert good.first_stage < good.fused == good.reranker == 1.0 and good.weight > 0
    flat = evaluate_reranking(candidates, _Constant(), progress=False)
    # Nothing gained: the best fusion is the first stage itself (weight 0), which the guard
    # (fused > first stage) refuses to register.
    assert flat.fused == flat.first_stage and flat.weight == 0.0


def _chunk(n: int, source: str) -> Chunk:
    return Chunk(id=f"c{n}", document_id=source, source=source, page=1, start=0, end=1, text="t")


def test_dense_ndcg_ranks_documents_by_their_best_chunk() -> None:
    keys = np.array([10, 11, 12])
    vectors = np.eye(3, dtype=np.float32)
    query = TrainQuery("1", "q", (12,), frozenset({"c"}), "self")
    chunks = {10: _chunk(10, "a"), 11: _chunk(11, "b"), 12: _chunk(12, "c")}
    assert dense_ndcg(np.array([[0, 0, 1.0]]), keys, vectors, chunks, [query]) == 1.0
    assert dense_ndcg(np.array([[1.0, 0.5, 0]]), keys, vectors, chunks, [query]) == 0.5
    # Judged by passage, another chunk of the same document no longer counts.
    same_doc = {10: _chunk(10, "c"), 11: _chunk(11, "b"), 12: _chunk(12, "c")}
    by_document = TrainQuery("1", "q", (12,), frozenset({"c"}), "questions")
    by_passage = TrainQuery("1", "q", (12,), frozenset({"c12"}), "questions", passages=True)
    assert dense_ndcg(np.array([[1.0, 0.5, 0]]), keys, vectors, same_doc, [by_document]) == 1.0
    assert dense_ndcg(np.array([[1.0, 0.5, 0]]), keys, vectors, same_doc, [by_passage]) == 0.5


def test_held_out_candidates_are_first_stage_hits(hashed, squad_paragraphs) -> None:
    searcher, _ = hashed
    query = TrainQuery("1", squad_paragraphs[0]["questions"][0], (1,), frozenset(), "labelled")
    [found] = held_out_candidates(searcher, [query], depth=5)
    hits = searcher.retrieve(query.text, 5, "hybrid")
    assert found.texts == tuple(hit.chunk.text for hit in hits)
    assert found.units == tuple(hit.chunk.source for hit in hits)


def _all_chunks(collection: Collection):
    keys, _ = collection.store.live_texts()
    return collection.store.chunks([int(k) for k in keys]).values()


def test_examples_round_trip_through_json() -> None:
    from rag.tune.negatives import Example

    example = Example("q", "p", ("n1", "n2"))
    assert Example.from_json(json.loads(json.dumps(example.to_json()))) == example


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
