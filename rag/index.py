"""FAISS indexes over chunk vectors: exact for small collections, approximate above a threshold.

Every index maps FAISS ids to the store's chunk keys (IndexIDMap), so a hit leads straight back to
its SQLite row. Vectors are unit length, so inner product is cosine similarity.

    index = DenseIndex.build(keys, vectors, IndexParams(kind="auto"), dimension=384)
    scores, keys = index.search(query_vectors, k=10)

Approximate indexes size themselves from the collection: IVF gets about 4 sqrt(n) lists, and the
search knob (HNSW's efSearch, IVF's nprobe) that is not set explicitly is tuned when the index is
built: the smallest value whose recall@10 against exact search, on a sample of the collection's
own vectors, reaches `target_recall`. `index.tuning` records what was chosen and measured.
"""

from __future__ import annotations

import errno
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from rag.errors import ConfigError
from rag.settings import Settings

logger = logging.getLogger(__name__)


# Values tried, smallest first, when a search knob is tuned at build time.
EF_SEARCH_STEPS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
NPROBE_STEPS = (1, 2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024)
TUNE_QUERIES = 256  # pseudo-queries made from collection vectors when tuning
TUNE_K = 10
QUERY_COSINE = 0.35  # how close a pseudo-query stays to the vector it was made from (see tune)


@dataclass(frozen=True)
class IndexParams:
    """How to build and query an index; `kind` 'auto' picks by collection size. A knob left at
    None is derived from the collection (lists) or tuned at build time (efSearch, nprobe)."""

    kind: str = "auto"
    approx_threshold: int = 200_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 80
    hnsw_ef_search: int | None = None
    ivf_nlist: int | None = None
    ivf_nprobe: int | None = None
    pq_bytes: int | None = None
    target_recall: float = 0.95
    use_gpu: bool = True

    def resolve(self, size: int) -> str:
        """The concrete index kind for a collection of `size` vectors."""
        if self.kind == "auto":
            # IVF, not HNSW: at a million vectors it reached the target recall on both data sets
            # measured, and HNSW (M 32) did not on one of them (docs/scaling.md).
            return "flat" if size < self.approx_threshold else "ivf"
        return self.kind


def index_params(settings: Settings) -> IndexParams:
    """The index parameters a settings object asks for."""
    return IndexParams(
        kind=settings.index_type,
        approx_threshold=settings.approx_threshold,
        hnsw_m=settings.hnsw_m,
        hnsw_ef_construction=settings.hnsw_ef_construction,
        hnsw_ef_search=settings.hnsw_ef_search,
        ivf_nlist=settings.ivf_nlist,
        ivf_nprobe=settings.ivf_nprobe,
        pq_bytes=settings.pq_bytes,
        target_recall=settings.target_recall,
        use_gpu=settings.gpu_index,
    )


def _build_flat(dimension: int, params: IndexParams, size: int) -> faiss.Index:
    return faiss.IndexFlatIP(dimension)


