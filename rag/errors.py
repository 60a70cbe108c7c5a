"""A small error hierarchy: each error carries the bad value and what is allowed, in one line."""

from __future__ import annotations

from pathlib import Path


class RagError(Exception):
    """Base of every error the product reports to a person as one line."""


class ConfigError(RagError):
    """A setting, flag, config or input file value, or a question, is not valid."""


class CollectionError(RagError):
    """A collection is missing, already exists, is locked or is damaged."""


class DiskFullError(CollectionError):
    """The disk (or the user's quota) filled up while writing `path`."""

    def __init__(self, path: Path, note: str = "") -> None:
        super().__init__(
            f"disk full while writing {path}: free some space and run the command again"
            + (f"; {note}" if note else "")
        )
        self.path = path


class EmbedderMismatchError(CollectionError):
    """A collection is queried or extended with a different embedder than it was built with."""


class ModelError(RagError):
    """A model cannot be found or loaded."""


class LoadError(RagError):
    """A source file cannot be turned into text. `reason` is short and names the cause."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class GenerationError(RagError):
    """The LLM backend failed: endpoint down, timed out, refused the request, or bad output."""
