"""Load on `rag serve`: search and ask at 1, 8 and 32 concurrent clients, then 32 clients asking
while an ingest job runs into another collection; and the cost of the service over a direct
library call.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/serve_load.py [--requests 4] [--token-delay 0.02]

Everything runs on this machine, over loopback: the LLM is the OpenAI-compatible test server
(tests/servers/openai_compat.py) in its own process, spending `--token-delay` seconds per
streamed token (a remote GPU endpoint's decoding; its reply is a 13-token sentence citing the
sources), and the service is `rag serve` in its own process, as an operator runs it. The
collection is the demo corpus (ui/demo_corpus, eight Wikipedia articles) and the questions are
the demo's SQuAD questions (ui/demo_questions.jsonl).

Each client sends `--requests` requests one after another (a new question each). Reported per
phase: requests, failures, requests per second over the phase's wall time, and p50/p95 latency.
The ingest phase uploads the eight articles into a second collection while 32 clients ask, then
checks that the job finished, that every document is listed and searchable, and that no request
failed. The direct figures are the same search and ask through `rag.stack.Stack` in-process, one
at a time. Results are written to benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx

from ingest.pipeline import IngestJob
from rag.settings import Settings
from rag.stack import Stack

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "ui" / "demo_corpus"
RESULTS = REPO / "benchmarks" / "results" / "serve_load.json"
MODEL = "test/echo-model"
STAGES = ("retrieve_s", "evidence_s", "wait_s", "generate_s", "verify_s", "total_s")


def start(command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)


def start_llm(token_delay: float) -> tuple[subprocess.Popen[str], str]:
    """The loopback OpenAI-compatible server as a child process, and its base URL."""
    module = [sys.executable, "-m", "tests.servers.openai_compat"]
    process = start([*module, "--token-delay", str(token_delay)])
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        process.kill()
        raise SystemExit(f"the LLM server did not start (printed {url!r})")
    return process, url


def start_service(index_dir: Path, llm_url: str) -> tuple[subprocess.Popen[str], str]:
    """`rag serve` as a child process on a free loopback port, once it answers /ready."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "rag.cli", "serve", "--port", str(port)]
    options = ["--index-dir", str(index_dir), "--backend", "openai", "--base-url", llm_url]
    process = start([*command, *options, "--model", MODEL], env)
    url = f"http://127.0.0.1:{port}"
    limit = time.monotonic() + 120
    while time.monotonic() < limit:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("rag serve did not come up")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load(
    url: str, clients: int, requests: int, send: Callable[[httpx.Client, int], httpx.Response]
) -> dict[str, Any]:
    """`clients` threads, each sending `requests` requests in turn: rates and latencies."""

    timings: list[dict[str, float]] = []

    def client(n: int) -> tuple[list[float], list[str]]:
        latencies, failures = [], []
        with httpx.Client(base_url=url, timeout=300) as http:
            for i in range(requests):
                started = time.perf_counter()
                try:
                    response = send(http, n * requests + i)
                    if response.status_code != 200:
                        failures.append(f"{response.status_code}: {response.text[:200]}")
                    elif "timings" in (body := response.json()):
                        timings.append(body["timings"])
                except httpx.HTTPError as e:
                    failures.append(repr(e))
                latencies.append(time.perf_counter() - started)
        return latencies, failures

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(client, range(clients)))
    wall = time.perf_counter() - started
    latencies = [x for lat, _ in results for x in lat]
    failures = [f for _, fail in results for f in fail]
    return {
        **({"stages_mean_s": stage_means(timings)} if timings else {}),
        "clients": clients,
        "requests": len(latencies),
        "failed": len(failures),
        "first_failures": failures[:3],
        "requests_per_s": round(len(latencies) / wall, 2),
        "p50_s": round(statistics.median(latencies), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "wall_s": round(wall, 1),
    }


def stage_means(timings: list[dict[str, float]]) -> dict[str, float]:
    """Mean seconds per stage of the answers' `timings`."""
    return {
        stage: round(statistics.mean(t.get(stage, 0.0) for t in timings), 3) for stage in STAGES
    }


def direct(settings: Settings, questions: list[str], count: int) -> dict[str, Any]:
    """The same searches and asks as the one-client phases, through the library in this
    process, one at a time."""
    with Stack.open(settings, "demo") as stack:
        stack.answerer.ask(questions[-1])  # load the models first
        searches, asks, timings = [], [], []
        for question in questions[:count]:
            started = time.perf_counter()
            stack.searcher.search(question)
            searches.append(time.perf_counter() - started)
            started = time.perf_counter()
            answer = stack.answerer.ask(question)
            asks.append(time.perf_counter() - started)
            timings.append(answer.timings)
    return {
        "requests": count,
        "search_p50_s": round(statistics.median(searches), 3),
        "ask_p50_s": round(statistics.median(asks), 3),
        "ask_stages_mean_s": stage_means(timings),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--token-delay", type=float, default=0.02)
    args = parser.parse_args()
    articles = sorted(p for p in DEMO.glob("*.md") if p.name != "ATTRIBUTION.md")
    lines = (REPO / "ui" / "demo_questions.jsonl").read_text().splitlines()
    questions = [json.loads(line)["question"] for line in lines]

    llm, llm_url = start_llm(args.token_delay)
    scratch = tempfile.TemporaryDirectory(prefix="serve-load-")
    index_dir = Path(scratch.name) / "indexes"
    settings = Settings.load(
        index_dir=index_dir,
        progress=False,
        llm_backend="openai",
        llm_base_url=llm_url,
        llm_model=MODEL,
    )
    IngestJob(settings).run_files("demo", articles)
    service, url = start_service(index_dir, llm_url)
    report: dict[str, Any] = {"token_delay_s": args.token_delay, "cpus": os.cpu_count()}
    try:
        report["direct"] = direct(settings, questions, args.requests)

        def search(http: httpx.Client, i: int) -> httpx.Response:
            body = {"query": questions[i % len(questions)]}
            return http.post("/v1/collections/demo/search", json=body)

        def ask(http: httpx.Client, i: int) -> httpx.Response:
            body = {"question": questions[i % len(questions)]}
            return http.post("/v1/collections/demo/ask", json=body)

        load(url, 1, 2, ask)  # warm the service's models
        report["search"] = [load(url, n, args.requests, search) for n in (1, 8, 32)]
        report["ask"] = [load(url, n, args.requests, ask) for n in (1, 8, 32)]
        report["ask_during_ingest"] = ask_during_ingest(url, articles, args.requests, ask)
    finally:
        service.terminate()
        llm.terminate()
        service.wait(timeout=60)
        llm.wait(timeout=60)
        scratch.cleanup()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def ask_during_ingest(
    url: str,
    articles: list[Path],
    requests: int,
    ask: Callable[[httpx.Client, int], httpx.Response],
) -> dict[str, Any]:
    """32 clients asking while the articles are uploaded and ingested into `wiki`."""
    with httpx.Client(base_url=url, timeout=300) as http:
        files = [("files", (p.name, p.read_bytes(), "text/markdown")) for p in articles]
        http.post("/v1/collections", json={"name": "wiki"}).raise_for_status()
        job = http.post("/v1/collections/wiki/documents", files=files).json()
        phase = load(url, 32, requests, ask)
        # "running" here means the whole load ran alongside the ingest.
        phase["job_state_when_load_ended"] = http.get(f"/v1/jobs/{job['id']}").json()["state"]
        while (record := http.get(f"/v1/jobs/{job['id']}").json())["state"] not in (
            "done",
            "failed",
        ):
            time.sleep(0.5)
        documents = http.get("/v1/collections/wiki/documents").json()["documents"]
        hits = http.post(
            "/v1/collections/wiki/search", json={"query": "Super Bowl 50", "top_k": 3}
        ).json()["hits"]
    phase["ingest"] = {
        "state": record["state"],
        "summary": record["summary"],
        "documents_listed": len(documents),
        "documents_uploaded": len(articles),
        "search_finds_them": bool(hits) and hits[0]["document"].endswith("Super_Bowl_50.md"),
    }
    return phase


if __name__ == "__main__":
    main()