def _build_hnsw(dimension: int, params: IndexParams, size: int) -> faiss.Index:
    index = faiss.IndexHNSWFlat(dimension, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = params.hnsw_ef_construction
    return index


# When no setting reaches the target recall, the cheapest one this close to the best is used.
PLATEAU = 0.01

# IVF centroids are trained on at most this many points per list (faiss's own cap is 256): at a
# million vectors that is a quarter of the k-means work, and build-time tuning of nprobe covers
# the difference (docs/scaling.md).
TRAIN_POINTS_PER_LIST = 64


def _training_sample(index: faiss.Index, vectors: np.ndarray) -> np.ndarray:
    """The vectors to train `index` on: all of them, or a fixed random sample for large IVF."""
    ivf = faiss.try_extract_index_ivf(index)
    limit = TRAIN_POINTS_PER_LIST * int(ivf.nlist) if ivf is not None else len(vectors)
    if len(vectors) <= limit:
        return vectors
    chosen = np.random.default_rng(0).choice(len(vectors), limit, replace=False)
    return vectors[np.sort(chosen)]


def ivf_lists(size: int, params: IndexParams) -> int:
    """IVF lists: as given, else about 4 sqrt(n); never more than the points can train (faiss
    wants 39 per centroid)."""
    wanted = params.ivf_nlist or int(4 * math.sqrt(max(size, 1)))
    return max(1, min(wanted, size // 39))


def _build_ivf(dimension: int, params: IndexParams, size: int) -> faiss.Index:
    quantizer = faiss.IndexFlatIP(dimension)
    nlist = ivf_lists(size, params)
    return faiss.IndexIVFFlat(quantizer, dimension, nlist, faiss.METRIC_INNER_PRODUCT)


def _build_ivfpq(dimension: int, params: IndexParams, size: int) -> faiss.Index:
    """IVF with product-quantised codes: `pq_bytes` bytes a vector (default dimension / 8, so
    48 for MiniLM against 1,536 for the float vector), for collections that outgrow memory."""
    code = params.pq_bytes or max(1, dimension // 8)
    if dimension % code:
        raise ConfigError(f"pq_bytes ({code}) must divide the dimension ({dimension})")
    # 256 centroids per sub-vector want about 10,000 training points; fewer get 16 centroids.
    bits = 8 if size >= 9_984 else 4
    quantizer = faiss.IndexFlatIP(dimension)
    nlist = ivf_lists(size, params)
    return faiss.IndexIVFPQ(quantizer, dimension, nlist, code, bits, faiss.METRIC_INNER_PRODUCT)


# The one registry of index kinds; settings validation and the CLI's choices come from it too.
INDEX_BUILDERS: dict[str, Callable[[int, IndexParams, int], faiss.Index]] = {
    "flat": _build_flat,
    "hnsw": _build_hnsw,
    "ivf": _build_ivf,
    "ivfpq": _build_ivfpq,
}


class DenseIndex:
    """A FAISS index (on GPU when one is present and the kind allows) keyed by chunk keys."""

    def __init__(
        self,
        index: faiss.Index,
        kind: str,
        params: IndexParams,
        tuning: dict[str, float] | None = None,
    ) -> None:
        self.kind = kind
        self.params = params
        # What the build tuned ({"ef_search" or "nprobe": value, "recall@10": measured}).
        self.tuning = dict(tuning or {})
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
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not inner.is_trained and len(keys):
            inner.train(_training_sample(inner, vectors))
        index = faiss.IndexIDMap2(inner)
        if len(keys):
            index.add_with_ids(vectors, keys.astype(np.int64))
        logger.info("built %s index over %d vectors", kind, len(keys))
        built = cls(index, kind, params)
        if len(keys) > TUNE_K + 1 and built.tunable_knob() is not None:
            built.tune(keys, vectors)
        return built

    def save(self, path: Path) -> None:
        """Write atomically: a reader sees the old file or the new one, never a torn one.

        A full disk raises OSError(ENOSPC) and leaves no temporary file behind.
        """
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        try:
            faiss.write_index(self._cpu_index, str(tmp))
            os.replace(tmp, path)
        except RuntimeError as e:
            tmp.unlink(missing_ok=True)
            # FAISS reports a failed write as RuntimeError with strerror's text in the message.
            for code in (errno.ENOSPC, errno.EDQUOT):
                if f"({os.strerror(code)})" in str(e):
                    raise OSError(code, os.strerror(code), str(path)) from e
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(
        cls, path: Path, kind: str, params: IndexParams, tuning: dict[str, float] | None = None
    ) -> DenseIndex:
        """Read an index saved by `save`; `tuning` is what its build recorded."""
        return cls(faiss.read_index(str(path)), kind, params, tuning)

    def tunable_knob(self) -> str | None:
        """The search knob the build may tune: one the params leave unset, for this kind."""
        if self.kind == "hnsw" and self.params.hnsw_ef_search is None:
            return "ef_search"
        if self.kind in ("ivf", "ivfpq") and self.params.ivf_nprobe is None:
            return "nprobe"
        return None

    def tune(self, keys: np.ndarray, vectors: np.ndarray, seed: int = 0) -> dict[str, float]:
        """Pick the smallest efSearch / nprobe whose recall@10 reaches the target.

        Queries are made from up to TUNE_QUERIES of the collection's own vectors, each moved
        away from its source in a random direction to cosine QUERY_COSINE: a real question is
        near the passages that answer it, not on one of them, and an index vector used as its
        own query is the easiest case there is. At 0.7 the tuned values were too small for real
        SciFact questions (efSearch 16 where they need 48, nprobe 2 where they need 48); 0.35 errs
        on the safe side (benchmarks/faiss_scale.py, docs/scaling.md).

        Records and returns {knob: value, "recall@10": measured, "queries": count}.
        """
        knob = self.tunable_knob()
        if knob is None:
            return self.tuning
        queries = pseudo_queries(vectors, min(TUNE_QUERIES, len(keys)), seed)
        _, exact = faiss.knn(queries, vectors, TUNE_K, metric=faiss.METRIC_INNER_PRODUCT)
        truth = np.where(exact >= 0, keys[exact], -1)
        if knob == "ef_search":
            steps: tuple[int, ...] = EF_SEARCH_STEPS
        else:
            nlist = int(faiss.extract_index_ivf(self._cpu_index).nlist)
            steps = (*(n for n in NPROBE_STEPS if n < nlist), nlist)
        measured: list[tuple[int, float]] = []
        for value in steps:
            self._set_knob(knob, value)
            _, found = self._index.search(queries, TUNE_K)
            measured.append((value, recall_of(found, truth)))
            if measured[-1][1] >= self.params.target_recall:
                value, recall = measured[-1]
                break
        else:
            # Out of reach (compressed codes, say): the cheapest setting within PLATEAU of the
            # best seen, not the dearest one, which costs latency and buys nothing.
            best = max(r for _, r in measured)
            value, recall = next((v, r) for v, r in measured if r >= best - PLATEAU)
            logger.warning(
                "%s index reaches recall@10 %.3f at most, below the target %.2f; using %s=%d "
                "(recall@10 %.3f)",
                self.kind,
                best,
                self.params.target_recall,
                knob,
                value,
                recall,
            )
        self.tuning = {knob: value, "recall@10": round(recall, 4), "queries": len(queries)}
        logger.info("tuned %s index: %s", self.kind, self.tuning)
        return self.tuning

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, chunk keys) per query; missing slots have key -1."""
        if self.size == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        k = min(k, self.size)
        scores, keys = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, keys

    def _apply_search_params(self) -> None:
        """Explicit params first, then what the build tuned, then FAISS-sized fallbacks."""
        if self.kind == "hnsw":
            ef = self.params.hnsw_ef_search or self.tuning.get("ef_search") or 128
            self._set_knob("ef_search", int(ef))
        elif self.kind in ("ivf", "ivfpq"):
            nprobe = self.params.ivf_nprobe or self.tuning.get("nprobe") or 16
            self._set_knob("nprobe", int(nprobe))

    def _set_knob(self, knob: str, value: int) -> None:
        # IndexIDMap2 wraps the real index; its search knobs live on the inner one.
        if knob == "ef_search":
            inner: Any = faiss.downcast_index(getattr(self._cpu_index, "index", self._cpu_index))
            inner.hnsw.efSearch = value
        else:
            faiss.extract_index_ivf(self._index).nprobe = value


def pseudo_queries(vectors: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """`count` unit vectors, each at cosine QUERY_COSINE from a randomly picked row of
    `vectors` (which are unit length), in a random direction."""
    rng = np.random.default_rng(seed)
    sources = vectors[rng.choice(len(vectors), size=count, replace=False)]
    noise = rng.standard_normal(sources.shape).astype(np.float32)
    # The part of the noise orthogonal to each source, at unit length.
    noise -= np.sum(noise * sources, axis=1, keepdims=True) * sources
    noise /= np.maximum(np.linalg.norm(noise, axis=1, keepdims=True), 1e-12)
    sideways = math.sqrt(1.0 - QUERY_COSINE**2)
    return np.ascontiguousarray(QUERY_COSINE * sources + sideways * noise, dtype=np.float32)


def recall_of(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true neighbours (rows of keys, -1 for empty) that were found."""
    shares = []
    for found_row, truth_row in zip(found, truth, strict=True):
        want = set(truth_row.tolist()) - {-1}
        shares.append(len(want & set(found_row.tolist())) / max(1, len(want)))
    return float(np.mean(shares)) if shares else 1.0


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
