"""The ingest job: files (or ready-made documents) in, a searchable collection out.

    report = IngestJob(settings).run_files("papers", [Path("docs/")], prune=True)

Per source: hash the raw bytes; skip it when the collection already has that content; otherwise
load, chunk, embed and *stage* it (committed, not yet visible). One final transaction publishes
everything, so a job killed at any point leaves the collection as it was, and a rerun adopts the
staged work instead of redoing it. Loading runs a few sources ahead on a thread while the model
embeds, and embedding batches cover many small files at once.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ingest import pdf, pdf_worker
from ingest.chunking import Chunker
from ingest.sources import Prepared, Source, file_sources, prepare
from rag.collection import Collection, check_name
from rag.embedding import Embedder, embedder_for
from rag.errors import CollectionError, DiskFullError, RagError
from rag.index import index_params
from rag.manifest import Chunking, EmbedderInfo
from rag.settings import DEFAULT_EMBEDDER, Settings
from rag.store import Store, StoredDocument
from rag.types import Document, shown

logger = logging.getLogger(__name__)

PREFETCH = 8
# progress(done_files, total_files): called at the start and as each file is done.
Progress = Callable[[int, int], None]
# The bar's words change at most this often while a long document is read.
_STATUS_EVERY_S = 0.25


@dataclass
class IngestReport:
    """What a job did; `failed` holds (source, one-line reason)."""

    collection: str
    added: int = 0
    replaced: int = 0
    unchanged: int = 0
    resumed: int = 0
    pruned: int = 0
    pages: int = 0
    chunks: int = 0
    seconds: float = 0.0
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ingested(self) -> int:
        return self.added + self.replaced + self.resumed

    def summary(self) -> str:
        rate = f", {self.pages / self.seconds:.1f} pages/s" if self.seconds and self.pages else ""
        return (
            f"{self.collection}: {self.ingested} ingested ({self.added} new, {self.replaced} "
            f"changed, {self.resumed} resumed), {self.unchanged} unchanged, {len(self.failed)} "
            f"failed, {self.pruned} pruned; {self.pages} pages, {self.chunks} chunks in "
            f"{self.seconds:.1f}s{rate}"
        )


class IngestJob:
    """Runs ingest into one collection. The embedder and chunker can be passed in (tests)."""

    def __init__(
        self, settings: Settings, embedder: Embedder | None = None, chunker: Chunker | None = None
    ) -> None:
        self.settings = settings
        self._embedder = embedder
        self._chunker = chunker

    def run_files(
        self,
        name: str,
        paths: Sequence[Path],
        prune: bool = False,
        progress: Progress | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> IngestReport:
        """Ingest files and folders into collection `name`, creating it when needed; each
        document keeps `metadata` (a file whose metadata changed is indexed again)."""
        check_name(name)
        s = self.settings
        sources, found = file_sources(
            paths,
            s.max_file_mb * 2**20,
            s.follow_links,
            s.ocr,
            metadata,
            s.pdf_text,
            s.pdf_stall_s or None,
        )
        notes = [f"skipped {shown(path)}: {why}" for path, why in found.skipped]
        for note in notes:
            tqdm.write(f"warning: {note}", file=sys.stderr)
        try:
            report = self.run(name, sources, prune, progress)
        finally:
            pdf_worker.stop()  # its memory back between jobs (a server runs many)
        report.warnings[:0] = notes
        return report

    def run(
        self,
        name: str,
        sources: list[Source],
        prune: bool = False,
        progress: Progress | None = None,
    ) -> IngestReport:
        """Ingest `sources`; with `prune`, remove documents whose files are gone (or, for
        records, documents not among `sources`)."""
        started = time.perf_counter()
        root = self.settings.index_dir
        created = False
        try:
            collection = Collection.open(root, name)
        except CollectionError:
            if Collection.exists(root, name):
                raise
            embedder = self._get_embedder(self.settings.embedding_model or DEFAULT_EMBEDDER)
            chunking = self._get_chunker(None, embedder).describe()
            info = EmbedderInfo(embedder.name, embedder.dimension)
            collection = Collection.create(root, name, info, chunking)
            created = True
        try:
            with collection.writer_lock():
                try:
                    report = self._run_locked(collection, sources, prune, progress)
                except DiskFullError as e:
                    # Staging commits document by document and publishing is one transaction,
                    # so whatever was staged before the disk filled is there for the rerun.
                    note = "the documents staged so far are kept and the rerun resumes"
                    raise DiskFullError(e.path, note) from e
                if created and report.ingested == 0:
                    # Nothing usable came in: do not leave an empty collection behind.
                    collection.close()
                    _remove_tree(collection.path)
                    report.seconds = time.perf_counter() - started
                    return report
                # Published: a full disk now only delays the search caches (logged, and noted).
                report.warnings.extend(collection.refresh_indexes(index_params(self.settings)))
        finally:
            collection.close()
        report.seconds = time.perf_counter() - started
        return report

    def _get_embedder(self, name: str) -> Embedder:
        if self._embedder is None:
            self._embedder = embedder_for(self.settings, name)
        return self._embedder

    def _get_chunker(self, chunking: Chunking | None, embedder: Embedder) -> Chunker:
        """The chunker a collection was made with, or (for a new one) the settings' one."""
        if self._chunker is None:
            size = chunking.chunk_tokens if chunking else self.settings.chunk_tokens
            overlap = chunking.chunk_overlap if chunking else self.settings.chunk_overlap
            context = chunking.context if chunking else self.settings.chunk_context
            tokenizer = getattr(embedder, "tokenizer", None)
            self._chunker = Chunker(size, overlap, tokenizer, context=context)
        return self._chunker

    def _run_locked(
        self,
        collection: Collection,
        sources: list[Source],
        prune: bool,
        progress: Progress | None = None,
    ) -> IngestReport:
        collection.check_embedder(self.settings.embedding_model)
        embedder = self._get_embedder(collection.embedder.name)
        collection.check_embedder(embedder.name)
        store = collection.store
        report = IngestReport(collection.name)

        todo: list[Source] = []
        adopt: set[str] = set()
        for source in sources:
            live = store.document(source.name)
            staged = store.document(source.name, state="staged")
            if live is not None and _same(live, source):
                report.unchanged += 1
            elif staged is not None and _same(staged, source):
                adopt.add(source.name)  # staged by a job that was killed: reuse its work
                report.resumed += 1
            else:
                todo.append(source)
        store.discard_staged(keep=adopt)
        if not todo:
            # Nothing to load or embed: publish adopted work without loading the model at all.
            if progress is not None:
                progress(len(sources), len(sources))
            return _publish(store, sources, prune, report)
        chunker = self._get_chunker(collection.manifest.chunking, embedder)

        bar = _Bar(
            hook=progress,
            total=len(sources),
            initial=report.unchanged + report.resumed,
            unit="file",
            desc=f"ingest {collection.name}",
            disable=not self.settings.progress,
            dynamic_ncols=True,
        )
        clock = time.perf_counter()
        status = _Status(bar)

        def embedding(done: int, total: int) -> None:
            # A long document takes a minute or more to embed: say how far it has got.
            status.say("embedding", f"embedding chunks: {done:,} of {total:,}")

        if self.settings.engine == "ray":
            from ingest.distributed import embed_on_ray

            embedded = embed_on_ray(todo, chunker, embedder, self.settings)
        else:
            embedded = self._embed_here(todo, chunker, embedder, embedding, status)
        with bar:
            for prepared, vectors in embedded:
                if prepared.error is not None or prepared.document is None:
                    report.failed.append((prepared.source.name, prepared.error or "no document"))
                    bar.write(
                        f"failed: {shown(prepared.source.name)}: {prepared.error}", file=sys.stderr
                    )
                    bar.update(1)
                    continue
                status.say("embedding", "", refresh=False)
                self._stage(prepared, prepared.document, vectors, collection, report, status, clock)

        return _publish(store, sources, prune, report)

    def _embed_here(
        self,
        todo: list[Source],
        chunker: Chunker,
        embedder: Embedder,
        progress: Progress | None = None,
        status: _Status | None = None,
    ) -> Iterator[tuple[Prepared, np.ndarray | None]]:
        """Each source prepared and embedded in this process, in order (failures with None);
        `progress(done, total)` follows the chunks of each long embedding call, and `status`
        hears of each PDF page read."""
        batch: list[Prepared] = []
        batch_chunks = 0
        least, limit = self.settings.embed_batch_size, 8 * self.settings.embed_batch_size
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="load") as pool:
            for prepared, more_ready in _prefetch(pool, todo, chunker, status):
                if prepared.error is not None:
                    yield prepared, None
                    continue
                batch.append(prepared)
                batch_chunks += len(prepared.chunks)
                # Embed as soon as a batch's worth is waiting and the loader has nothing more
                # ready: long embed calls would starve the loader (it runs at most PREFETCH
                # sources ahead) and a late first call leaves the model idle while it loads.
                if batch_chunks >= limit or (batch_chunks >= least and not more_ready):
                    yield from _embed_batch(batch, embedder, _step(batch, least, limit), progress)
                    batch, batch_chunks = [], 0
            yield from _embed_batch(batch, embedder, _step(batch, least, limit), progress)

    def _stage(
        self,
        item: Prepared,
        document: Document,
        vectors: np.ndarray | None,
        collection: Collection,
        report: IngestReport,
        status: _Status,
        clock: float,
    ) -> None:
        count = len(item.chunks)
        if vectors is None or len(vectors) != count:
            raise RagError(f"{item.source.name}: {count} chunks but no matching vectors")
        existed = collection.store.document(document.source) is not None
        source = item.source
        collection.store.stage(document, source.origin, item.chunks, vectors, source.metadata)
        report.replaced += existed
        report.added += not existed
        report.pages += len(document.pages)
        report.chunks += count
        if document.empty_pages:
            note = _empty_pages_note(document)
            report.warnings.append(note)
            status.bar.write(f"warning: {note}", file=sys.stderr)
        elapsed = max(time.perf_counter() - clock, 1e-9)
        status.say(
            "rate",
            f"{report.pages} pages ({report.pages / elapsed:.1f}/s), "
            f"{report.chunks} chunks ({report.chunks / elapsed:.1f}/s)",
            refresh=False,
        )
        status.bar.update(1)


