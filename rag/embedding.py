"""Bi-encoder embedders: text in, L2-normalised float32 vectors out.

embedder = SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2", backend="int8")
vectors = embedder.embed(["a passage", "another"])   # shape (2, 384)

Backends (`EMBED_BACKENDS`): "torch" runs sentence-transformers as it is; "onnx" and "int8" run
the same model through ONNX Runtime on the CPU, from a copy exported (for "int8", also quantised)
once from the local weights and cached under ~/.cache/rag/onnx (nothing is downloaded for it;
$RAG_CACHE_DIR moves the cache).
On a CUDA GPU every backend embeds with torch: the GPU is faster than any of them.

sentence-transformers' own ONNX backend goes through optimum, whose releases pin transformers
below 5 (this project needs 5), so the export is done here with torch.onnx and ONNX Runtime's
own transformer optimiser and quantiser. int8 vectors stay within cosine 0.986 of torch's on
SciFact; docs/ingest-throughput.md has the speed and retrieval quality of each backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from rag.errors import ModelError
from rag.models import (
    cache_root,
    canonical_name,
    local_only,
    pick_device,
    resolve_model,
    usable_cores,
)
from rag.types import sha256_hex

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedTokenizerBase

    from rag.settings import Settings

logger = logging.getLogger(__name__)

# Name -> what it is. The CLI's and settings' choices come from these keys.
EMBED_BACKENDS: dict[str, str] = {
    "torch": "sentence-transformers on PyTorch, float32 (CPU or CUDA)",
    "onnx": "ONNX Runtime on the CPU, float32, fused attention",
    "int8": "ONNX Runtime on the CPU, int8 weights (dynamic quantisation)",
}
DEFAULT_BACKEND = "int8"
# Bump when the export below changes, so that cached exports are rebuilt.
EXPORT_RECIPE = "1"
# The backend name of a token-embedding export (a MaxSim reranker's query side, rag/rerank.py).
TOKENS = "tokens"
# Files that decide what a model computes; other files in a model folder do not key the cache.
_MODEL_FILE_SUFFIXES = frozenset({".json", ".txt", ".model", ".safetensors", ".bin"})
_FOREIGN_EXPORT_DIRS = frozenset({"onnx", "openvino"})
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_META_FILE = "rag-export.json"
# ONNX Runtime calls run side by side when embedding many texts, at most (one per core).
MAX_ENCODE_WORKERS = 8


@runtime_checkable
class Embedder(Protocol):
    """What the index and the ingest job need from an embedder."""

    name: str

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: list[str]) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """A sentence-transformers bi-encoder, loaded once on first use.

    With backend "onnx" or "int8" it runs on the CPU through ONNX Runtime; when `device` is
    "cuda", or "auto" with a CUDA GPU present, it runs on the GPU with torch instead.
    """

    def __init__(
        self,
        name: str,
        device: str = "auto",
        batch_size: int = 64,
        backend: str = DEFAULT_BACKEND,
        cache_dir: Path | None = None,
    ) -> None:
        if batch_size < 1:
            raise ModelError(f"batch_size must be at least 1, got {batch_size}")
        if backend not in EMBED_BACKENDS:
            valid = ", ".join(EMBED_BACKENDS)
            raise ModelError(f"unknown embedding backend {backend!r} (valid: {valid})")
        self.name = canonical_name(name)
        self.requested_device = device
        self.batch_size = batch_size
        self.backend = backend
        self.cache_dir = cache_dir
        self._model: SentenceTransformer | None = None
        self._onnx: _OnnxModel | None = None
        self._use_onnx: bool | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder({self.name!r}, backend={self.backend!r})"

    @classmethod
    def from_model(
        cls,
        model: SentenceTransformer,
        name: str,
        device: str = "auto",
        batch_size: int = 64,
        backend: str = DEFAULT_BACKEND,
    ) -> SentenceTransformerEmbedder:
        """An embedder over a model already in memory (one just trained and saved at `name`)."""
        embedder = cls(name, device=device, batch_size=batch_size, backend=backend)
        embedder._model = model
        return embedder

    @property
    def model(self) -> SentenceTransformer:
        """The torch model (loaded on first use, also for the ONNX backends that need it)."""
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

    def _onnx_model(self) -> _OnnxModel | None:
        """The ONNX Runtime model, or None when this embedder runs on torch."""
        with self._lock:
            if self._use_onnx is None:
                # Only "auto" and "cuda" ask torch about CUDA; an explicit "cpu" never does.
                self._use_onnx = self.backend != "torch" and (
                    self.requested_device == "cpu" or pick_device(self.requested_device) == "cpu"
                )
                if self.backend != "torch" and not self._use_onnx:
                    logger.info("a CUDA GPU is present: embedding with torch, not %s", self.backend)
            if self._use_onnx and self._onnx is None:
                folder = onnx_export(self.name, self.backend, self.cache_dir)
                self._onnx = _OnnxModel(folder)
                logger.info("loaded embedder %s (%s) from %s", self.name, self.backend, folder)
            return self._onnx

    @property
    def dimension(self) -> int:
        onnx = self._onnx_model()
        if onnx is not None:
            return onnx.dimension
        dim = self.model.get_embedding_dimension()
        if dim is None:
            raise ModelError(f"embedder {self.name!r} does not report its dimension")
        return int(dim)

    @property
    def max_seq_length(self) -> int:
        onnx = self._onnx_model()
        if onnx is not None:
            return onnx.max_seq_length
        return int(self.model.max_seq_length or 0)

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        onnx = self._onnx_model()
        if onnx is not None:
            return onnx.tokenizer
        return self.model.tokenizer

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts as unit vectors (so inner product is cosine similarity)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        onnx = self._onnx_model()
        if onnx is not None:
            return onnx.encode(texts)
        # sentence-transformers sorts each call's texts by length, so padding stays small.
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def embedder_for(settings: Settings, name: str) -> SentenceTransformerEmbedder:
    """The bi-encoder `name`, run as `settings` say (device, batch size, CPU backend): the one
    place an embedder is built from settings."""
    return SentenceTransformerEmbedder(
        name,
        device=settings.device,
        batch_size=settings.embed_batch_size,
        backend=settings.embed_backend,
    )


class _OnnxModel:
    """An exported sentence-transformers model (pooling and normalisation included) on ONNX
    Runtime."""

    def __init__(self, folder: Path) -> None:
        import onnxruntime as ort
        from transformers import AutoTokenizer

        meta = json.loads((folder / _META_FILE).read_text(encoding="utf-8"))
        self.dimension = int(meta["dimension"])
        self.max_seq_length = int(meta["max_seq_length"])
        self.lowercase = bool(meta.get("do_lower_case", False))
        self.inputs: list[str] = list(meta["inputs"])
        self.tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(str(folder))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.workers = min(usable_cores(), MAX_ENCODE_WORKERS)
        if self.workers > 1:
            # One thread per run, and texts spread over `workers` runs at once (`encode`): a
            # text of a few hundred tokens is too small to split well over cores.
            options.intra_op_num_threads = 1
        # Idle ORT threads otherwise spin for a while, taking the core from the PDF parser.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors for `texts`, in order, one text per call, `workers` calls at once.

        int8 activations are quantised with one scale per call, so a batch would make a text's
        vector depend on its neighbours; alone, each text gets the same vector every time. On a
        CPU that costs nothing: with no padding, one text per call measured as fast as batches
        of 64 (SciFact abstracts and queries, docs/ingest-throughput.md). Single-threaded calls
        side by side (ONNX Runtime runs a session from several threads) beat one call spread
        over the cores (docs/ingest-throughput.md, "Texts side by side": 5 to 16 % fewer CPU
        seconds for the ingest job).
        """
        if self.lowercase:
            texts = [text.lower() for text in texts]
        encoded = self.tokenizer(
            texts, truncation="longest_first", max_length=self.max_seq_length, padding=False
        )
        ids = encoded["input_ids"]
        types = encoded.get("token_type_ids") or [[0] * len(row) for row in ids]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        workers = min(self.workers, len(texts))
        if workers <= 1:
            self._encode_rows(ids, types, out, range(len(texts)))
        else:
            pool = self._executor()
            parts = [range(start, len(texts), workers) for start in range(workers)]
            for done in [pool.submit(self._encode_rows, ids, types, out, rows) for rows in parts]:
                done.result()
        # The graph normalises already; this only guards against an exported model that doesn't.
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.where(norms == 0, 1.0, norms), dtype=np.float32)

    def _encode_rows(
        self, ids: list[list[int]], types: list[list[int]], out: np.ndarray, rows: range
    ) -> None:
        for row in rows:
            feeds = {
                "input_ids": np.asarray([ids[row]], dtype=np.int64),
                "attention_mask": np.ones((1, len(ids[row])), dtype=np.int64),
                "token_type_ids": np.asarray([types[row]], dtype=np.int64),
            }
            out[row] = self.session.run(None, {name: feeds[name] for name in self.inputs})[0][0]

    def _executor(self) -> ThreadPoolExecutor:
        """The worker threads, started on first use (again in a forked child, which has none)."""
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="embed")
                self._pool_pid = os.getpid()
            return self._pool


