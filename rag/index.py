"""FAISS indexes over chunk vectors: exact for small collections, approximate above a threshold.

Every index maps FAISS ids to the store's chunk keys (IndexIDMap), so a hit leads straight back to
its SQLite row. Vectors are unit length, so inner product is cosine similarity.

    index = DenseIndex.build(keys, vectors, IndexParams(kind="auto"))
    scores, keys = index.search(query_vectors, k=10)
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from rag.errors import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexParams:
    """How to build and query an index; `kind` 'auto' picks by collection size."""

    kind: str = "auto"
    approx_threshold: int = 200_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int = 128
    ivf_nprobe: int = 16
    use_gpu: bool = True

    def resolve(self, size: int) -> str:
        """The concrete index kind for a collection of `size` vectors."""
        if self.kind == "auto":
            return "flat" if size < self.approx_threshold else "hnsw"
        return self.kind


def _build_flat(dimension: int, params: IndexParams, size: int) -> faiss.Index:
    return faiss.IndexFlatIP(dimension)


def _build_hnsw(dimension: int, params: IndexParams, size: int) -> faiss.Index:
    index = faiss.IndexHNSWFlat(dimension, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = params.hnsw_ef_construction
    return index


def _build_ivf(dimension: int, params: IndexParams, size: int) -> faiss.Index:
    # About 4*sqrt(n) lists, each with enough points (faiss wants 39 per centroid) to train on.
    nlist = max(1, min(int(4 * math.sqrt(max(size, 1))), size // 39))
    quantizer = faiss.IndexFlatIP(dimension)
    return faiss.IndexIVFFlat(quantizer, dimension, nlist, faiss.METRIC_INNER_PRODUCT)


# The one registry of index kinds; settings validation and the CLI's choices come from it too.
INDEX_BUILDERS: dict[str, Callable[[int, IndexParams, int], faiss.Index]] = {
    "flat": _build_flat,
    "hnsw": _build_hnsw,
    "ivf": _build_ivf,
}


class DenseIndex:
    """A FAISS index (on GPU when one is present and the kind allows) keyed by chunk keys."""

    def __init__(self, index: faiss.Index, kind: str, params: IndexParams) -> None:
        self.kind = kind
        self.params = params
        self._cpu_index = index
        self._index = _maybe_to_gpu(index, kind, params.use_gpu)
        self._apply_search_params()

    def __repr__(self) -> str:
        return f"DenseIndex({self.kind}, {self.size} vectors, gpu={self.on_gpu})"

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    @property
    def dimension(self) -> int:
        return int(self._index.d)

    @property
    def on_gpu(self) -> bool:
        return self._index is not self._cpu_index

    @classmethod
    def build(
        cls, keys: np.ndarray, vectors: np.ndarray, params: IndexParams, dimension: int
    ) -> DenseIndex:
        """Build an index of the kind `params` picks for this many vectors."""
        kind = params.resolve(len(keys))
        builder = INDEX_BUILDERS.get(kind)
        if builder is None:
            raise ConfigError(
                f"unknown index type {kind!r} (valid: auto, {', '.join(INDEX_BUILDERS)})"
            )
        inner = builder(dimension, params, len(keys))
        if not inner.is_trained and len(keys):
            inner.train(np.ascontiguousarray(vectors, dtype=np.float32))
        index = faiss.IndexIDMap2(inner)
        if len(keys):
            index.add_with_ids(
                np.ascontiguousarray(vectors, dtype=np.float32), keys.astype(np.int64)
            )
        logger.info("built %s index over %d vectors", kind, len(keys))
        return cls(index, kind, params)

    def save(self, path: Path) -> None:
        """Write atomically: a reader sees the old file or the new one, never a torn one."""
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        faiss.write_index(self._cpu_index, str(tmp))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, kind: str, params: IndexParams) -> DenseIndex:
        return cls(faiss.read_index(str(path)), kind, params)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, chunk keys) per query; missing slots have key -1."""
        if self.size == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        k = min(k, self.size)
        scores, keys = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, keys

    def _apply_search_params(self) -> None:
        # IndexIDMap2 wraps the real index; its search knobs live on the inner one.
        inner = faiss.downcast_index(getattr(self._cpu_index, "index", self._cpu_index))
        if isinstance(inner, faiss.IndexHNSW):
            inner.hnsw.efSearch = self.params.hnsw_ef_search
        elif self.kind == "ivf":
            faiss.extract_index_ivf(self._index).nprobe = self.params.ivf_nprobe


def gpu_count() -> int:
    """GPUs FAISS can use (0 with faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def _maybe_to_gpu(index: faiss.Index, kind: str, wanted: bool) -> faiss.Index:
    # FAISS has GPU versions of flat and IVF indexes; HNSW stays on the CPU.
    if not wanted or kind == "hnsw" or gpu_count() == 0:
        return index
    try:
        moved = faiss.index_cpu_to_all_gpus(index)
    except (RuntimeError, AttributeError) as e:
        logger.warning("FAISS index stays on CPU: %s", e)
        return index
    logger.info("FAISS %s index moved to %d GPU(s)", kind, gpu_count())
    return moved