def _same(stored: StoredDocument, source: Source) -> bool:
    """Whether `stored` is `source` as it is now: same content and same metadata."""
    return stored.id == source.content_id and stored.metadata == dict(source.metadata)


def _step(batch: list[Prepared], least: int, limit: int) -> int:
    """Chunks per embedding call: all in one, unless the batch holds a document longer than a
    whole batch limit (512 chunks by default, most of a minute on 2 cores): then calls of two
    batches, each followed by a progress count (they cost about 4 % more time,
    benchmarks/embed_calls.py)."""
    return 2 * least if any(len(item.chunks) > limit for item in batch) else 0


def _embed_batch(
    batch: list[Prepared],
    embedder: Embedder,
    step: int = 0,
    progress: Progress | None = None,
) -> Iterator[tuple[Prepared, np.ndarray]]:
    """Every chunk of `batch` embedded, in calls of `step` chunks (0: one call) with
    `progress(done, total)` after each when there is more than one; each item with its own
    vectors."""
    if not batch:
        return
    texts = [chunk.embedded_text for item in batch for chunk in item.chunks]
    if step <= 0 or len(texts) <= step:
        vectors = embedder.embed(texts)
    else:
        parts = []
        for start in range(0, len(texts), step):
            parts.append(embedder.embed(texts[start : start + step]))
            if progress is not None:
                progress(min(start + step, len(texts)), len(texts))
        vectors = np.concatenate(parts)
    offset = 0
    for item in batch:
        yield item, vectors[offset : offset + len(item.chunks)]
        offset += len(item.chunks)