def default_cache_dir() -> Path:
    """Where exported models are kept: ~/.cache/rag/onnx, or as `cache_root` says."""
    return cache_root() / "onnx"


def onnx_export(name: str, backend: str, cache_dir: Path | None = None) -> Path:
    """The folder of `name` exported for `backend` ("onnx" or "int8"), built once if missing.

    The folder's name carries a hash of the model's files, so changed weights get a new export.
    """
    if backend not in ("onnx", "int8", TOKENS):
        raise ModelError(f"no ONNX export for backend {backend!r} (valid: onnx, int8, {TOKENS})")
    for module in ("onnxruntime", "onnx"):
        if importlib.util.find_spec(module) is None:
            raise ModelError(f"embedding backend {backend!r} needs the {module!r} package")
    source = _model_folder(name)
    root = cache_dir or default_cache_dir()
    fingerprint = _fingerprint(source, backend)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", canonical_name(name)).strip("_")[-60:]
    target = root / f"{slug}-{backend}-{fingerprint[:16]}"
    if (target / _META_FILE).is_file():
        return target
    try:
        root.mkdir(parents=True, exist_ok=True)
        prune_exports(root)
        staging = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
    except OSError as e:
        raise ModelError(
            f"cannot write the ONNX cache {root}: {e.strerror or e}; use backend 'torch'"
        ) from e
    logger.info("exporting %s to ONNX (%s), once, into %s", name, backend, target)
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; the cache is shared like ~/.cache
        if backend == TOKENS:
            _export_tokens(source, staging)
        else:
            _export(source, staging, quantize=backend == "int8")
        # A rename is atomic: readers see a whole export or none. A racing process may win.
        with contextlib.suppress(OSError):
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not (target / _META_FILE).is_file():
        raise ModelError(f"exporting {name!r} to ONNX left no model in {target}")
    return target


