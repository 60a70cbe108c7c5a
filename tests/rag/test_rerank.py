"""The training-free MaxSim reranker over real MiniLM token embeddings, and the fusion of a
reranker's order with the first stage's."""

from __future__ import annotations

import pytest

from rag.errors import ModelError
from rag.rerank import Fusion, MaxSimReranker
from rag.types import Chunk, Hit
from tests.conftest import MINILM


def _hit(text: str, n: int) -> Hit:
    chunk = Chunk(id=str(n), document_id="d", source=f"s{n}", page=1, start=0, end=1, text=text)
    return Hit(chunk=chunk, score=0.0, stage="hybrid")


def test_maxsim_prefers_the_passage_that_answers(squad_paragraphs) -> None:
    reranker = MaxSimReranker(MINILM, device="cpu")
    answer = squad_paragraphs[0]["context"]
    other = next(
        p["context"] for p in squad_paragraphs if p["title"] != squad_paragraphs[0]["title"]
    )
    question = squad_paragraphs[0]["questions"][0]
    hits = reranker.rerank(question, [_hit(other, 0), _hit(answer, 1)])
    assert [h.chunk.source for h in hits] == ["s1", "s0"]
    assert all(h.stage == "rerank" for h in hits) and hits[0].score > hits[1].score
    # Fused with weight 0 the incoming order stands.
    reranker.fusion = Fusion(0.0)
    assert [
        h.chunk.source for h in reranker.rerank(question, [_hit(other, 0), _hit(answer, 1)])
    ] == [
        "s0",
        "s1",
    ]
    assert reranker.rerank(question, []) == []


def test_maxsim_is_chosen_by_name_and_needs_no_training() -> None:
    from rag.rerank import MaxSimReranker, choose_reranker

    choice = choose_reranker(None, "maxsim", True, "cpu", 256)
    assert isinstance(choice.reranker, MaxSimReranker) and choice.reason is None
    assert choice.reranker.name == MINILM
    missing = choose_reranker(None, "maxsim:/no/such/model", True, "cpu", 256)
    assert missing.reranker is None
    assert missing.reason and missing.reason.startswith("reranking is off: ")


def test_fusion_weights_between_the_two_orders() -> None:
    scores = [0.1, 0.9, 0.5]  # the reranker puts candidate 1 first, then 2, then 0
    order = lambda fused: sorted(range(3), key=lambda i: -fused[i])  # noqa: E731
    assert order(Fusion(1.0).fuse(scores)) == [1, 2, 0]
    assert order(Fusion(0.0).fuse(scores)) == [0, 1, 2]
    with pytest.raises(ModelError, match="fusion weight must be within"):
        Fusion(1.5)
