"""Files sent by a person (the chat's sidebar, the HTTP API): names made safe, types and sizes
checked, saved beside the collections without ever overwriting another file.

    reason = check_upload("report.pdf", len(data))      # None, or why it is refused
    path = save_upload(uploads_dir(index_dir, "papers"), safe_name("report.pdf"), data)

Both faces validate through here, so an upload the chat refuses the API refuses too, in the same
words.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from pathlib import Path, PurePath

from ingest.loaders import SUPPORTED_SUFFIXES

MAX_UPLOAD_MB = 50
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
MAX_STEM_CHARS = 100
FALLBACK_STEM = "upload"
_UNSAFE = re.compile(r"[^\w.-]+")  # \w is Unicode-aware: "Résumé" stays readable


def safe_name(name: str) -> str:
    """A file name safe to save: base name only, letters, digits, '_', '-', '.', no '..', no
    leading dot, a lower-case suffix, at most MAX_STEM_CHARS before it."""
    base = re.split(r"[\\/]", name)[-1]  # browsers send a base name; some send a Windows path
    base = unicodedata.normalize("NFC", base)
    base = _UNSAFE.sub("_", base)
    base = re.sub(r"\.{2,}", ".", base).lstrip("._-")
    stem, dot, suffix = base.rpartition(".")
    if not dot:
        stem, suffix = base, ""
    stem = stem[:MAX_STEM_CHARS].strip("._-") or FALLBACK_STEM
    return f"{stem}.{suffix.lower()}" if suffix else stem


def check_upload(name: str, size: int) -> str | None:
    """Why a file of this name and size is refused, or None when it may be ingested."""
    suffix = PurePath(safe_name(name)).suffix
    if suffix not in SUPPORTED_SUFFIXES:
        shown = f"'{suffix}'" if suffix else "(no extension)"
        supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
        return f"unsupported file type {shown} (supported: {supported})"
    if size == 0:
        return "the file is empty"
    if size > MAX_UPLOAD_BYTES:
        return f"{size / 1024 / 1024:.1f} MB is over the {MAX_UPLOAD_MB} MB limit per file"
    return None


def save_upload(folder: Path, name: str, data: bytes) -> Path:
    """Save `data` in `folder` as `name` (already safe); a different file of that name already
    there gets `name-1`, `name-2`... while the same content reuses its file (re-ingest no-op)."""
    folder.mkdir(parents=True, exist_ok=True)
    stem, suffix = PurePath(name).stem, PurePath(name).suffix
    fd, staged = tempfile.mkstemp(prefix=".upload-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        for n in range(10_000):
            target = folder / (name if n == 0 else f"{stem}-{n}{suffix}")
            try:
                os.link(staged, target)  # atomic and exclusive: two sessions never share a name
                return target
            except FileExistsError:
                if _same_content(target, data):
                    return target
        raise FileExistsError(f"too many files named like {name} in {folder}")
    finally:
        os.unlink(staged)


def _same_content(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False