class _Bar(tqdm):
    """A tqdm bar that also reports (done, total) to a callback, on the job's thread.

    It counts for itself: a disabled tqdm (no terminal, `progress=false`) stops counting.
    """

    def __init__(self, *args: Any, hook: Progress | None = None, **kwargs: Any) -> None:
        self._hook = hook
        self._done = int(kwargs.get("initial", 0))
        super().__init__(*args, **kwargs)
        if hook is not None:
            hook(self._done, int(kwargs["total"]))

    def update(self, n: float | None = 1) -> bool | None:
        result = super().update(n)
        self._done += int(n or 0)
        if self._hook is not None:
            self._hook(self._done, int(self.total or 0))
        return result


def _publish(
    store: Store, sources: list[Source], prune: bool, report: IngestReport
) -> IngestReport:
    """Publish the staged work; with `prune`, also remove documents whose sources are gone."""
    removed: list[str] = []
    if prune:
        wanted = {source.name for source in sources}
        for doc in store.documents():
            gone = (
                not Path(doc.source).exists() if doc.origin == "file" else doc.source not in wanted
            )
            if gone:
                removed.append(doc.source)
    store.publish(remove=removed)
    report.pruned = len(removed)
    return report


class _Status:
    """The words after the ingest bar's file count: the pages and chunks done per second, the
    PDF being read (page by page) and the embedding call under way. Set from the job's thread
    and the loader's."""

    def __init__(self, bar: tqdm) -> None:
        self.bar = bar
        self._parts = {"rate": "", "reading": "", "embedding": ""}
        self._lock = threading.Lock()
        self._shown = 0.0

    def say(self, part: str, text: str, refresh: bool = True) -> None:
        with self._lock:
            self._parts[part] = text
            words = ", ".join(text for text in self._parts.values() if text)
            self.bar.set_postfix_str(words, refresh=refresh)
            if refresh:
                self._shown = time.monotonic()

    def reading(self, source: Source, step: str, done: int, total: int) -> None:
        """A page of `source` read (ingest.pdf.listening); shown at most every _STATUS_EVERY_S."""
        text = f"reading {shown(Path(source.name).name)}: {pdf.STEPS[step]} {done:,} of {total:,}"
        self.say("reading", text, refresh=time.monotonic() - self._shown >= _STATUS_EVERY_S)


