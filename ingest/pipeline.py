"""The ingest job: files (or ready-made documents) in, a searchable collection out.

    report = IngestJob(settings).run_files("papers", [Path("docs/")], prune=True)

Per source: hash the raw bytes; skip it when the collection already has that content; otherwise
load, chunk, embed and *stage* it (committed, not yet visible). One final transaction publishes
everything, so a job killed at any point leaves the collection as it was, and a rerun adopts the
staged work instead of redoing it. Loading runs a few sources ahead on a thread while the model
embeds, and embedding batches cover many small files at once.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import stat
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ingest.chunking import Chunker
from ingest.loaders import SUPPORTED_SUFFIXES, load_document, sha256_file
from rag.collection import Collection, EmbedderInfo, check_name
from rag.embedding import Embedder, SentenceTransformerEmbedder
from rag.errors import CollectionError, DiskFullError, LoadError, RagError
from rag.retrieval import index_params
from rag.settings import DEFAULT_EMBEDDER, Settings
from rag.store import Store
from rag.types import Chunk, Document, shown

logger = logging.getLogger(__name__)

PREFETCH = 8
# progress(done_files, total_files): called at the start and as each file is done.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Source:
    """One thing to ingest: a file, or a document built elsewhere (a BEIR record, say)."""

    name: str
    origin: str
    content_id: str
    load: Callable[[], Document]


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


@dataclass
class Discovery:
    """What a walk over the given paths found: files to ingest, files or folders that cannot be
    read (each a failure with its reason), and links skipped on purpose (with why)."""

    files: list[Path] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def discover(paths: Sequence[Path], follow_links: bool = False) -> Discovery:
    """The files to ingest: files as given, folders searched for supported types.

    Folders are walked without recursion (any depth), each folder once (no symlink loops).
    Inside a folder, a link that leads outside it is skipped unless `follow_links`: ingesting
    `docs/` must not index `docs/passwd.txt -> /etc/passwd`. Files named directly are taken as
    given, links included.
    """
    if not paths:
        raise RagError("no paths given")
    found = Discovery()
    for path in paths:
        if not path.exists():
            raise RagError(f"path not found: {shown(str(path))}")
        if path.is_dir():
            before = len(found.files) + len(found.unreadable)
            _walk(path, follow_links, found)
            if len(found.files) + len(found.unreadable) == before:
                kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
                raise RagError(
                    f"no supported documents in folder {shown(str(path))} (looked for {kinds})"
                )
        else:
            found.files.append(path)
    # Sources are absolute (the same file from two working directories is one document) but keep
    # the user's symlinks; the same file named twice (say, directly and through its folder) once.
    unique: dict[Path, Path] = {}
    for file in found.files:
        unique.setdefault(file.resolve(), Path(os.path.abspath(file)))
    found.files = list(unique.values())
    return found


def _walk(root: Path, follow_links: bool, found: Discovery) -> None:
    """Add the supported files under `root` to `found`, in path order; an explicit stack, not
    recursion, so a folder 2,000 levels deep is no RecursionError."""
    inside = root.resolve()
    seen = {inside}  # real paths of the linked folders entered: a link loop is walked once
    stack = [root]
    files: list[Path] = []
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as entries:
                listing = sorted(entries, key=lambda entry: entry.name)
        except OSError as e:
            found.unreadable.append((str(folder), f"cannot read folder: {_reason(e)}"))
            continue
        for entry in listing:
            path = Path(entry.path)
            try:
                link = entry.is_symlink()
                if link:
                    target = path.resolve(strict=True)
                    if not follow_links and not target.is_relative_to(inside):
                        found.skipped.append(
                            (str(path), f"a link to {target}, outside {root} (--follow-links)")
                        )
                        continue
                if entry.is_dir():
                    # Only a link can lead back up; resolving every folder would cost O(depth).
                    if not link:
                        stack.append(path)
                    elif target not in seen:
                        seen.add(target)
                        stack.append(path)
                elif path.suffix.lower() in SUPPORTED_SUFFIXES:
                    files.append(path)
            except (OSError, RuntimeError) as e:  # a broken link, a loop, a name too long
                if path.suffix.lower() in SUPPORTED_SUFFIXES or entry.is_symlink():
                    found.skipped.append((str(path), f"a link that leads nowhere ({_reason(e)})"))
    found.files.extend(sorted(files))


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower() if error.strerror[:1].isupper() else error.strerror
    return str(error) or type(error).__name__


def file_sources(
    paths: Sequence[Path], max_bytes: float = float("inf"), follow_links: bool = False
) -> tuple[list[Source], Discovery]:
    """Sources for files, recorded by absolute path, hashed up front (cheap next to parsing).

    A file that cannot be ingested (unreadable, not a regular file, over `max_bytes`) is still a
    source: one that fails with its reason, so the job reports it and goes on with the rest.
    """
    found = discover(paths, follow_links)
    sources = [_refused_source(name, reason) for name, reason in found.unreadable]
    for path in found.files:
        reason = _refusal(path, max_bytes)
        if reason is None:
            try:
                content_id = sha256_file(path)
            except OSError as e:
                reason = f"cannot read file: {_reason(e)}"
        if reason is not None:
            sources.append(_refused_source(str(path), reason))
        else:
            sources.append(
                Source(str(path), "file", content_id, functools.partial(load_document, path))
            )
    return sources, found


def _refusal(path: Path, max_bytes: float) -> str | None:
    """Why `path` is not read at all, or None. A FIFO or a device would block or never end."""
    try:
        info = path.stat()
    except OSError as e:
        return f"cannot read file: {_reason(e)}"
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or special file"
        return f"not a regular file ({kind}); only regular files are read"
    if info.st_size > max_bytes:
        return (
            f"{info.st_size / 2**20:.1f} MB is over the {max_bytes / 2**20:g} MB limit per file "
            "(setting max_file_mb)"
        )
    return None


def _refused_source(name: str, reason: str) -> Source:
    return Source(name, "file", "", functools.partial(_refuse, name, reason))


def _refuse(name: str, reason: str) -> Document:
    raise LoadError(name, reason)


def document_sources(documents: Iterable[Document]) -> list[Source]:
    """Sources for documents that are already text (records of a dataset)."""
    return [Source(d.source, "record", d.id, functools.partial(_identity, d)) for d in documents]


def _identity(document: Document) -> Document:
    return document


@dataclass
class Prepared:
    source: Source
    document: Document | None
    chunks: list[Chunk]
    error: str | None = None


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
    ) -> IngestReport:
        """Ingest files and folders into collection `name`, creating it when needed."""
        check_name(name)
        s = self.settings
        sources, found = file_sources(paths, s.max_file_mb * 2**20, s.follow_links)
        notes = [f"skipped {shown(path)}: {why}" for path, why in found.skipped]
        for note in notes:
            tqdm.write(f"warning: {note}", file=sys.stderr)
        report = self.run(name, sources, prune, progress)
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
            if (root / name / "manifest.json").exists():
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
            s = self.settings
            self._embedder = SentenceTransformerEmbedder(
                name, s.device, s.embed_batch_size, backend=s.embed_backend
            )
        return self._embedder

    def _get_chunker(self, chunking: dict[str, object] | None, embedder: Embedder) -> Chunker:
        if self._chunker is None:
            size = int(str(chunking["chunk_tokens"])) if chunking else self.settings.chunk_tokens
            overlap = (
                int(str(chunking["chunk_overlap"])) if chunking else self.settings.chunk_overlap
            )
            self._chunker = Chunker(size, overlap, getattr(embedder, "tokenizer", None))
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
            if live is not None and live.id == source.content_id:
                report.unchanged += 1
            elif staged is not None and staged.id == source.content_id:
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
        chunker = self._get_chunker(collection.manifest["chunking"], embedder)

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
        if self.settings.engine == "ray":
            from ingest.distributed import embed_on_ray

            embedded = embed_on_ray(todo, chunker, embedder, self.settings)
        else:
            embedded = self._embed_here(todo, chunker, embedder)
        with bar:
            for prepared, vectors in embedded:
                if prepared.error is not None or prepared.document is None:
                    report.failed.append((prepared.source.name, prepared.error or "no document"))
                    bar.write(
                        f"failed: {shown(prepared.source.name)}: {prepared.error}", file=sys.stderr
                    )
                    bar.update(1)
                    continue
                self._stage(prepared, prepared.document, vectors, collection, report, bar, clock)

        return _publish(store, sources, prune, report)

    def _embed_here(
        self, todo: list[Source], chunker: Chunker, embedder: Embedder
    ) -> Iterator[tuple[Prepared, np.ndarray | None]]:
        """Each source prepared and embedded in this process, in order (failures with None)."""
        batch: list[Prepared] = []
        batch_chunks = 0
        least, limit = self.settings.embed_batch_size, 8 * self.settings.embed_batch_size
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="load") as pool:
            for prepared, more_ready in _prefetch(pool, todo, chunker):
                if prepared.error is not None:
                    yield prepared, None
                    continue
                batch.append(prepared)
                batch_chunks += len(prepared.chunks)
                # Embed as soon as a batch's worth is waiting and the loader has nothing more
                # ready: long embed calls would starve the loader (it runs at most PREFETCH
                # sources ahead) and a late first call leaves the model idle while it loads.
                if batch_chunks >= limit or (batch_chunks >= least and not more_ready):
                    yield from _embed_batch(batch, embedder)
                    batch, batch_chunks = [], 0
            yield from _embed_batch(batch, embedder)

    def _stage(
        self,
        item: Prepared,
        document: Document,
        vectors: np.ndarray | None,
        collection: Collection,
        report: IngestReport,
        bar: tqdm,
        clock: float,
    ) -> None:
        count = len(item.chunks)
        if vectors is None or len(vectors) != count:
            raise RagError(f"{item.source.name}: {count} chunks but no matching vectors")
        existed = collection.store.document(document.source) is not None
        collection.store.stage(document, item.source.origin, item.chunks, vectors)
        report.replaced += existed
        report.added += not existed
        report.pages += len(document.pages)
        report.chunks += count
        if document.empty_pages:
            note = _empty_pages_note(document)
            report.warnings.append(note)
            bar.write(f"warning: {note}", file=sys.stderr)
        elapsed = max(time.perf_counter() - clock, 1e-9)
        bar.set_postfix_str(
            f"{report.pages} pages ({report.pages / elapsed:.1f}/s), "
            f"{report.chunks} chunks ({report.chunks / elapsed:.1f}/s)",
            refresh=False,
        )
        bar.update(1)


def _embed_batch(
    batch: list[Prepared], embedder: Embedder
) -> Iterator[tuple[Prepared, np.ndarray]]:
    """One embedder call for every chunk of `batch`; each item with its own vectors."""
    if not batch:
        return
    vectors = embedder.embed([chunk.text for item in batch for chunk in item.chunks])
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


def prepare(source: Source, chunker: Chunker) -> Prepared:
    try:
        document = source.load()
    except LoadError as e:
        return Prepared(source, None, [], e.reason)
    except Exception as e:
        logger.debug("unexpected failure loading %s", source.name, exc_info=True)
        return Prepared(source, None, [], f"unexpected error: {type(e).__name__}: {e}")
    chunks = chunker.split(document)
    if not chunks:
        return Prepared(source, None, [], "no text to index")
    return Prepared(source, document, chunks)


def _prefetch(
    pool: ThreadPoolExecutor, sources: list[Source], chunker: Chunker
) -> Iterator[tuple[Prepared, bool]]:
    """Load and chunk up to PREFETCH sources ahead of the consumer, in order; each comes with
    whether the next one is ready already."""
    pending: deque[Future[Prepared]] = deque()
    queue = iter(sources)
    for source in queue:
        pending.append(pool.submit(prepare, source, chunker))
        if len(pending) >= PREFETCH:
            break
    while pending:
        prepared = pending.popleft().result()
        for source in queue:
            pending.append(pool.submit(prepare, source, chunker))
            break
        yield prepared, bool(pending) and pending[0].done()


def _empty_pages_note(document: Document) -> str:
    pages = ", ".join(str(n) for n in document.empty_pages[:10])
    more = f" and {len(document.empty_pages) - 10} more" if len(document.empty_pages) > 10 else ""
    return f"{document.source}: pages {pages}{more} have no text layer (image-only); not indexed"


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
