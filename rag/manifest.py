"""What a collection is, as written in its `manifest.json`: a typed value read and written whole.

    manifest = read_manifest(Path("indexes/papers/manifest.json"))   # or one line if damaged
    manifest.embedder.name, manifest.chunking.chunk_tokens, manifest.reranker   # typed parts
    write_manifest(path, replace(manifest, reranker=None))

`Manifest.from_json` and `to_json` keep the file's JSON shape as it has always been, so collections
made by earlier versions open, and keys this version does not know are written back untouched.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.errors import CollectionError, DiskFullError
from rag.rerank import CROSS_ENCODER, Fusion
from rag.store import damaged, is_disk_full

MANIFEST = "manifest.json"

# The JSON key under which a registered reranker keeps the held-out scores it was registered on.
HELD_OUT_KEY = "held_out_ndcg@10"


# The manifest's own format. The store's schema (rag.store.SCHEMA_VERSION) moves on its own and
# migrates in place; an old manifest must keep opening when it does.
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class EmbedderInfo:
    """The bi-encoder a collection's vectors were made with; a tuned one names its base model."""

    name: str
    dimension: int
    base: str | None = None
    trained_at: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> EmbedderInfo:
        known, extra = _split(entry, ("name", "dimension", "base", "trained_at", "generation"))
        return cls(
            name=known["name"],
            dimension=known["dimension"],
            base=known.get("base"),
            trained_at=known.get("trained_at"),
            extra=extra,
        )

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": self.name, "dimension": self.dimension}
        return {**entry, **_present(base=self.base, trained_at=self.trained_at), **self.extra}


@dataclass(frozen=True)
class PendingEmbedder:
    """An embedder swap in progress: `embedder` is the collection's once the store reaches
    `generation` (see `Collection.replace_embedder`)."""

    embedder: EmbedderInfo
    generation: int

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> PendingEmbedder:
        return cls(EmbedderInfo.from_json(entry), int(entry["generation"]))

    def to_json(self) -> dict[str, Any]:
        entry = self.embedder.to_json()
        # The key order the file has always had: name, dimension, generation, then details.
        head = {"name": entry.pop("name"), "dimension": entry.pop("dimension")}
        return {**head, "generation": self.generation, **entry}


@dataclass(frozen=True)
class Chunking:
    """How documents were split into chunks, in the embedder's tokens."""

    chunk_tokens: int
    chunk_overlap: int
    splitter: str | None = None
    unit: str | None = None
    # Chunks indexed with their document's label and heading (ingest/context.py). A collection
    # made before that existed has no such key and keeps indexing plain chunks.
    context: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Chunking:
        names = ("splitter", "unit", "chunk_tokens", "chunk_overlap", "context")
        known, extra = _split(entry, names)
        return cls(
            chunk_tokens=known["chunk_tokens"],
            chunk_overlap=known["chunk_overlap"],
            splitter=known.get("splitter"),
            unit=known.get("unit"),
            context=known.get("context") is True,
            extra=extra,
        )

    def to_json(self) -> dict[str, Any]:
        head = _present(splitter=self.splitter, unit=self.unit)
        sizes = {"chunk_tokens": self.chunk_tokens, "chunk_overlap": self.chunk_overlap}
        context = {"context": True} if self.context else {}
        return {**head, **sizes, **context, **self.extra}


@dataclass(frozen=True)
class RegisteredReranker:
    """The collection's own reranker, trained by `rag tune reranker`: a model folder (relative
    to the collection unless absolute), what kind of model it is, and the fusion it won with."""

    path: str
    # None in entries written before MaxSim rerankers existed: those are cross-encoders.
    arch: str | None = None
    fusion: Fusion | None = None
    base: str | None = None
    trained_at: str | None = None
    held_out_ndcg: Mapping[str, float] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def kind(self) -> str:
        """What kind of model it is: `maxsim` or `cross-encoder`."""
        return self.arch or CROSS_ENCODER

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> RegisteredReranker:
        keys = ("path", "arch", "base", "fusion", "trained_at", HELD_OUT_KEY)
        known, extra = _split(entry, keys)
        fusion = known.get("fusion")
        return cls(
            path=known["path"],
            arch=known.get("arch"),
            fusion=Fusion(float(fusion["weight"]), int(fusion["k"])) if fusion else None,
            base=known.get("base"),
            trained_at=known.get("trained_at"),
            held_out_ndcg=known.get(HELD_OUT_KEY),
            extra=extra,
        )

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"path": self.path, **_present(arch=self.arch, base=self.base)}
        if self.fusion is not None:
            entry["fusion"] = {"weight": self.fusion.weight, "k": self.fusion.k}
        entry.update(_present(trained_at=self.trained_at))
        if self.held_out_ndcg is not None:
            entry[HELD_OUT_KEY] = dict(self.held_out_ndcg)
        return {**entry, **self.extra}