def prune_exports(root: Path, older_than_s: float = 3600.0) -> None:
    """Staging folders of exports killed midway (a live export takes well under a minute), and
    exports of model folders that are gone (a tuned model deleted with its collection, a test's
    temporary one), which would otherwise stay in the cache, about 90 MB each, for good."""
    now = time.time()
    for stale in root.glob(".export-*"):
        with contextlib.suppress(OSError):
            if now - stale.stat().st_mtime > older_than_s:
                shutil.rmtree(stale, ignore_errors=True)
    for meta in root.glob(f"*/{_META_FILE}"):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            source = json.loads(meta.read_text(encoding="utf-8")).get("source")
            if isinstance(source, str) and Path(source).is_absolute() and not Path(source).exists():
                shutil.rmtree(meta.parent, ignore_errors=True)


def _model_folder(name: str) -> Path:
    """A local folder holding the model: given, packaged, or the hub cache's (downloading only
    when the hub is reachable, as sentence-transformers would)."""
    location = resolve_model(name)
    if Path(location).is_dir():
        return Path(location)
    offline = local_only(location, "embedder")
    from huggingface_hub import snapshot_download

    try:
        folder = snapshot_download(
            location,
            local_files_only=offline,
            allow_patterns=[f"*{suffix}" for suffix in sorted(_MODEL_FILE_SUFFIXES)],
            ignore_patterns=[f"{d}/*" for d in sorted(_FOREIGN_EXPORT_DIRS)],
        )
    except Exception as e:
        raise ModelError(f"cannot load embedder {name!r}: {e}") from e
    return Path(folder)


