"""FAISS index kinds: exact, HNSW and IVF agree with exact search on real text vectors."""

from __future__ import annotations

from dataclasses import replace

import faiss
import numpy as np
import pytest

from rag.embedding import HashEmbedder
from rag.errors import ConfigError
from rag.index import DenseIndex, IndexParams


@pytest.fixture(scope="module")
def vectors(squad_paragraphs) -> np.ndarray:
    texts = [str(p["context"]) for p in squad_paragraphs[:2000]]
    return HashEmbedder(dimension=128).embed(texts)


@pytest.fixture(scope="module")
def outside_queries(squad_paragraphs) -> np.ndarray:
    """SQuAD questions about paragraphs in the index: queries that are not index vectors."""
    questions = [str(q) for p in squad_paragraphs[:2000:10] for q in p["questions"][:1]]
    return HashEmbedder(dimension=128).embed(questions)


def recall_at_10(exact: DenseIndex, approx: DenseIndex, queries: np.ndarray) -> float:
    _, truth = exact.search(queries, 10)
    _, found = approx.search(queries, 10)
    return float(np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)]))


def test_auto_picks_exact_below_threshold_and_ivf_above() -> None:
    params = IndexParams(kind="auto", approx_threshold=1000)
    assert params.resolve(999) == "flat"
    assert params.resolve(1000) == "ivf"


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_matches_exact(vectors: np.ndarray, kind: str) -> None:
    keys = np.arange(100, 100 + len(vectors), dtype=np.int64)
    exact = DenseIndex.build(keys, vectors, IndexParams(kind="flat"), vectors.shape[1])
    approx = DenseIndex.build(keys, vectors, IndexParams(kind=kind, ivf_nprobe=8), vectors.shape[1])
    assert approx.kind == kind and approx.size == len(vectors)
    queries = vectors[:100]
    _, truth = exact.search(queries, 10)
    _, found = approx.search(queries, 10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found, strict=True)])
    assert recall >= 0.9
    assert set(found.ravel()) <= set(keys)  # ids are the store's keys, not positions


def test_save_and_load_round_trip(tmp_path, vectors: np.ndarray) -> None:
    keys = np.arange(len(vectors), dtype=np.int64) * 7
    index = DenseIndex.build(keys, vectors, IndexParams(kind="flat"), vectors.shape[1])
    index.save(tmp_path / "dense.faiss")
    loaded = DenseIndex.load(tmp_path / "dense.faiss", "flat", IndexParams())
    np.testing.assert_array_equal(index.search(vectors[:5], 3)[1], loaded.search(vectors[:5], 3)[1])


def test_empty_index_searches_to_nothing() -> None:
    index = DenseIndex.build(np.zeros(0, np.int64), np.zeros((0, 8), np.float32), IndexParams(), 8)
    _, keys = index.search(np.ones((1, 8), np.float32), 5)
    assert keys.shape == (1, 0)


def test_unknown_kind_lists_valid_values() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown index type 'annoy' \(valid: auto, flat, hnsw, ivf, ivfpq\)"
    ):
        DenseIndex.build(
            np.zeros(1, np.int64), np.ones((1, 4), np.float32), IndexParams(kind="annoy"), 4
        )


@pytest.mark.parametrize(("kind", "knob"), [("hnsw", "ef_search"), ("ivf", "nprobe")])
def test_unset_search_knob_is_tuned_to_the_target_recall(
    vectors: np.ndarray, outside_queries: np.ndarray, kind: str, knob: str
) -> None:
    keys = np.arange(len(vectors), dtype=np.int64) + 5
    params = IndexParams(kind=kind, target_recall=0.95)
    approx = DenseIndex.build(keys, vectors, params, vectors.shape[1])
    exact = DenseIndex.build(keys, vectors, IndexParams(kind="flat"), vectors.shape[1])
    assert set(approx.tuning) == {knob, "recall@10", "queries"}
    assert approx.tuning["recall@10"] >= 0.95
    # Tuned on the collection's own vectors, it holds for questions that are not in it.
    assert recall_at_10(exact, approx, outside_queries) >= 0.9
    # A lower target settles for a cheaper setting.
    cheap = DenseIndex.build(keys, vectors, replace(params, target_recall=0.5), vectors.shape[1])
    assert cheap.tuning[knob] < approx.tuning[knob]


def test_explicit_knob_is_used_as_given(vectors: np.ndarray) -> None:
    keys = np.arange(len(vectors), dtype=np.int64)
    index = DenseIndex.build(keys, vectors, IndexParams(kind="hnsw", hnsw_ef_search=40), 128)
    assert index.tuning == {}
    assert faiss.downcast_index(index._cpu_index.index).hnsw.efSearch == 40


