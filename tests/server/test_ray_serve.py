"""The service as a Ray Serve deployment on a local Ray (one CPU): a replica builds the app
from the settings and answers a real search over a real collection. Skipped where Ray Serve
cannot be imported (the `ray` extra, with its gRPC modules, is not installed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.server.ray_serve import application
from tests.server.conftest import free_port, ingest_demo, service_settings

serve = pytest.importorskip("ray.serve", reason="Ray Serve is not installed (the `ray` extra)")
pytestmark = pytest.mark.slow

# Search and readiness never reach an LLM.
NO_LLM = "http://127.0.0.1:9/v1"


def test_a_ray_serve_replica_answers_as_rag_serve(tmp_path: Path, minilm: Any) -> None:
    import ray

    settings = service_settings(tmp_path / "indexes", NO_LLM)
    ingest_demo(settings, minilm, "demo")
    port = free_port()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(application(settings, num_cpus=1), route_prefix="/")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            assert http.get("/ready").json() == {"status": "ready", "accounts": False}
            found = http.post(
                "/v1/collections/demo/search", json={"query": "Who won Super Bowl 50?"}
            )
            assert found.status_code == 200, found.text
            hits = found.json()["hits"]
            assert hits and hits[0]["document"].endswith("Super_Bowl_50.md")
            missing = http.get("/v1/collections/nope")
            assert missing.status_code == 404
            assert missing.json()["error"]["message"] == "no collection named 'nope'"
    finally:
        serve.shutdown()
        ray.shutdown()