def _prepare(source: Source, chunker: Chunker, status: _Status | None) -> Prepared:
    """`prepare`, with the PDF's pages told to `status` as they are read."""
    if status is None:
        return prepare(source, chunker)

    def page(step: str, done: int, total: int) -> None:
        status.reading(source, step, done, total)

    try:
        with pdf.listening(page):
            return prepare(source, chunker)
    finally:
        status.say("reading", "", refresh=False)


def _prefetch(
    pool: ThreadPoolExecutor,
    sources: list[Source],
    chunker: Chunker,
    status: _Status | None = None,
) -> Iterator[tuple[Prepared, bool]]:
    """Load and chunk up to PREFETCH sources ahead of the consumer, in order; each comes with
    whether the next one is ready already."""
    pending: deque[Future[Prepared]] = deque()
    queue = iter(sources)
    for source in queue:
        pending.append(pool.submit(_prepare, source, chunker, status))
        if len(pending) >= PREFETCH:
            break
    while pending:
        prepared = pending.popleft().result()
        for source in queue:
            pending.append(pool.submit(_prepare, source, chunker, status))
            break
        yield prepared, bool(pending) and pending[0].done()


def _empty_pages_note(document: Document) -> str:
    pages = ", ".join(str(n) for n in document.empty_pages[:10])
    more = f" and {len(document.empty_pages) - 10} more" if len(document.empty_pages) > 10 else ""
    return f"{document.source}: pages {pages}{more} have no text layer (image-only); not indexed"


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
