"""A collection on disk: a manifest, a SQLite store, and generation-stamped FAISS and BM25 files.

indexes/NAME/manifest.json        what the collection is (embedder, chunking, index, reranker)
indexes/NAME/store.sqlite         documents, chunks and vectors: the source of truth
indexes/NAME/dense-<gen>.faiss    caches of the store at generation <gen>, rebuilt when missing
indexes/NAME/lexical-<gen>/
indexes/NAME/models/              models `rag tune` trained on this collection (with their cards)
indexes/NAME/tune/                `rag tune` work in progress: data and checkpoints to resume from

collection = Collection.open(Path("indexes"), "papers")
dense = collection.dense_index(IndexParams())
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import CollectionError, EmbedderMismatchError
from rag.index import DenseIndex, IndexParams
from rag.lexical import LEXICAL_CONFIG, LexicalIndex
from rag.store import SCHEMA_VERSION, Store

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
STORE = "store.sqlite"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str) -> str:
    """A collection name is a folder name: letters, digits, '.', '_' and '-', at most 64."""
    if not _NAME.match(name):
        raise CollectionError(
            f"invalid collection name {name!r}: use letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return name


@dataclass(frozen=True)
class EmbedderInfo:
    name: str
    dimension: int


class Collection:
    """One collection folder. Readers need no lock; writers hold `writer_lock()`."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.store = Store(path / STORE)
        self._dense: tuple[int, DenseIndex] | None = None
        self._lexical: tuple[int, LexicalIndex] | None = None
        self._locked = False

    def __repr__(self) -> str:
        return f"Collection({self.name!r} at {self.path})"

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def embedder(self) -> EmbedderInfo:
        # A swap of embedders (see `replace_embedder`) commits in the store first; from that
        # moment on the pending embedder is the collection's, even before the manifest says so.
        pending = self.manifest.get("pending_embedder")
        if pending and self.store.generation >= int(pending["generation"]):
            return EmbedderInfo(name=pending["name"], dimension=int(pending["dimension"]))
        info = self.manifest["embedder"]
        return EmbedderInfo(name=info["name"], dimension=int(info["dimension"]))

    def registered_reranker(self) -> dict[str, Any] | None:
        """The manifest's reranker entry with `path` made absolute, or None when none is."""
        entry = self.manifest.get("reranker")
        if not entry:
            return None
        path = Path(entry["path"]).expanduser()
        return {**entry, "path": str(path if path.is_absolute() else self.path / path)}

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
        cls, root: Path, name: str, embedder: EmbedderInfo, chunking: dict[str, Any]
    ) -> Collection:
        """Make a new, empty collection folder with its manifest."""
        path = root / check_name(name)
        if (path / MANIFEST).exists():
            raise CollectionError(f"collection {name!r} already exists at {path}")
        path.mkdir(parents=True, exist_ok=True)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "name": name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "embedder": {"name": embedder.name, "dimension": embedder.dimension},
            "chunking": chunking,
            "lexical": LEXICAL_CONFIG,
            "reranker": None,
        }
        _write_json(path / MANIFEST, manifest)
        return cls(path, manifest)

    @classmethod
    def open(cls, root: Path, name: str) -> Collection:
        """Open an existing collection, or fail naming the ones that exist."""
        path = root / check_name(name)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            known = list_collections(root)
            listing = ", ".join(known) if known else "none yet; create one with `rag ingest`"
            raise CollectionError(
                f"no collection named {name!r} in {root} (collections: {listing})"
            ) from None
        except (OSError, json.JSONDecodeError) as e:
            raise CollectionError(f"collection {name!r} has an unreadable manifest: {e}") from e
        if manifest.get("schema_version") != SCHEMA_VERSION:
            raise CollectionError(
                f"collection {name!r} has schema version {manifest.get('schema_version')}; "
                f"this version of rag reads {SCHEMA_VERSION}"
            )
        collection = cls(path, manifest)
        if manifest.get("pending_embedder"):
            collection._settle_embedder()
        return collection

    def close(self) -> None:
        self.store.close()

    def check_embedder(self, name: str | None) -> None:
        """Refuse an embedder other than the one the collection was built with."""
        if name is not None and name != self.embedder.name:
            raise EmbedderMismatchError(
                f"collection {self.name!r} was built with embedder {self.embedder.name!r}, "
                f"not {name!r}; use the same embedder or ingest into a new collection"
            )

    def set_reranker(self, reranker: dict[str, Any] | None) -> None:
        """Register (or clear) the collection's own reranker in its manifest."""
        self.manifest["reranker"] = reranker
        _write_json(self.path / MANIFEST, self.manifest)

    def replace_embedder(
        self,
        embedder: EmbedderInfo,
        keys: np.ndarray,
        vectors: np.ndarray,
        details: dict[str, Any] | None = None,
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
        self.manifest["pending_embedder"] = {
            "name": embedder.name,
            "dimension": embedder.dimension,
            "generation": before + 1,
            **(details or {}),
        }
        _write_json(self.path / MANIFEST, self.manifest)
        generation = self.store.replace_vectors(keys, vectors, expected_generation=before)
        # The text did not change: the BM25 index of the old generation serves the new one.
        old_lexical = self.path / f"lexical-{before}"
        new_lexical = self.path / f"lexical-{generation}"
        if (old_lexical / "keys.npy").exists() and not new_lexical.exists():
            tmp = self.path / f"lexical-{generation}.tmp{os.getpid()}"
            shutil.copytree(old_lexical, tmp)
            os.replace(tmp, new_lexical)
        self._settle_embedder()
        return generation

    def _settle_embedder(self) -> None:
        """Finish (or forget) an embedder swap that the manifest still marks as pending."""
        pending = self.manifest.get("pending_embedder")
        if not pending:
            return
        try:
            with self.writer_lock():
                manifest = json.loads((self.path / MANIFEST).read_text())
                pending = manifest.get("pending_embedder")
                if not pending:
                    self.manifest = manifest
                    return
                if self.store.generation >= int(pending["generation"]):
                    manifest["embedder"] = {k: v for k, v in pending.items() if k != "generation"}
                del manifest["pending_embedder"]
                _write_json(self.path / MANIFEST, manifest)
                self.manifest = manifest
        except CollectionError:
            # A writer holds the lock (maybe the swap itself); `embedder` reads the pending entry.
            return

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """One writer at a time; a second gets a clear error instead of waiting forever.

        Re-entrant within one Collection object, so a writer may call methods that lock too.
        """
        if self._locked:
            yield
            return
        with open(self.path / ".lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CollectionError(
                    f"collection {self.name!r} is being written by another job; try again later"
                ) from None
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
            folder = self.path / f"lexical-{generation}"
            if (folder / "keys.npy").exists():
                index = LexicalIndex.load(folder)
            else:
                keys, texts = self.store.live_texts()
                index = LexicalIndex.build(keys, texts)
                index.save(folder)
            self._lexical = (generation, index)
        return self._lexical[1]

    def refresh_indexes(self, params: IndexParams) -> None:
        """Build both indexes for the current generation and delete older generations' files."""
        self.dense_index(params)
        self.lexical_index()
        current = self.store.generation
        for entry in self.path.iterdir():
            match = re.match(r"^(dense|lexical)-(\d+)(\.faiss|\.json)?(\.tmp\d+)?$", entry.name)
            if match and (int(match.group(2)) != current or match.group(4)):
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def _reload_manifest(self) -> None:
        """Re-read the manifest: another job may have changed the embedder or the reranker."""
        try:
            self.manifest = json.loads((self.path / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CollectionError(
                f"collection {self.name!r} has an unreadable manifest: {e}"
            ) from e

    def index_info(self) -> dict[str, Any]:
        """The index kind in use now, as recorded when it was built."""
        path = self.path / f"dense-{self.store.generation}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def _load_or_build_dense(self, generation: int, params: IndexParams) -> DenseIndex:
        path = self.path / f"dense-{generation}.faiss"
        info_path = self.path / f"dense-{generation}.json"
        if path.exists() and info_path.exists():
            info = json.loads(info_path.read_text())
            return DenseIndex.load(path, info["kind"], params, info.get("tuning"))
        dimension = self.embedder.dimension
        parts = list(self.store.live_vectors(dimension))
        keys = np.concatenate([k for k, _ in parts]) if parts else np.zeros(0, np.int64)
        vectors = (
            np.concatenate([v for _, v in parts]) if parts else np.zeros((0, dimension), np.float32)
        )
        index = DenseIndex.build(keys, vectors, params, dimension)
        index.save(path)
        record: dict[str, Any] = {
            "kind": index.kind,
            "vectors": index.size,
            "generation": generation,
        }
        if index.tuning:
            record["tuning"] = index.tuning
        _write_json(info_path, record)
        return index


def list_collections(root: Path) -> list[str]:
    """Names of the collections under `root`, sorted."""
    if not root.is_dir():
        return []
    return sorted(entry.name for entry in root.iterdir() if (entry / MANIFEST).is_file())


def delete_collection(root: Path, name: str) -> None:
    """Remove a collection folder (refused while a job writes to it)."""
    collection = Collection.open(root, name)
    with collection.writer_lock():
        collection.close()
        shutil.rmtree(collection.path)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
