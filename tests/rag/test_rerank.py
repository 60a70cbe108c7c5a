"""The training-free MaxSim reranker over real MiniLM token embeddings, and the fusion of a
reranker's order with the first stage's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rag.errors import ModelError
from rag.rerank import Fusion, MaxSimReranker
from rag.token_cache import TokenCache
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


def test_a_model_folder_is_read_as_what_it_holds(tmp_path: Path) -> None:
    """`--reranker FOLDER`: a MaxSim model that `rag tune` saved is reranked by MaxSim, not read
    as a cross-encoder with a random head; a plain bi-encoder is refused in one line."""
    from rag.models import resolve_model
    from rag.rerank import (
        CROSS_ENCODER,
        MAXSIM,
        MaxSimReranker,
        choose_reranker,
        folder_arch,
        multi_vector_model,
    )

    tuned = tmp_path / "reranker-tuned"
    multi_vector_model(MINILM, "cpu").save(str(tuned))
    assert folder_arch(str(tuned)) == MAXSIM
    choice = choose_reranker(None, str(tuned), True, "cpu", 256)
    assert isinstance(choice.reranker, MaxSimReranker) and choice.reranker.name == str(tuned)

    plain = resolve_model(MINILM)  # the packaged bi-encoder: no classification head
    assert folder_arch(plain) is None
    refused = choose_reranker(None, plain, True, "cpu", 256)
    assert refused.reranker is None and refused.reason
    assert "neither a cross-encoder" in refused.reason and f"maxsim:{plain}" in refused.reason
    assert "\n" not in refused.reason

    classifier = tmp_path / "cross-encoder"
    classifier.mkdir()
    (classifier / "config.json").write_text('{"architectures": ["BertForSequenceClassification"]}')
    assert folder_arch(str(classifier)) == CROSS_ENCODER
    assert folder_arch("cross-encoder/ms-marco-MiniLM-L6-v2") == CROSS_ENCODER  # a hub id


def test_fusion_weights_between_the_two_orders() -> None:
    scores = [0.1, 0.9, 0.5]  # the reranker puts candidate 1 first, then 2, then 0
    order = lambda fused: sorted(range(3), key=lambda i: -fused[i])  # noqa: E731
    assert order(Fusion(1.0).fuse(scores)) == [1, 2, 0]
    assert order(Fusion(0.0).fuse(scores)) == [0, 1, 2]
    with pytest.raises(ModelError, match="fusion weight must be within"):
        Fusion(1.5)


def test_cached_passages_score_as_fresh_ones_and_are_encoded_once(
    squad_paragraphs, tmp_path: Path
) -> None:
    texts = [p["context"] for p in squad_paragraphs[:6]]
    question = squad_paragraphs[0]["questions"][0]
    fresh = MaxSimReranker(MINILM, device="cpu").score(question, texts)
    cache = TokenCache(tmp_path / "cache" / "tokens.sqlite", "maxsim|test", limit_mb=64)
    cached = MaxSimReranker(MINILM, device="cpu", cache=cache)
    first = cached.score(question, texts)
    assert set(cache.get(texts)) == set(range(len(texts)))  # all kept after one search
    again = cached.score(question, texts)
    # float16 storage moves a score by about 1e-4; the order does not change.
    assert np.allclose(first, fresh, atol=2e-3) and np.allclose(again, fresh, atol=2e-3)
    assert np.argsort(again).tolist() == np.argsort(fresh).tolist()
    # A reranker over another model (another key) finds nothing of this one's.
    assert TokenCache(cache.path, "maxsim|other").get(texts) == {}


def test_warming_encodes_only_what_is_missing(squad_paragraphs, tmp_path: Path) -> None:
    texts = [p["context"] for p in squad_paragraphs[:8]]
    cache = TokenCache(tmp_path / "tokens.sqlite", "maxsim|test")
    reranker = MaxSimReranker(MINILM, device="cpu", cache=cache)
    reranker.score("Who won?", texts[:3])
    assert reranker.warm(texts + texts[:2], batch=2) == 5
    assert reranker.warm(texts) == 0 and len(cache.get(texts)) == 8


def test_a_full_or_unwritable_cache_only_costs_speed(squad_paragraphs, tmp_path: Path) -> None:
    texts = [p["context"] for p in squad_paragraphs[:4]]
    full = TokenCache(tmp_path / "full.sqlite", "maxsim|test", limit_mb=0.001)
    reranker = MaxSimReranker(MINILM, device="cpu", cache=full)
    reranker.score("Who won?", texts[:2])
    reranker.score("Who won?", texts)  # the file passed its limit: nothing more is added
    assert len(full.get(texts)) < len(texts)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    broken = TokenCache(blocker / "tokens.sqlite", "maxsim|test")
    scores = MaxSimReranker(MINILM, device="cpu", cache=broken).score("Who won?", texts)
    assert len(scores) == len(texts) and broken.get(texts) == {}
    assert blocker.read_text().startswith("a file")  # untouched


def test_a_collection_keeps_its_maxsim_cache_inside_its_folder(tmp_path: Path) -> None:
    from rag.rerank import choose_reranker

    path = tmp_path / "collection" / "cache" / "tokens.sqlite"
    choice = choose_reranker(None, "maxsim", True, "cpu", 256, cache=path, cache_mb=100)
    assert isinstance(choice.reranker, MaxSimReranker)
    assert choice.reranker.cache is not None and choice.reranker.cache.path == path
    off = choose_reranker(None, "maxsim", True, "cpu", 256, cache=path, cache_mb=0)
    assert isinstance(off.reranker, MaxSimReranker) and off.reranker.cache is None


def test_the_query_side_on_onnx_matches_torch() -> None:
    reranker = MaxSimReranker(MINILM, device="cpu")
    query = "Which NFL team represented the AFC at Super Bowl 50?"
    onnx = reranker.query_tokens(query)
    assert reranker._queries  # ONNX Runtime stands in for torch on a CPU
    (torch_tokens,) = reranker.load().encode_query([query], show_progress_bar=False)
    expected = torch_tokens.detach().numpy()
    assert onnx.shape == expected.shape  # [CLS] and [SEP] left out on both
    assert np.allclose(onnx, expected, atol=1e-4)


def test_maxsim_reads_as_many_tokens_as_rerank_max_length(squad_paragraphs) -> None:
    from rag.rerank import choose_reranker

    passage = max((p["context"] for p in squad_paragraphs), key=len)
    short = choose_reranker(None, "maxsim", True, "cpu", max_length=32).reranker
    assert isinstance(short, MaxSimReranker)
    (tokens,) = short.passages([passage])
    # [CLS] and [SEP] are read but not scored.
    assert len(tokens) == 30 and len(short.query_tokens(passage)) == 30
    (full,) = MaxSimReranker(MINILM, device="cpu").passages([passage])
    assert len(full) > 100