def _fingerprint(folder: Path, backend: str) -> str:
    """SHA-256 of the files that decide what the model computes, and of the export recipe."""
    import onnxruntime

    digest = hashlib.sha256(
        sha256_hex(EXPORT_RECIPE, backend, onnxruntime.__version__).encode("ascii")
    )
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if (
            path.suffix not in _MODEL_FILE_SUFFIXES
            or relative.parts[0] in _FOREIGN_EXPORT_DIRS
            or not path.is_file()
        ):
            continue
        digest.update(str(relative).encode("utf-8") + b"\x00")
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def _export(source: Path, out: Path, quantize: bool) -> None:
    """Export the whole sentence-transformers pipeline (encoder, pooling, normalisation)."""
    import torch
    from sentence_transformers import SentenceTransformer

    try:
        # Eager attention traces to the pattern ONNX Runtime fuses into one Attention op.
        model = SentenceTransformer(
            str(source),
            device="cpu",
            local_files_only=True,
            model_kwargs={"attn_implementation": "eager"},
        ).eval()
    except Exception as e:
        raise ModelError(f"cannot load embedder from {source} for export: {e}") from e
    tokenizer = model.tokenizer
    sample = tokenizer(["an example sentence", "two"], padding=True, return_tensors="pt")
    inputs = [key for key in _MODEL_INPUTS if key in sample]
    dimension = model.get_embedding_dimension()
    if dimension is None:
        raise ModelError(f"embedder at {source} does not report its dimension")

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(inputs, tensors, strict=True)))["sentence_embedding"]

    raw = out / "raw.onnx"
    axes: dict[str, dict[int, str]] = {key: {0: "batch", 1: "tokens"} for key in inputs}
    axes["sentence_embedding"] = {0: "batch"}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches
            torch.onnx.export(
                Pipeline().eval(),
                tuple(sample[key] for key in inputs),
                str(raw),
                dynamo=False,
                opset_version=17,
                input_names=inputs,
                output_names=["sentence_embedding"],
                dynamic_axes=axes,
            )
    except Exception as e:
        raise ModelError(f"cannot export embedder at {source} to ONNX: {e}") from e
    config = getattr(model[0], "auto_model", None)
    config = getattr(config, "config", None)
    graph = fuse_bert_graph(raw, out / "fused.onnx", config) or raw
    final = out / "model.onnx"
    if quantize:
        quantize_int8(graph, final)
    else:
        graph.rename(final)
    for leftover in (raw, out / "fused.onnx"):
        leftover.unlink(missing_ok=True)
    tokenizer.save_pretrained(str(out))
    meta: dict[str, Any] = {
        "source": str(source),
        "recipe": EXPORT_RECIPE,
        "quantized": quantize,
        "dimension": int(dimension),
        "max_seq_length": int(model.max_seq_length or tokenizer.model_max_length),
        "do_lower_case": bool(getattr(model[0], "do_lower_case", False)),
        "inputs": inputs,
    }
    # Written last: its presence marks a complete export.
    (out / _META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def _export_tokens(source: Path, out: Path) -> None:
    """Export the transformer alone, float32, with its last hidden state (one vector a token) as
    the output: what a MaxSim reranker scores, normalised and masked by the caller."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        model = AutoModel.from_pretrained(
            str(source), local_files_only=True, attn_implementation="eager"
        ).eval()
    except Exception as e:
        raise ModelError(f"cannot load the transformer in {source} for export: {e}") from e
    sample = tokenizer(["an example sentence", "two"], padding=True, return_tensors="pt")
    inputs = [key for key in _MODEL_INPUTS if key in sample]

    class Tokens(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(inputs, tensors, strict=True))).last_hidden_state

    raw = out / "raw.onnx"
    axes: dict[str, dict[int, str]] = {key: {0: "batch", 1: "tokens"} for key in inputs}
    axes["token_embeddings"] = {0: "batch", 1: "tokens"}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Tokens().eval(),
                tuple(sample[key] for key in inputs),
                str(raw),
                dynamo=False,
                opset_version=17,
                input_names=inputs,
                output_names=["token_embeddings"],
                dynamic_axes=axes,
            )
    except Exception as e:
        raise ModelError(f"cannot export the transformer in {source} to ONNX: {e}") from e
    graph = fuse_bert_graph(raw, out / "fused.onnx", model.config) or raw
    graph.rename(out / "model.onnx")
    raw.unlink(missing_ok=True)
    tokenizer.save_pretrained(str(out))
    meta = {"source": str(source), "recipe": EXPORT_RECIPE, "quantized": False, "inputs": inputs}
    (out / _META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def fuse_bert_graph(raw: Path, out: Path, config: object) -> Path | None:
    """Fuse attention, layer norms and GELU with ONNX Runtime's transformer optimiser (BERT
    family only); None when the model is of another family."""
    if getattr(config, "model_type", None) != "bert":
        return None
    from onnxruntime.transformers import optimizer

    fused = optimizer.optimize_model(
        str(raw),
        model_type="bert",
        num_heads=int(getattr(config, "num_attention_heads", 0)),
        hidden_size=int(getattr(config, "hidden_size", 0)),
        opt_level=1,
    )
    fused.save_model_to_file(str(out))
    return out


def quantize_int8(graph: Path, out: Path) -> None:
    """int8 weights, one scale per output channel; activations are quantised per batch."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    quiet = _DropMessages("Please consider to run pre-processing")
    root.addFilter(quiet)  # the quantiser logs this advice through the root logger
    try:
        quantize_dynamic(
            str(graph),
            str(out),
            weight_type=QuantType.QInt8,
            per_channel=True,
            # The fused ops carry no type information for ONNX's shape inference.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.removeFilter(quiet)


class _DropMessages(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


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
