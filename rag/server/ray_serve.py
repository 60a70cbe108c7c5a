"""`rag serve` on a Ray cluster: the same application as a Ray Serve deployment.

    from ray import serve
    from rag.server.ray_serve import application

    serve.run(application(num_replicas=4, num_cpus=2), route_prefix="/")

Each replica builds the app itself, from its node's settings (rag.toml, RAG_*) unless `settings`
are given: an app holds open collections, threads and locks, which do not travel between
processes. The replicas share the index folder as `rag serve` replicas do (docs/scaling.md): it
must be at the same path on every node. Needs the `ray` extra (`pip install -e ".[ray]"`).
"""

from __future__ import annotations

from typing import Any

from rag.server.app import create_app
from rag.settings import Settings


def application(
    settings: Settings | None = None, *, num_replicas: int = 1, num_cpus: float = 2.0
) -> Any:
    """The bound Ray Serve application: `num_replicas` replicas of `num_cpus` CPUs each."""
    from ray import serve  # the `ray` extra: imported only where it is used

    def build() -> Any:
        return create_app(settings or Settings.load())

    class RagService:
        """One replica of the service: the app answers every route."""

    replica = serve.ingress(build)(RagService)
    deployment: Any = serve.deployment(
        replica, name="rag", num_replicas=num_replicas, ray_actor_options={"num_cpus": num_cpus}
    )
    return deployment.bind()
