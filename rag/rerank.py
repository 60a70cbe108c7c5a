"""Cross-encoder reranking of retrieved chunks.

reranker = CrossEncoderReranker("path/to/cross-encoder")
hits = reranker.rerank("query", hits)   # re-scored, best first
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from rag.errors import ModelError
from rag.models import local_only, pick_device, resolve_model
from rag.types import Hit

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

logger = logging.getLogger(__name__)


class Reranker(Protocol):
    name: str

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]: ...


class CrossEncoderReranker:
    """Any sentence-transformers CrossEncoder, by hub id or local folder, loaded once."""

    def __init__(
        self, name: str, device: str = "auto", max_length: int = 256, batch_size: int = 32
    ):
        self.name = name
        self.requested_device = device
        self.max_length = max_length
        self.batch_size = batch_size
        self._model: CrossEncoder | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CrossEncoderReranker({self.name!r})"

    def load(self) -> CrossEncoder:
        """Load the model now (raising ModelError when it cannot be had)."""
        with self._lock:
            if self._model is None:
                from sentence_transformers import CrossEncoder

                location = resolve_model(self.name)
                offline = local_only(location, "cross-encoder")
                try:
                    self._model = CrossEncoder(
                        location,
                        device=pick_device(self.requested_device),
                        max_length=self.max_length,
                        local_files_only=offline,
                    )
                except Exception as e:
                    raise ModelError(
                        f"cannot load cross-encoder {self.name!r}: {_first_line(e)}"
                    ) from e
            return self._model

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """Score each (query, chunk) pair and return the hits re-sorted by that score."""
        if not hits:
            return []
        model = self.load()
        scores = model.predict(
            [(query, hit.chunk.text) for hit in hits],
            batch_size=self.batch_size,
            show_progress_bar=False,
        )
        rescored = [
            replace(hit, score=float(score), stage="rerank")
            for hit, score in zip(hits, scores, strict=True)
        ]
        return sorted(rescored, key=lambda hit: -hit.score)


@dataclass(frozen=True)
class RerankerChoice:
    """The reranker a search will use, or None with the one-line reason it is off."""

    reranker: Reranker | None
    reason: str | None = None


def choose_reranker(
    registered: str | None, configured: str, enabled: bool, device: str, max_length: int
) -> RerankerChoice:
    """The collection's own reranker first, else the configured one; off (with why) otherwise."""
    if not enabled:
        return RerankerChoice(None, "reranking is off: disabled by --no-rerank / rerank=false")
    name = registered or configured
    reranker = CrossEncoderReranker(name, device=device, max_length=max_length)
    try:
        reranker.load()
    except ModelError as e:
        return RerankerChoice(
            None,
            f"reranking is off: {e}; train one for this collection with `rag tune reranker` "
            "or set `reranker` to a cross-encoder folder",
        )
    return RerankerChoice(reranker)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
