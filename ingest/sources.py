"""What an ingest job reads: sources (files found on disk, or documents built elsewhere), and each
source prepared (loaded and chunked) or failed with a one-line reason.

    sources, found = file_sources([Path("docs/")], max_bytes=100 * 2**20)
    prepared = prepare(sources[0], Chunker(240, 32))   # .document and .chunks, or .error

The local job (ingest/pipeline.py) and the Ray job (ingest/distributed.py) both build on this
module, so neither imports the other's internals.
"""

from __future__ import annotations

import functools
import logging
import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingest.chunking import Chunker
from ingest.context import document_label, with_context
from ingest.loaders import SUPPORTED_SUFFIXES, load_document, sha256_file
from rag.errors import LoadError, RagError
from rag.settings import OcrMode, PdfText
from rag.types import Chunk, Document, shown

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """One thing to ingest: a file, or a document built elsewhere (a BEIR record, say)."""

    name: str
    origin: str
    content_id: str
    load: Callable[[], Document]
    # What the user attached at ingest (`rag ingest --meta company=3M`): stored with the document,
    # matched by `--where`, and part of the label its chunks are indexed with.
    metadata: Mapping[str, str] = field(default_factory=dict)


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
    paths: Sequence[Path],
    max_bytes: float = float("inf"),
    follow_links: bool = False,
    ocr: OcrMode = "off",
    metadata: Mapping[str, str] | None = None,
    pdf_text: PdfText = "pdfium",
    pdf_stall_s: float | None = None,
) -> tuple[list[Source], Discovery]:
    """Sources for files, recorded by absolute path, hashed up front (cheap next to parsing).
    PDFs are loaded with OCR mode `ocr` and text reader `pdf_text`, in a child process stopped
    after `pdf_stall_s` seconds without a page read (None: in this process); the settings of
    those names, with `pdf_stall_s = 0` meaning None.

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
            load = functools.partial(load_document, path, ocr, pdf_text, pdf_stall_s)
            sources.append(Source(str(path), "file", content_id, load, dict(metadata or {})))
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
    if chunker.context:
        label = document_label(document, source.metadata, file_name=source.origin == "file")
        chunks = with_context(document, chunks, label)
    return Prepared(source, document, chunks)
