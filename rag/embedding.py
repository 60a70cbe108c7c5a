"""Bi-encoder embedders: text in, L2-normalised float32 vectors out.

embedder = SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2")
vectors = embedder.embed(["a passage", "another"])   # shape (2, 384)
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from rag.errors import ModelError
from rag.models import canonical_name, local_only, pick_device, resolve_model
from rag.types import sha256_hex

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


@runtime_checkable
class Embedder(Protocol):
    """What the index and the ingest job need from an embedder."""

    name: str

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """A sentence-transformers bi-encoder, loaded once on first use."""

    def __init__(self, name: str, device: str = "auto", batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ModelError(f"batch_size must be at least 1, got {batch_size}")
        self.name = canonical_name(name)
        self.requested_device = device
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.name!r})"

    @property
    def model(self) -> SentenceTransformer:
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                location = resolve_model(self.name)
                device = pick_device(self.requested_device)
                offline = local_only(location, "embedder")
                try:
                    self._model = SentenceTransformer(
                        location, device=device, local_files_only=offline
                    )
                except Exception as e:
                    raise ModelError(f"cannot load embedder {self.name!r}: {e}") from e
                logger.info("loaded embedder %s on %s", self.name, device)
            return self._model

    @property
    def dimension(self) -> int:
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise ModelError(f"embedder {self.name!r} does not report its dimension")
        return int(dim)

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length or 0)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.model.tokenizer

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts as unit vectors (so inner product is cosine similarity)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # sentence-transformers sorts each call's texts by length, so padding stays small.
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class HashEmbedder:
    """Deterministic bag-of-words hashing embedder, for tests that need no model quality."""

    def __init__(self, dimension: int = 64, name: str = "test/hash-embedder") -> None:
        self.name = name
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                bucket = int(sha256_hex(word)[:8], 16) % self._dimension
                out[row, bucket] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)
