"""The ingest job's load-chunk-embed stage on a Ray cluster (`rag ingest --engine ray`).

A Ray Data pipeline: the sources, as rows; `prepare` (load and chunk) as CPU tasks spread over
the cluster; embedding in a pool of actors that each hold the model once (one GPU each when the
cluster has GPUs). The embedded documents stream back to this process in the order given, and
the ingest job stages them exactly as it stages its own (`IngestJob._run_locked`): each
document is a shard committed on arrival, and one transaction publishes them all. So the
collection is the same as a single-machine job's (same chunk ids, texts and keys; vectors from
the same model), a killed job leaves the collection as it was, and a rerun adopts what was
staged. Ray is imported only when this runs.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np

from ingest.chunking import Chunker
from ingest.sources import Prepared, Source, prepare
from rag.distributed import default_workers, import_ray, ray_session
from rag.embedding import Embedder, SentenceTransformerEmbedder
from rag.errors import RagError
from rag.settings import Settings

logger = logging.getLogger(__name__)

# Memory a parse task asks Ray for (bytes).
PARSE_MEMORY = 512 * 2**20
# Documents per embedder call (an embedding batch covers all their chunks).
DOCUMENTS_PER_BATCH = 16


def embed_on_ray(
    sources: list[Source], chunker: Chunker, embedder: Embedder, settings: Settings
) -> Iterator[tuple[Prepared, np.ndarray | None]]:
    """Each source prepared and embedded on the cluster, yielded in the order of `sources`
    with its vectors (None for a source that failed to load, with its error)."""
    with ray_session(settings.ray_address) as resources:
        ray = import_ray()
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the job's own bar counts the documents
        if not logging.getLogger().isEnabledFor(logging.INFO):
            # Ray Data narrates each plan; without --verbose only its errors are shown.
            logging.getLogger("ray.data").setLevel(logging.ERROR)
        context.execution_options.preserve_order = True  # staged in order: the same keys
        gpus = resources.get("GPU", 0) >= 1 and settings.device != "cpu"
        workers = _embed_workers(settings, resources, gpus)
        factory = _embedder_factory(embedder, settings, gpus)
        rows = [{"source": pickle.dumps(source)} for source in sources]
        dataset = (
            ray.data.from_items(rows, override_num_blocks=min(len(rows), 256))
            # Parsing runs as tasks of its own: asking for memory (a large PDF needs some) also
            # keeps Ray Data from fusing them into the embedder actors, which would serialise
            # parsing behind embedding on each actor.
            .map(_prepare_row, fn_args=(chunker,), num_cpus=1, memory=PARSE_MEMORY)
            .map_batches(
                _EmbedWorker,
                fn_constructor_args=(factory,),
                batch_size=DOCUMENTS_PER_BATCH,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=1,
                num_gpus=1 if gpus else 0,
            )
        )
        try:
            for row in dataset.iter_rows():
                prepared: Prepared = pickle.loads(row["prepared"])
                if prepared.error is not None:
                    yield prepared, None
                    continue
                vectors = np.frombuffer(row["vectors"], dtype=np.float32)
                yield prepared, vectors.reshape(len(prepared.chunks), -1)
        except ray.exceptions.RayError as e:
            raise RagError(f"the ingest job failed on the Ray cluster: {_last_line(e)}") from e


def _embed_workers(settings: Settings, resources: dict[str, float], gpus: bool) -> int:
    """Embedder actors: as set, else one per GPU, else one per two CPUs. Without GPUs they
    always leave a CPU to the parse tasks: actors holding every CPU would wait forever for
    documents that nobody can parse."""
    wanted = settings.ray_workers or default_workers(resources, per_worker_cpus=2)
    if gpus:
        return min(wanted, int(resources["GPU"]))
    cpus = int(resources.get("CPU", 0))
    if cpus < 2:
        raise RagError(
            f"ingest on Ray needs at least 2 CPUs in the cluster (or a GPU); it has {cpus}"
        )
    if wanted > cpus - 1:
        logger.warning(
            "using %d embedder actors, not %d: the cluster has %d CPUs and parsing needs one",
            cpus - 1,
            wanted,
            cpus,
        )
    return min(wanted, cpus - 1)


def _embedder_factory(embedder: Embedder, settings: Settings, gpus: bool) -> bytes:
    """How a worker gets its embedder: the same model built afresh on the worker's device, or
    (for embedders that are not sentence-transformers models) a copy of this one."""
    if isinstance(embedder, SentenceTransformerEmbedder):
        spec = {
            "name": embedder.name,
            "device": "cuda" if gpus else "cpu",
            "batch_size": embedder.batch_size,
            "backend": embedder.backend,
        }
        return pickle.dumps(("build", spec))
    return pickle.dumps(("copy", embedder))


def _prepare_row(row: dict[str, Any], chunker: Chunker) -> dict[str, Any]:
    return {"prepared": pickle.dumps(prepare(pickle.loads(row["source"]), chunker))}


class _EmbedWorker:
    """A Ray actor holding one embedder: a batch of prepared documents in, their vectors out."""

    def __init__(self, factory: bytes) -> None:
        how, what = pickle.loads(factory)
        self.embedder: Embedder = SentenceTransformerEmbedder(**what) if how == "build" else what

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[bytes]]:
        items: list[Prepared] = [pickle.loads(blob) for blob in batch["prepared"]]
        texts = [
            chunk.embedded_text for item in items if item.error is None for chunk in item.chunks
        ]
        vectors = self.embedder.embed(texts) if texts else None
        out: list[bytes] = []
        offset = 0
        for item in items:
            if item.error is not None or vectors is None:
                out.append(b"")
                continue
            count = len(item.chunks)
            out.append(np.ascontiguousarray(vectors[offset : offset + count], np.float32).tobytes())
            offset += count
        return {"prepared": list(batch["prepared"]), "vectors": out}


def _last_line(error: BaseException) -> str:
    """The last line of a Ray error: Ray puts the remote traceback first and the failing
    exception, the part a person can act on, last."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
