"""A collection on disk: a manifest, a SQLite store, and generation-stamped FAISS and BM25 files.

indexes/NAME/manifest.json        what the collection is (embedder, chunking, index, reranker)
indexes/NAME/store.sqlite         documents, chunks and vectors: the source of truth
indexes/NAME/dense-<gen>.faiss    caches of the store at generation <gen>, rebuilt when missing,
indexes/NAME/lexical-<gen>/       damaged or out of step with the store (and left unwritten,
                                  serving from memory, while the disk is full)
indexes/NAME/models/              models `rag tune` trained on this collection (with their cards)
indexes/NAME/tune/                `rag tune` work in progress: data and checkpoints to resume from
indexes/.uploads/NAME/            files uploaded into NAME in the chat, deleted with it

with Collection.open(Path("indexes"), "papers") as collection:
    dense = collection.dense_index(IndexParams())
    print(collection.describe("auto").lines())
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from rag.errors import CollectionError, DiskFullError, EmbedderMismatchError
from rag.index import INDEX_BUILDERS, DenseIndex, IndexParams
from rag.lexical import LEXICAL_CONFIG, LexicalIndex
from rag.manifest import (
    MANIFEST,
    Chunking,
    EmbedderInfo,
    Manifest,
    PendingEmbedder,
    RegisteredReranker,
    read_manifest,
    write_json,
    write_manifest,
)
from rag.store import Store, damaged, is_disk_full

logger = logging.getLogger(__name__)

STORE = "store.sqlite"
# Beside the collections, out of `list_collections`' sight: a name cannot start with a dot.
UPLOADS_FOLDER = ".uploads"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# What loading a damaged cache file raises, from FAISS, numpy, json and bm25s.
_CACHE_ERRORS = (OSError, ValueError, RuntimeError, EOFError, KeyError, TypeError, IndexError)


def check_name(name: str) -> str:
    """A collection name is a folder name: letters, digits, '.', '_' and '-', at most 64."""
    if not _NAME.match(name):
        raise CollectionError(
            f"invalid collection name {name!r}: use letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return name


def uploads_dir(index_dir: Path, name: str) -> Path:
    """Where the files uploaded into collection `name` are kept."""
    return index_dir / UPLOADS_FOLDER / check_name(name)


def collection_path(root: Path, name: str) -> Path:
    """The folder of collection `name` (even a damaged one), or fail naming the ones that exist."""
    path = root / check_name(name)
    if not (path / MANIFEST).is_file() and not (path / STORE).is_file():
        known = list_collections(root)
        listing = ", ".join(known) if known else "none yet; create one with `rag ingest`"
        raise CollectionError(f"no collection named {name!r} in {root} (collections: {listing})")
    return path


@dataclass(frozen=True)
class CollectionInfo:
    """What `rag collections info` shows of a collection (and the chat, beside its answers)."""

    path: Path
    documents: int
    chunks: int
    manifest: Manifest
    index: dict[str, Any]  # the dense index as recorded when built; {} when none is
    index_setting: str  # the `index_type` setting it was asked to use

    def to_json(self) -> dict[str, Any]:
        manifest = self.manifest
        index = self.index
        return {
            "name": manifest.name,
            "path": str(self.path),
            "documents": self.documents,
            "chunks": self.chunks,
            "embedder": manifest.embedder.to_json(),
            "chunking": manifest.chunking.to_json(),
            "index": {
                "type": index.get("kind", "not built"),
                "setting": self.index_setting,
                **({"tuning": index["tuning"]} if "tuning" in index else {}),
            },
            "lexical": manifest.lexical,
            "reranker": manifest.reranker.to_json() if manifest.reranker else None,
            "created_at": manifest.created_at,
        }

    def lines(self) -> list[str]:
        """The same, as lines for a person."""
        manifest = self.manifest
        embedder, chunking = manifest.embedder, manifest.chunking
        tuning = self.index.get("tuning")
        tuned = ", ".join(f"{k} {v}" for k, v in tuning.items()) if tuning else ""
        kind = self.index.get("kind", "not built")
        lines = [
            f"{manifest.name}  ({self.path})",
            f"  documents: {self.documents}   chunks: {self.chunks}",
            f"  embedder:  {embedder.name} ({embedder.dimension}-d)",
            f"  chunking:  {chunking.chunk_tokens} tokens, overlap {chunking.chunk_overlap}",
            f"  index:     {kind}" + (f" (tuned: {tuned})" if tuned else ""),
        ]
        reranker = manifest.reranker
        if reranker:
            fusion = reranker.fusion
            weight = f", fusion weight {fusion.weight}" if fusion else ""
            lines.append(f"  reranker:  {reranker.path} ({reranker.kind}{weight})")
        else:
            lines.append("  reranker:  none registered")
        return lines


class Collection:
    """One collection folder. Readers need no lock; writers hold `writer_lock()`.

    A context manager: `with Collection.open(root, name) as collection:` closes it at the end.
    """

    def __init__(self, path: Path, manifest: Manifest, create: bool = False) -> None:
        self.path = path
        self.manifest = manifest
        self.store = Store(path / STORE, create=create)
        self._dense: tuple[int, DenseIndex] | None = None
        self._lexical: tuple[int, LexicalIndex] | None = None
        self._live_chunks: tuple[int, int] | None = None  # (generation, count)
        self._unwritten: list[str] = []
        self._locked = False

    def __repr__(self) -> str:
        return f"Collection({self.name!r} at {self.path})"

    def __enter__(self) -> Collection:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def embedder(self) -> EmbedderInfo:
        # A swap of embedders (see `replace_embedder`) commits in the store first; from that
        # moment on the pending embedder is the collection's, even before the manifest says so.
        pending = self.manifest.pending_embedder
        if pending and self.store.generation >= pending.generation:
            return pending.embedder
        return self.manifest.embedder

    def registered_reranker(self) -> RegisteredReranker | None:
        """The manifest's reranker with its `path` made absolute, or None when none is."""
        entry = self.manifest.reranker
        if entry is None:
            return None
        path = Path(entry.path).expanduser()
        return replace(entry, path=str(path if path.is_absolute() else self.path / path))

    def describe(self, index_setting: str) -> CollectionInfo:
        """Counts, manifest and index of the collection, as `rag collections info` shows them;
        `index_setting` is the `index_type` setting, shown beside the kind in use."""
        documents, chunks = self.store.counts()
        return CollectionInfo(
            self.path, documents, chunks, self.manifest, self.index_info(), index_setting
        )

    def model_dir(self, kind: str) -> Path:
        """A new, empty folder for a model trained on this collection: models/<kind>-<time>."""
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        root = self.path / "models"
        path, n = root / f"{kind}-{stamp}", 1
        while path.exists():
            n += 1
            path = root / f"{kind}-{stamp}-{n}"
        path.mkdir(parents=True)
        return path

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def create(
        cls, root: Path, name: str, embedder: EmbedderInfo, chunking: Chunking
    ) -> Collection:
        """Make a new, empty collection folder with its manifest."""
        path = root / check_name(name)
        if (path / MANIFEST).exists():
            raise CollectionError(f"collection {name!r} already exists at {path}")
        path.mkdir(parents=True, exist_ok=True)
        manifest = Manifest.new(name, embedder, chunking, LEXICAL_CONFIG)
        # The store first: a folder without a manifest is no collection yet, so a job killed
        # (or a disk filled) in between leaves nothing that `open` would call damaged.
        collection = cls(path, manifest, create=True)
        try:
            if collection.store.counts()[0] or collection.store.documents("staged"):
                # Documents without a manifest: it was lost, and guessing it (the embedder, say)
                # could mislabel every vector in the store.
                raise damaged(path / MANIFEST, "the file is missing")
            write_manifest(path / MANIFEST, manifest)
        except BaseException:
            collection.close()
            raise
        return collection

    @classmethod
    def open(cls, root: Path, name: str) -> Collection:
        """Open an existing collection, or fail naming the ones that exist."""
        path = collection_path(root, name)
        if not (path / MANIFEST).is_file():
            raise damaged(path / MANIFEST, "the file is missing")
        collection = cls(path, read_manifest(path / MANIFEST))
        if collection.manifest.pending_embedder:
            collection._settle_embedder()
        return collection

    @staticmethod
    def exists(root: Path, name: str) -> bool:
        """Whether `name` has a manifest under `root` (readable or not)."""
        return (root / check_name(name) / MANIFEST).exists()

    def close(self) -> None:
        self.store.close()

    def check_embedder(self, name: str | None) -> None:
        """Refuse an embedder other than the one the collection was built with."""
        if name is not None and name != self.embedder.name:
            raise EmbedderMismatchError(
                f"collection {self.name!r} was built with embedder {self.embedder.name!r}, "
                f"not {name!r}; use the same embedder or ingest into a new collection"
            )

    def set_reranker(self, reranker: RegisteredReranker | None) -> None:
        """Register (or clear) the collection's own reranker in its manifest."""
        manifest = replace(self.manifest, reranker=reranker)
        write_manifest(self.path / MANIFEST, manifest)
        self.manifest = manifest

    def replace_embedder(
        self,
        embedder: EmbedderInfo,
        keys: np.ndarray,
        vectors: np.ndarray,
    ) -> int:
        """Make `embedder` the collection's, with `vectors` (one per live chunk, by key), in one
        step: a crash at any point leaves either the old embedder and vectors or the new ones.

        The caller holds `writer_lock()`. Returns the new generation.
        """
        if vectors.shape[1:] != (embedder.dimension,):
            raise CollectionError(
                f"vectors of shape {vectors.shape} do not match embedder dimension "
                f"{embedder.dimension}"
            )
        before = self.store.generation
        # The manifest names the new embedder as pending at the generation the store commit will
        # create; `embedder` and `_settle_embedder` read that commit as the moment of the swap.
        pending = replace(self.manifest, pending_embedder=PendingEmbedder(embedder, before + 1))
        write_manifest(self.path / MANIFEST, pending)
        self.manifest = pending
        generation = self.store.replace_vectors(keys, vectors, expected_generation=before)
        # The text did not change: the BM25 index of the old generation serves the new one.
        old_lexical = self.path / f"lexical-{before}"
        new_lexical = self.path / f"lexical-{generation}"
        if (old_lexical / "keys.npy").exists() and not new_lexical.exists():
            self._write_cache(new_lexical, lambda: _copy_folder(old_lexical, new_lexical))
        self._settle_embedder()
        return generation

    def _settle_embedder(self) -> None:
        """Finish (or forget) an embedder swap that the manifest still marks as pending."""
        if not self.manifest.pending_embedder:
            return
        try:
            with self.writer_lock():
                manifest = read_manifest(self.path / MANIFEST)
                pending = manifest.pending_embedder
                if not pending:
                    self.manifest = manifest
                    return
                if self.store.generation >= pending.generation:
                    manifest = replace(manifest, embedder=pending.embedder)
                manifest = replace(manifest, pending_embedder=None)
                write_manifest(self.path / MANIFEST, manifest)
                self.manifest = manifest
        except CollectionError as e:
            # A writer holds the lock (maybe the swap itself), or the disk is full: `embedder`
            # reads the pending entry, and a later open settles it.
            if isinstance(e, DiskFullError):
                logger.warning("%s", e)
            return

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """One writer at a time; a second gets a clear error instead of waiting forever.

        Re-entrant within one Collection object, so a writer may call methods that lock too.
        """
        if self._locked:
            yield
            return
        with _folder_lock(self.path, self.name):
            self._locked = True
            try:
                yield
            finally:
                self._locked = False

    # -- indexes ---------------------------------------------------------------------------

    def dense_index(self, params: IndexParams) -> DenseIndex:
        """The FAISS index for the store's current generation, loaded or rebuilt once."""
        generation = self.store.generation
        if self._dense is None or self._dense[0] != generation:
            if self._dense is not None:
                self._reload_manifest()
            self._dense = (generation, self._load_or_build_dense(generation, params))
        return self._dense[1]

    def lexical_index(self) -> LexicalIndex:
        """The BM25 index for the store's current generation, loaded or rebuilt once."""
        generation = self.store.generation
        if self._lexical is None or self._lexical[0] != generation:
            self._lexical = (generation, self._load_or_build_lexical(generation))
        return self._lexical[1]

    def refresh_indexes(self, params: IndexParams) -> list[str]:
        """Build both indexes for the current generation and delete older generations' files.

        Returns a warning for each index file a full disk kept from being written.
        """
        self._unwritten = []
        # Older generations' files first: nothing reads them any more, and on a nearly full
        # disk their space may be what the new ones need.
        current = self.store.generation
        for entry in self.path.iterdir():
            match = re.match(r"^(dense|lexical)-(\d+)(\.faiss|\.json)?(\.tmp\d+)?$", entry.name)
            if match and (int(match.group(2)) != current or match.group(4)):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
        self.dense_index(params)
        self.lexical_index()
        return list(self._unwritten)

    def _reload_manifest(self) -> None:
        """Re-read the manifest: another job may have changed the embedder or the reranker."""
        self.manifest = read_manifest(self.path / MANIFEST)

    def index_info(self) -> dict[str, Any]:
        """The index kind in use now, as recorded when it was built ({} when none is readable)."""
        path = self.path / f"dense-{self.store.generation}.json"
        try:
            info = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return info if isinstance(info, dict) else {}

    def _load_or_build_dense(self, generation: int, params: IndexParams) -> DenseIndex:
        path = self.path / f"dense-{generation}.faiss"
        info_path = self.path / f"dense-{generation}.json"
        if path.exists() or info_path.exists():
            try:
                return self._load_dense(generation, params)
            except _CACHE_ERRORS as e:
                self._warn_rebuild(path, e)
        dimension = self.embedder.dimension
        parts = list(self.store.live_vectors(dimension))
        keys = np.concatenate([k for k, _ in parts]) if parts else np.zeros(0, np.int64)
        vectors = (
            np.concatenate([v for _, v in parts]) if parts else np.zeros((0, dimension), np.float32)
        )
        index = DenseIndex.build(keys, vectors, params, dimension)
        record: dict[str, Any] = {
            "kind": index.kind,
            "vectors": index.size,
            "generation": generation,
        }
        if index.tuning:
            record["tuning"] = index.tuning
        if self._write_cache(path, lambda: index.save(path)):
            self._write_cache(info_path, lambda: write_json(info_path, record))
        return index

    def _load_dense(self, generation: int, params: IndexParams) -> DenseIndex:
        """The saved FAISS index, if it loads and matches the store; ValueError if not."""
        info_path = self.path / f"dense-{generation}.json"
        try:
            info = json.loads(info_path.read_text())
        except OSError as e:
            raise ValueError(f"{info_path.name}: {e.strerror or e}") from e
        except ValueError as e:
            raise ValueError(f"{info_path.name}: {e}") from e
        if not isinstance(info, dict) or info.get("kind") not in INDEX_BUILDERS:
            raise ValueError(f"{info_path.name} names no index kind")
        path = self.path / f"dense-{generation}.faiss"
        index = DenseIndex.load(path, info["kind"], params, info.get("tuning"))
        self._check_size(index.size, generation)
        if index.dimension != self.embedder.dimension:
            raise ValueError(
                f"its vectors have {index.dimension} dimensions, the embedder's "
                f"{self.embedder.dimension}"
            )
        return index

    def _load_or_build_lexical(self, generation: int) -> LexicalIndex:
        folder = self.path / f"lexical-{generation}"
        if folder.exists():
            try:
                index = LexicalIndex.load(folder)
                self._check_size(index.size, generation)
                return index
            except _CACHE_ERRORS as e:
                self._warn_rebuild(folder, e)
        keys, texts = self.store.live_texts()
        built = LexicalIndex.build(keys, texts)
        self._write_cache(folder, lambda: built.save(folder))
        return built

    def _check_size(self, size: int, generation: int) -> None:
        """ValueError unless an index of `size` rows covers the store's live chunks."""
        if self._live_chunks is None or self._live_chunks[0] != generation:
            self._live_chunks = (generation, self.store.counts()[1])
        if size != self._live_chunks[1]:
            raise ValueError(f"it holds {size} chunks, the store {self._live_chunks[1]}")

    def _warn_rebuild(self, path: Path, error: BaseException) -> None:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        # FAISS prefixes its messages with the C++ function and source line: no use to a reader.
        reason = re.sub(r"^Error in .*? at \S+:\d+: (Error: )?", "", reason)[:200]
        logger.warning("%s does not load (%s); rebuilding it from %s", path, reason, STORE)

    def _write_cache(self, path: Path, write: Callable[[], None]) -> bool:
        """Write an index file; a full disk leaves it unwritten (the index in memory serves
        this process, and the next one to find space writes it). Whether it was written."""
        try:
            write()
        except (OSError, DiskFullError) as e:
            if not is_disk_full(e):
                raise
            note = (
                f"disk full while writing {path}: search uses the index built in memory; "
                "it is rebuilt and written by the next search once space is freed"
            )
            logger.warning("%s", note)
            self._unwritten.append(note)
            return False
        return True


def list_collections(root: Path) -> list[str]:
    """Names of the collections under `root`, sorted."""
    if not root.is_dir():
        return []
    return sorted(entry.name for entry in root.iterdir() if (entry / MANIFEST).is_file())


def delete_collection(root: Path, name: str) -> None:
    """Remove a collection folder and its uploads (refused while a job writes to it).

    The manifest and the store are not read, so a damaged collection can be deleted too.
    """
    path = collection_path(root, name)
    with _folder_lock(path, name):
        shutil.rmtree(path)
    shutil.rmtree(uploads_dir(root, name), ignore_errors=True)


@contextmanager
def _folder_lock(path: Path, name: str) -> Iterator[None]:
    """The writer's lock on a collection folder: an exclusive flock, refused (not awaited)."""
    with open(path / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CollectionError(
                f"collection {name!r} is being written by another job; try again later"
            ) from None
        yield


def _copy_folder(source: Path, target: Path) -> None:
    """Copy a flat folder of index files into place atomically, leaving no temporary behind."""
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        # File by file, not copytree: its aggregated shutil.Error loses the errno of a full disk.
        for entry in source.iterdir():
            shutil.copy2(entry, tmp / entry.name)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
