"""Running jobs on a Ray cluster: connecting, and what every worker needs to rebuild the job.

    with ray_session(settings.ray_address) as resources:
        ...  # resources: the cluster's {"CPU": n, "GPU": m, ...}

Ray is imported here and only here (and in the job modules that call it), never by the
single-machine path. A job given no address joins the cluster named by RAY_ADDRESS, or else
starts a Ray instance on this machine for its own use and stops it when done. Every node needs
this package installed and the documents at the same paths (a shared filesystem), as Ray Data's
own file readers do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rag.errors import ConfigError, RagError
from rag.settings import Settings

logger = logging.getLogger(__name__)

# Passed to every worker: the offline switches matter on nodes where the driver set them.
WORKER_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ConfigError(
            "--engine ray needs Ray: pip install 'rag[ray]' (or ray[data]) on every node"
        ) from e
    return ray


@contextmanager
def ray_session(address: str | None) -> Iterator[dict[str, float]]:
    """Connected to Ray for the duration; yields the cluster's resources."""
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        env = {name: os.environ[name] for name in WORKER_ENV if name in os.environ}
        try:
            ray.init(
                address=address,
                runtime_env={"env_vars": env} if env else None,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=True,
            )
        except ConnectionError as e:
            raise RagError(f"could not connect to the Ray cluster at {address}: {e}") from e
        started = True
    try:
        yield {key: float(value) for key, value in ray.cluster_resources().items()}
    finally:
        if started:
            ray.shutdown()


def settings_for_workers(settings: Settings) -> dict[str, Any]:
    """The settings as plain values a worker can rebuild them from (`worker_settings`).

    The API key is left out of `model_dump` on purpose; it travels separately, in the job's
    own arguments, and is never written anywhere.
    """
    values = settings.model_dump(mode="json", exclude={"llm_api_key"})
    values["progress"] = False
    if settings.llm_api_key is not None:
        values["llm_api_key"] = settings.llm_api_key.get_secret_value()
    return values


def worker_settings(values: dict[str, Any]) -> Settings:
    """Settings on a worker: exactly the driver's, ignoring any rag.toml on the node."""
    return Settings.model_validate(values)


def default_workers(resources: dict[str, float], per_worker_cpus: float = 1.0) -> int:
    """One worker per GPU on a cluster with GPUs, else one per `per_worker_cpus` CPUs."""
    gpus = int(resources.get("GPU", 0))
    if gpus:
        return gpus
    return max(1, int(resources.get("CPU", 1) // per_worker_cpus))
