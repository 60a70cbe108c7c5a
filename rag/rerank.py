"""Cross-encoder reranking of retrieved chunks.

reranker = CrossEncoderReranker("path/to/cross-encoder")
hits = reranker.rerank("query", hits)   # re-scored, best first

A tuned reranker may carry a `Fusion`: its ranking is then fused with the first stage's by weighted
reciprocal rank, with the weight `rag tune` picked on held-out queries.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from rag.errors import ModelError
from rag.models import local_only, pick_device, resolve_model
from rag.token_cache import TokenCache
from rag.types import Hit

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

logger = logging.getLogger(__name__)


class Reranker(Protocol):
    name: str

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]: ...


@dataclass(frozen=True)
class Fusion:
    """Weighted reciprocal-rank fusion of the reranker's order with the first stage's order:
    score = weight / (k + reranker rank) + (1 - weight) / (k + first-stage rank)."""

    weight: float
    k: int = 60

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ModelError(f"fusion weight must be within [0, 1], got {self.weight}")
        if self.k < 1:
            raise ModelError(f"fusion k must be at least 1, got {self.k}")

    def fuse(self, scores: Sequence[float]) -> list[float]:
        """Fused scores for candidates given in first-stage order with these reranker scores."""
        order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
        rerank_rank = {index: rank for rank, index in enumerate(order, start=1)}
        return [
            self.weight / (self.k + rerank_rank[i]) + (1.0 - self.weight) / (self.k + i + 1)
            for i in range(len(scores))
        ]


def rescore(hits: list[Hit], scores: Sequence[float], fusion: Fusion | None) -> list[Hit]:
    """`hits` with their reranker `scores` (fused with the incoming order when `fusion` is
    given), best first."""
    if fusion is not None:
        scores = fusion.fuse(scores)
    rescored = [
        replace(hit, score=float(score), stage="rerank")
        for hit, score in zip(hits, scores, strict=True)
    ]
    return sorted(rescored, key=lambda hit: -hit.score)


class CrossEncoderReranker:
    """Any sentence-transformers CrossEncoder, by hub id or local folder, loaded once."""

    def __init__(
        self,
        name: str,
        device: str = "auto",
        max_length: int = 256,
        batch_size: int = 32,
        fusion: Fusion | None = None,
    ):
        self.name = name
        self.requested_device = device
        self.max_length = max_length
        self.batch_size = batch_size
        self.fusion = fusion
        self._model: CrossEncoder | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CrossEncoderReranker({self.name!r})"

    @classmethod
    def from_model(
        cls,
        model: CrossEncoder,
        name: str,
        device: str = "auto",
        max_length: int = 256,
        fusion: Fusion | None = None,
    ) -> CrossEncoderReranker:
        """A reranker over a model already in memory (one just trained and saved at `name`)."""
        reranker = cls(name, device=device, max_length=max_length, fusion=fusion)
        reranker._model = model
        return reranker

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

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """The cross-encoder's raw score for each (query, text) pair."""
        if not texts:
            return []
        model = self.load()
        scores = model.predict(
            [(query, text) for text in texts],
            batch_size=self.batch_size,
            show_progress_bar=False,
        )
        return [float(score) for score in scores]

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """Score each (query, chunk) pair and return the hits re-sorted by that score (fused with
        the order they came in when the reranker carries a `Fusion`)."""
        return rescore(hits, self.score(query, [hit.chunk.text for hit in hits]), self.fusion)


