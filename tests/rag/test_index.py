"""FAISS index kinds: exact, HNSW and IVF agree with exact search on real text vectors."""

from __future__ import annotations

import numpy as np
import pytest

from rag.embedding import HashEmbedder
from rag.errors import ConfigError
from rag.index import DenseIndex, IndexParams


@pytest.fixture(scope="module")
def vectors(squad_paragraphs) -> np.ndarray:
    texts = [str(p["context"]) for p in squad_paragraphs[:2000]]
    return HashEmbedder(dimension=128).embed(texts)


def test_auto_picks_exact_below_threshold_and_hnsw_above() -> None:
    params = IndexParams(kind="auto", approx_threshold=1000)
    assert params.resolve(999) == "flat"
    assert params.resolve(1000) == "hnsw"


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
        ConfigError, match=r"unknown index type 'annoy' \(valid: auto, flat, hnsw, ivf\)"
    ):
        DenseIndex.build(
            np.zeros(1, np.int64), np.ones((1, 4), np.float32), IndexParams(kind="annoy"), 4
        )