def test_tuned_knob_survives_save_and_load(tmp_path, vectors: np.ndarray) -> None:
    keys = np.arange(len(vectors), dtype=np.int64)
    built = DenseIndex.build(keys, vectors, IndexParams(kind="ivf"), 128)
    built.save(tmp_path / "dense.faiss")
    loaded = DenseIndex.load(tmp_path / "dense.faiss", "ivf", IndexParams(), built.tuning)
    assert faiss.extract_index_ivf(loaded._cpu_index).nprobe == built.tuning["nprobe"]
    np.testing.assert_array_equal(
        built.search(vectors[:20], 5)[1], loaded.search(vectors[:20], 5)[1]
    )


def test_ivfpq_compresses_and_reports_its_recall(vectors: np.ndarray) -> None:
    keys = np.arange(len(vectors), dtype=np.int64)
    index = DenseIndex.build(keys, vectors, IndexParams(kind="ivfpq", pq_bytes=16), 128)
    ivf = faiss.extract_index_ivf(index._cpu_index)
    assert ivf.code_size == 16 // 2  # 4-bit codes below 10,000 training vectors
    assert 0.0 < index.tuning["recall@10"] <= 1.0
    with pytest.raises(ConfigError, match=r"pq_bytes \(12\) must divide the dimension \(128\)"):
        DenseIndex.build(keys, vectors, IndexParams(kind="ivfpq", pq_bytes=12), 128)


def test_collection_records_the_tuning(settings, tmp_path, squad_paragraphs) -> None:
    """Through the ingest job: the index kind and what was tuned land in dense-<gen>.json."""
    from ingest.pipeline import IngestJob
    from rag.collection import Collection
    from tests.conftest import write_squad_docs

    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 60)
    chosen = settings.model_copy(update={"index_type": "hnsw"})
    IngestJob(chosen, embedder=HashEmbedder(dimension=64)).run_files("tuned", docs)
    collection = Collection.open(chosen.index_dir, "tuned")
    try:
        info = collection.index_info()
        assert info["kind"] == "hnsw"
        assert info["tuning"]["recall@10"] >= chosen.target_recall
        assert info["tuning"]["ef_search"] in (16, 24, 32, 48, 64, 96, 128)
    finally:
        collection.close()


def test_large_ivf_trains_on_a_fixed_sample_and_still_reaches_the_target(
    vectors: np.ndarray, outside_queries: np.ndarray
) -> None:
    from rag.index import TRAIN_POINTS_PER_LIST, _training_sample

    keys = np.arange(len(vectors), dtype=np.int64)
    params = IndexParams(kind="ivf", ivf_nlist=8, target_recall=0.95)
    lists = faiss.IndexIVFFlat(faiss.IndexFlatIP(vectors.shape[1]), vectors.shape[1], 8)
    sample = _training_sample(lists, vectors)
    assert len(sample) == TRAIN_POINTS_PER_LIST * 8 < len(vectors)
    np.testing.assert_array_equal(sample, _training_sample(lists, vectors))  # the same each time
    approx = DenseIndex.build(keys, vectors, params, vectors.shape[1])
    exact = DenseIndex.build(keys, vectors, IndexParams(kind="flat"), vectors.shape[1])
    assert approx.tuning["recall@10"] >= 0.95
    assert recall_at_10(exact, approx, outside_queries) >= 0.9


def test_out_of_reach_target_settles_for_the_cheapest_setting_near_the_best(
    vectors: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    """4-bit codes cannot reach recall 0.999: the tuner stops where recall levels off instead
    of scanning every list."""
    from rag.index import PLATEAU, recall_of

    keys = np.arange(len(vectors), dtype=np.int64)
    params = IndexParams(kind="ivfpq", pq_bytes=16, target_recall=0.999)
    index = DenseIndex.build(keys, vectors, params, 128)
    nlist = faiss.extract_index_ivf(index._cpu_index).nlist
    assert "below the target" in caplog.text
    chosen = index.tuning["nprobe"]
    assert chosen < nlist
    # Scanning every list would buy no more than PLATEAU over the chosen setting.
    queries = vectors[:: len(vectors) // 200][:200]
    _, truth = faiss.knn(queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
    index._set_knob("nprobe", nlist)
    _, everything = index.search(queries, 10)
    index._set_knob("nprobe", chosen)
    _, found = index.search(queries, 10)
    assert recall_of(everything, truth) - recall_of(found, truth) <= PLATEAU + 0.02