# `reranker = "maxsim"` (or "maxsim:<bi-encoder>") picks the training-free MaxSimReranker.
MAXSIM = "maxsim"
CROSS_ENCODER = "cross-encoder"
MAXSIM_DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class MaxSimReranker:
    """Late interaction: each query token's best cosine with any passage token, summed
    (ColBERT's MaxSim), over a bi-encoder's token embeddings. Training-free on a plain
    sentence-transformers bi-encoder; `rag tune reranker --arch maxsim` fine-tunes one.

    reranker = MaxSimReranker("sentence-transformers/all-MiniLM-L6-v2", fusion=Fusion(0.5))

    With a `TokenCache` (a collection's), each passage is encoded once: reranking then encodes the
    query only, and a search that reranks 20 passages takes milliseconds instead of seconds.
    """

    def __init__(
        self,
        name: str,
        device: str = "auto",
        fusion: Fusion | None = None,
        cache: TokenCache | None = None,
        max_length: int = 256,
    ) -> None:
        self.name = name
        self.requested_device = device
        self.fusion = fusion
        self.cache = cache
        # Tokens read of a query or a passage (`rerank_max_length`); the rest is cut off.
        self.max_length = max_length
        self._model: Any = None
        # None: not tried yet; False: the query side runs on torch.
        self._queries: _OnnxQueries | Literal[False] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MaxSimReranker({self.name!r})"

    @classmethod
    def from_model(
        cls, model: Any, name: str, device: str = "auto", fusion: Fusion | None = None
    ) -> MaxSimReranker:
        """A reranker over a MultiVectorEncoder already in memory (one just trained and saved at
        `name`)."""
        reranker = cls(name, device=device, fusion=fusion)
        reranker._model = model
        return reranker

    def load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    self._model = multi_vector_model(
                        self.name, pick_device(self.requested_device), self.max_length
                    )
                except ModelError:
                    raise
                except Exception as e:
                    raise ModelError(f"cannot load {self.name!r}: {_first_line(e)}") from e
            return self._model

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        """Sum over query tokens of the best cosine with a passage token, per text."""
        if not texts:
            return []
        tokens = self.query_tokens(query)
        return [float((tokens @ passage.T).max(axis=1).sum()) for passage in self.passages(texts)]

    def query_tokens(self, query: str) -> np.ndarray:
        """The query's token embeddings (tokens, dim): on ONNX Runtime when the model allows it
        (on a CPU, a few milliseconds where torch takes tenths of a second on a busy machine)."""
        model = self.load()
        with self._lock:
            if self._queries is None:
                self._queries = _OnnxQueries.build(self.name, model, self.requested_device)
        if self._queries:
            return self._queries.encode(query)
        (question,) = model.encode_query([query], show_progress_bar=False)
        return _as_numpy(question)

    def passages(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Each text's token embeddings (tokens, dim): from the cache when it has them, else
        encoded now (and kept)."""
        found = self.cache.get(texts) if self.cache is not None else {}
        missing = [i for i in range(len(texts)) if i not in found]
        if missing:
            encoded = self.load().encode_document(
                [texts[i] for i in missing], show_progress_bar=False
            )
            fresh = {i: _as_numpy(array) for i, array in zip(missing, encoded, strict=True)}
            if self.cache is not None:
                self.cache.put({texts[i]: array for i, array in fresh.items()})
            found.update(fresh)
        return [found[i].astype(np.float32, copy=False) for i in range(len(texts))]

    def warm(self, texts: Sequence[str], batch: int = 64, progress: bool = False) -> int:
        """Encode and cache the texts not cached yet (so that first questions are fast too);
        returns how many were encoded. Without a cache there is nothing to keep."""
        if self.cache is None:
            return 0
        from tqdm import tqdm

        unique = list(dict.fromkeys(texts))
        todo: list[str] = []
        for start in range(0, len(unique), 512):
            part = unique[start : start + 512]
            cached = self.cache.get(part)
            todo += [text for i, text in enumerate(part) if i not in cached]
        with tqdm(
            total=len(todo), unit="passage", desc="reranker cache", disable=not progress
        ) as bar:
            for start in range(0, len(todo), batch):
                self.passages(todo[start : start + batch])
                bar.update(len(todo[start : start + batch]))
        return len(todo)

    def rerank(self, query: str, hits: list[Hit]) -> list[Hit]:
        """Re-sort hits by MaxSim (fused with their incoming order when given a `Fusion`)."""
        return rescore(hits, self.score(query, [hit.chunk.text for hit in hits]), self.fusion)


class _OnnxQueries:
    """A MaxSim model's query side on ONNX Runtime: the transformer exported once (float32, so
    scores match torch's), then normalised and masked here as the model's own modules would."""

    def __init__(self, folder: Path, skip: set[int], max_length: int) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.skip = skip
        self.max_length = max_length

    @classmethod
    def build(cls, name: str, model: Any, device: str) -> _OnnxQueries | Literal[False]:
        """The ONNX query encoder for `model`, or False where it cannot stand in for it: on a
        GPU, or for a model with other modules, prompts or token filters than a plain one."""
        modules = [type(module).__name__ for module in model]
        prompts = any(getattr(model, "prompts", {}).values())
        if (
            pick_device(device) != "cpu"
            or modules != ["Transformer", "MultiVectorMask", "Normalize"]
            or prompts
            or model[1].keep_only_token_ids is not None
        ):
            return False
        from rag.embedding import TOKENS, onnx_export

        mask = model[1]
        words = mask.skiplist_words if "query" in mask.skiplist_tasks else []
        skip = {int(model.tokenizer.convert_tokens_to_ids(word)) for word in words}
        try:
            folder = onnx_export(name, TOKENS)
            return cls(folder, skip, int(model.max_seq_length or 512))
        except (ModelError, OSError) as e:
            logger.info("the reranker's queries run on torch: %s", e)
            return False

    def encode(self, query: str) -> np.ndarray:
        encoded = self.tokenizer([query], truncation=True, max_length=self.max_length)
        feeds = {
            key: np.asarray(value, dtype=np.int64)
            for key, value in encoded.items()
            if key in self.inputs
        }
        hidden = self.session.run(None, feeds)[0][0]
        keep = [i for i, token in enumerate(encoded["input_ids"][0]) if token not in self.skip]
        tokens = hidden[keep]
        norms = np.linalg.norm(tokens, axis=1, keepdims=True)
        return (tokens / np.where(norms == 0, 1.0, norms)).astype(np.float32)


def _as_numpy(array: Any) -> np.ndarray:
    if hasattr(array, "detach"):
        array = array.detach().cpu().float().numpy()
    return np.asarray(array, dtype=np.float32)


def multi_vector_model(name: str, device: str, max_length: int = 256) -> Any:
    """A sentence-transformers MultiVectorEncoder: loaded as saved when `name` is one (a tuned
    MaxSim reranker), else built on a bi-encoder's transformer with no projection, so its token
    embeddings score as they are. [CLS] and [SEP] are left out of scoring on both sides: they
    match everything about equally."""
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    location = resolve_model(name)
    offline = local_only(location, "embedder")
    if saved_multi_vector(Path(location)):
        model = MultiVectorEncoder(location, device=device, local_files_only=offline)
        model.max_seq_length = max_length
        return model
    transformer = Transformer(
        location,
        max_seq_length=max_length,
        model_kwargs={"local_files_only": offline},
        processor_kwargs={"local_files_only": offline},
        config_kwargs={"local_files_only": offline},
    )
    mask = MultiVectorMask(skiplist_words=["[CLS]", "[SEP]"], skiplist_tasks=["query", "document"])
    return MultiVectorEncoder(
        modules=[transformer, mask, Normalize(module_input_name="token_embeddings")],
        device=device,
    )


@dataclass(frozen=True)
class RerankerChoice:
    """The reranker a search will use, or None with the one-line reason it is off."""

    reranker: Reranker | None
    reason: str | None = None


def choose_reranker(
    registered: str | None,
    configured: str,
    enabled: bool,
    device: str,
    max_length: int,
    fusion: Fusion | None = None,
    registered_arch: str = CROSS_ENCODER,
    cache: Path | None = None,
    cache_mb: float = 0.0,
) -> RerankerChoice:
    """The collection's own reranker first (with its fusion), else the configured one; off (with
    why) otherwise. `registered_arch` says what the registered model is: a cross-encoder, or a
    MaxSim (late-interaction) model trained by `rag tune reranker --arch maxsim`. A MaxSim
    reranker keeps passages' token embeddings in the SQLite file `cache` (up to `cache_mb`)."""
    if not enabled:
        return RerankerChoice(None, "reranking is off: disabled by --no-rerank / rerank=false")

    def token_cache(name: str) -> TokenCache | None:
        if cache is None or cache_mb <= 0:
            return None
        # A tuned model's folder name is unique to its training run; a hub id names its weights.
        key = Path(name).name if Path(name).is_dir() else name
        return TokenCache(cache, f"maxsim|{key}|{max_length}", limit_mb=cache_mb)

    reranker: CrossEncoderReranker | MaxSimReranker
    if registered:
        if registered_arch == MAXSIM:
            reranker = MaxSimReranker(
                registered,
                device=device,
                fusion=fusion,
                cache=token_cache(registered),
                max_length=max_length,
            )
        else:
            reranker = CrossEncoderReranker(
                registered, device=device, max_length=max_length, fusion=fusion
            )
    elif configured == MAXSIM or configured.startswith(MAXSIM + ":"):
        name = configured.partition(":")[2] or MAXSIM_DEFAULT_MODEL
        reranker = MaxSimReranker(
            name, device=device, cache=token_cache(name), max_length=max_length
        )
    elif (arch := folder_arch(configured)) == MAXSIM:
        # A model `rag tune reranker --arch maxsim` saved, named by its folder.
        reranker = MaxSimReranker(
            configured, device=device, cache=token_cache(configured), max_length=max_length
        )
    elif arch is None:
        return RerankerChoice(
            None,
            f"reranking is off: {configured} holds neither a cross-encoder (a sequence "
            "classification model) nor a MaxSim model; name a MaxSim bi-encoder as "
            f"`maxsim:{configured}`",
        )
    else:
        reranker = CrossEncoderReranker(configured, device=device, max_length=max_length)
    try:
        reranker.load()
    except ModelError as e:
        return RerankerChoice(
            None,
            f"reranking is off: {e}; train one for this collection with `rag tune reranker` "
            "or set `reranker` to a cross-encoder folder (or to `maxsim`, needing no training)",
        )
    return RerankerChoice(reranker)


def saved_multi_vector(folder: Path) -> bool:
    """Whether `folder` holds a saved MultiVectorEncoder (a MaxSim model `rag tune` trained)."""
    modules = folder / "modules.json"
    return modules.is_file() and "MultiVectorMask" in modules.read_text("utf-8", errors="replace")


def folder_arch(name: str) -> str | None:
    """What a local model folder holds, for a reranker: MAXSIM (a sentence-transformers model
    with a multi-vector module, as `rag tune reranker --arch maxsim` saves), CROSS_ENCODER (a
    sequence-classification model), or None (something else: a plain bi-encoder, whose weights
    a cross-encoder would read with a random head). A hub id, or a folder without a readable
    config, is taken as a cross-encoder; loading it says what is wrong."""
    folder = Path(name)
    if not folder.is_dir():
        return CROSS_ENCODER
    if saved_multi_vector(folder):
        return MAXSIM
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return CROSS_ENCODER
    architectures = (config.get("architectures") or []) if isinstance(config, dict) else []
    if not architectures or any("SequenceClassification" in str(a) for a in architectures):
        return CROSS_ENCODER
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