@dataclass(frozen=True)
class Manifest:
    """A collection's manifest: its name, embedder, chunking, lexical index and reranker."""

    name: str
    embedder: EmbedderInfo
    chunking: Chunking
    created_at: str | None = None
    lexical: Mapping[str, Any] | None = None
    reranker: RegisteredReranker | None = None
    pending_embedder: PendingEmbedder | None = None
    schema_version: int = MANIFEST_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def new(
        cls, name: str, embedder: EmbedderInfo, chunking: Chunking, lexical: Mapping[str, Any]
    ) -> Manifest:
        """The manifest of a collection made now."""
        created = datetime.now(UTC).isoformat(timespec="seconds")
        return cls(name, embedder, chunking, created_at=created, lexical=lexical)

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """The manifest in a parsed `manifest.json`; ValueError saying what is wrong with it."""
        if not isinstance(data, dict):
            raise ValueError(f"it holds a JSON {type(data).__name__}, not an object")
        problem = _problem(data)
        if problem:
            raise ValueError(problem)
        keys = (
            "schema_version",
            "name",
            "created_at",
            "embedder",
            "chunking",
            "lexical",
            "reranker",
            "pending_embedder",
        )
        known, extra = _split(data, keys)
        reranker, pending = known.get("reranker"), known.get("pending_embedder")
        return cls(
            name=known["name"],
            embedder=EmbedderInfo.from_json(known["embedder"]),
            chunking=Chunking.from_json(known["chunking"]),
            created_at=known.get("created_at"),
            lexical=known.get("lexical"),
            reranker=RegisteredReranker.from_json(reranker) if reranker else None,
            pending_embedder=PendingEmbedder.from_json(pending) if pending else None,
            schema_version=known["schema_version"],
            extra=extra,
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"schema_version": self.schema_version, "name": self.name}
        data.update(_present(created_at=self.created_at))
        data["embedder"] = self.embedder.to_json()
        data["chunking"] = self.chunking.to_json()
        data.update(_present(lexical=self.lexical))
        data["reranker"] = self.reranker.to_json() if self.reranker else None
        if self.pending_embedder is not None:
            data["pending_embedder"] = self.pending_embedder.to_json()
        return {**data, **self.extra}


def read_manifest(path: Path) -> Manifest:
    """A collection's manifest, checked; one line naming the file if it is damaged."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise damaged(path, e.strerror or str(e)) from e
    except ValueError as e:  # not JSON, or not UTF-8
        raise damaged(path, str(e)) from e
    version = data.get("schema_version") if isinstance(data, dict) else None
    if isinstance(version, int) and version != MANIFEST_VERSION:
        raise CollectionError(
            f"collection {data.get('name', path.parent.name)!r} has schema version "
            f"{version}; this version of rag reads {MANIFEST_VERSION}"
        )
    try:
        return Manifest.from_json(data)
    except ValueError as e:
        raise damaged(path, str(e)) from e


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Write a manifest atomically; see `write_json`."""
    write_json(path, manifest.to_json())


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically; a full disk raises DiskFullError and leaves no temporary file."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and is_disk_full(e):
            raise DiskFullError(path) from e
        raise


def _split(
    entry: Mapping[str, Any], keys: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The entry's values under `keys`, and the rest (kept so a rewrite loses nothing)."""
    known = {key: value for key, value in entry.items() if key in keys}
    return known, {key: value for key, value in entry.items() if key not in keys}


def _present(**values: Any) -> dict[str, Any]:
    """The values that are set: optional keys are left out of the file, as they always were."""
    return {key: value for key, value in values.items() if value is not None}


def _problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with a manifest's shape, or None."""

    def bad(key: str, value: Any, wanted: str) -> str:
        if value is None:
            return f"{key!r} is missing"
        return f"{key!r} is {json.dumps(value)[:60]}, not {wanted}"

    def count(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    if manifest.get("schema_version") != MANIFEST_VERSION:
        return bad("schema_version", manifest.get("schema_version"), str(MANIFEST_VERSION))
    if not isinstance(manifest.get("name"), str):
        return bad("name", manifest.get("name"), "a name")
    for key in ("embedder", "pending_embedder"):
        entry = manifest.get(key)
        if entry is None and key == "pending_embedder":
            continue
        if not isinstance(entry, dict):
            return bad(key, entry, "an object")
        if not isinstance(entry.get("name"), str):
            return bad(f"{key}.name", entry.get("name"), "a model name")
        if not count(entry.get("dimension")) or not entry["dimension"]:
            return bad(f"{key}.dimension", entry.get("dimension"), "a positive integer")
        if key == "pending_embedder" and not count(entry.get("generation")):
            return bad(f"{key}.generation", entry.get("generation"), "a generation number")
    chunking = manifest.get("chunking")
    if not isinstance(chunking, dict):
        return bad("chunking", chunking, "an object")
    for key in ("chunk_tokens", "chunk_overlap"):
        if not count(chunking.get(key)):
            return bad(f"chunking.{key}", chunking.get(key), "a number of tokens")
    reranker = manifest.get("reranker")
    if reranker is not None and not (
        isinstance(reranker, dict) and isinstance(reranker.get("path"), str)
    ):
        return bad("reranker", reranker, "null or an object with a path")
    fusion = reranker.get("fusion") if reranker else None
    if fusion and not _is_fusion(fusion):
        return bad(
            "reranker.fusion", fusion, "an object with a weight in [0, 1] and a k of 1 or more"
        )
    return None


def _is_fusion(value: Any) -> bool:
    """Whether a manifest's fusion entry makes a `Fusion`."""
    if not isinstance(value, dict):
        return False
    weight, k = value.get("weight"), value.get("k")
    if isinstance(weight, bool) or isinstance(k, bool):
        return False
    return isinstance(weight, int | float) and isinstance(k, int | float) and 0 <= weight <= 1 <= k
