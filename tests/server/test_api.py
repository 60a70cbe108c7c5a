"""The HTTP API on a real uvicorn server: collections, uploads and ingest jobs, search with
filters, ask as JSON and as server-sent events, and the refusals that change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from pypdf import PdfReader

from rag.collection import delete_collection
from rag.server import create_app
from tests.conftest import REPO, SHARED_DATA, wait_for
from tests.server.conftest import DEMO, Running, ingest_demo, service_settings, serving
from tests.servers.openai_compat import OpenAICompatServer


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, minilm: Any, server: OpenAICompatServer
) -> Iterator[Running]:
    settings = service_settings(tmp_path_factory.mktemp("api") / "indexes", server.base_url)
    ingest_demo(settings, minilm, "demo")
    app = create_app(settings, embedder=minilm)
    with serving(app) as url:
        yield Running(url, settings, app)


@pytest.fixture
def client(api: Running) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=120) as http:
        yield http


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == response.status_code
    return str(body["error"]["message"])


def snapshot(api: Running) -> list[str]:
    """Every file under the index folder except the accounts and job records' temporaries."""
    root = api.settings.index_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def wait_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    state: dict[str, Any] = {}

    def finished() -> bool:
        state.update(client.get(f"/v1/jobs/{job_id}").json())
        return state["state"] in ("done", "failed")

    wait_for(finished, 300, f"ingest job {job_id} did not finish", poll_s=0.2)
    return state


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    events, kind = [], "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            events.append((kind, json.loads(line.removeprefix("data: "))))
            kind = "message"
    return events


def test_health_readiness_and_openapi(client: httpx.Client) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready", "accounts": False}
    spec = client.get("/openapi.json").json()
    assert "/v1/collections/{name}/ask" in spec["paths"]
    assert "/v1/chat/completions" in spec["paths"]
    assert client.get("/docs").status_code == 200
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and error_of(missing) == "no route GET /v1/nothing-here"


def test_collections_list_and_info(client: httpx.Client) -> None:
    assert "demo" in client.get("/v1/collections").json()["collections"]
    info = client.get("/v1/collections/demo").json()
    assert info["name"] == "demo" and info["documents"] == 2 and info["chunks"] > 10
    assert "path" not in info  # where the server keeps it is not the caller's business
    missing = client.get("/v1/collections/nope")
    assert missing.status_code == 404 and error_of(missing) == "no collection named 'nope'"


@pytest.mark.parametrize("name", ["..", "..%2F..%2Fetc", ".uploads", "a b", "-x"])
def test_collection_names_that_are_paths_are_refused(
    api: Running, client: httpx.Client, name: str
) -> None:
    before = snapshot(api)
    for response in (
        client.get(f"/v1/collections/{name}"),
        client.delete(f"/v1/collections/{name}"),
        client.post(f"/v1/collections/{name}/search", json={"query": "Super Bowl"}),
    ):
        assert response.status_code in (400, 404), response.text
        assert error_of(response)
    created = client.post("/v1/collections", json={"name": name.replace("%2F", "/")})
    assert created.status_code == 400
    assert error_of(created).startswith("invalid collection name")
    assert snapshot(api) == before


def test_search_json_and_filters(client: httpx.Client) -> None:
    found = client.post("/v1/collections/demo/search", json={"query": "Who won Super Bowl 50?"})
    assert found.status_code == 200
    hits = found.json()["hits"]
    assert hits and hits[0]["document"].endswith("Super_Bowl_50.md")
    assert set(hits[0]) == {"document", "page", "chunk_id", "score", "text"}

    nature = client.post(
        "/v1/collections/demo/search",
        json={"query": "Who won Super Bowl 50?", "where": {"topic": "nature"}, "top_k": 3},
    ).json()["hits"]
    assert nature and all(h["document"].endswith("Amazon_rainforest.md") for h in nature)
    by_list = client.post(
        "/v1/collections/demo/search",
        json={"query": "rainforest", "where": ["document=Super_Bowl_50.md"]},
    ).json()["hits"]
    assert by_list and all(h["document"].endswith("Super_Bowl_50.md") for h in by_list)


def test_unknown_filter_keys_and_fields_are_refused_not_ignored(client: httpx.Client) -> None:
    unknown = client.post(
        "/v1/collections/demo/search", json={"query": "Super Bowl", "where": {"topc": "sport"}}
    )
    assert unknown.status_code == 400
    assert error_of(unknown) == (
        "unknown filter key 'topc' for collection 'demo' "
        "(known: doc, document, page, pages, title, topic, type)"
    )
    asked = client.post(
        "/v1/collections/demo/ask", json={"question": "Who won?", "where": ["topc=sport"]}
    )
    assert asked.status_code == 400 and error_of(asked).startswith("unknown filter key 'topc'")
    page = client.post("/v1/collections/demo/search", json={"query": "x", "where": {"page": "two"}})
    assert page.status_code == 400 and "is not a page number" in error_of(page)
    misspelt = client.post("/v1/collections/demo/search", json={"query": "x", "wher": {}})
    assert misspelt.status_code == 422
    assert error_of(misspelt) == "wher: Extra inputs are not permitted"


def test_malformed_requests_get_one_message(client: httpx.Client) -> None:
    broken = client.post(
        "/v1/collections/demo/search",
        content=b'{"query": "Super',
        headers={"content-type": "application/json"},
    )
    assert broken.status_code == 400
    assert error_of(broken).startswith("the request body is not valid JSON")
    as_text = client.post(
        "/v1/collections/demo/search",
        content=b'{"query": "Super Bowl"}',
        headers={"content-type": "text/plain"},
    )
    assert as_text.status_code == 415
    assert error_of(as_text) == "expected Content-Type application/json, got text/plain"
    missing = client.post("/v1/collections/demo/ask", json={})
    assert missing.status_code == 422 and error_of(missing) == "question: Field required"
    empty = client.post("/v1/collections/demo/search", json={"query": "  "})
    assert empty.status_code == 400 and "empty" in error_of(empty)
    huge = client.post("/v1/collections/demo/search", json={"query": "x" * (5 * 1024 * 1024)})
    assert huge.status_code == 413
    assert error_of(huge) == "the request body is over the 4 MB limit"
    # Without a Content-Length (chunked), the body is counted as it arrives.
    parts = iter([b'{"query": "', b"x" * (5 * 1024 * 1024), b'"}'])
    chunked = client.post(
        "/v1/collections/demo/search", content=parts, headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413
    assert error_of(chunked) == "the request body is over the 4 MB limit"


def test_ask_returns_the_checked_answer_as_json(client: httpx.Client) -> None:
    response = client.post("/v1/collections/demo/ask", json={"question": "Who won Super Bowl 50?"})
    assert response.status_code == 200
    answer = response.json()
    assert answer["refused"] is False, answer
    assert answer["answer"].startswith("I read sources [1]")
    assert answer["citations"][0]["n"] == 1
    assert answer["citations"][0]["document"].endswith("Super_Bowl_50.md")
    assert {"sentences", "timings", "usage", "notices", "dropped_citations"} <= set(answer)


def test_ask_streams_the_chats_events(client: httpx.Client) -> None:
    body = {"question": "Who won Super Bowl 50?", "stream": True, "where": {"topic": "sport"}}
    with client.stream("POST", "/v1/collections/demo/ask", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    assert set(kinds[1:-1]) == {"token"} and len(kinds) > 5
    sources = events[0][1]["sources"]
    assert sources and all(s["document"].endswith("Super_Bowl_50.md") for s in sources)
    streamed = "".join(payload["text"] for kind, payload in events if kind == "token")
    done = events[-1][1]
    assert done["answer"] == streamed.strip() and done["citations"]


def test_upload_ingest_list_search_delete(api: Running, client: httpx.Client) -> None:
    assert client.post("/v1/collections", json={"name": "papers"}).status_code == 201
    again = client.post("/v1/collections", json={"name": "papers"})
    assert again.status_code == 409 and error_of(again) == "collection 'papers' already exists"
    pdf = SHARED_DATA / "pdfs" / "real" / "1908.10084.pdf"
    files = [
        ("files", ("Sentence-BERT.pdf", pdf.read_bytes(), "application/pdf")),
        ("files", ("Normans.md", (DEMO / "Normans.md").read_bytes(), "text/markdown")),
    ]
    job = client.post("/v1/collections/papers/documents", files=files)
    assert job.status_code == 202, job.text
    assert job.json()["state"] in ("queued", "running")
    with client.stream("GET", f"/v1/jobs/{job.json()['id']}/events") as streamed:
        events = sse_events(streamed)
    assert events[-1][0] == "done" and events[-1][1]["progress"] == {"done": 2, "total": 2}
    record = wait_job(client, job.json()["id"])
    assert record["state"] == "done", record
    assert record["report"]["ingested"] == 2 and record["report"]["failed"] == []

    documents = client.get("/v1/collections/papers/documents").json()["documents"]
    assert sorted(d["name"] for d in documents) == ["Normans.md", "Sentence-BERT.pdf"]
    pdf_doc = next(d for d in documents if d["name"] == "Sentence-BERT.pdf")
    assert pdf_doc["type"] == "pdf" and pdf_doc["pages"] == len(PdfReader(pdf).pages)
    hits = client.post(
        "/v1/collections/papers/search", json={"query": "siamese BERT networks sentence embeddings"}
    ).json()["hits"]
    assert hits[0]["document"].endswith("Sentence-BERT.pdf")

    removed = client.delete(f"/v1/collections/papers/documents/{pdf_doc['id']}")
    assert removed.status_code == 200
    left = client.get("/v1/collections/papers/documents").json()["documents"]
    assert [d["name"] for d in left] == ["Normans.md"]
    hits = client.post(
        "/v1/collections/papers/search", json={"query": "siamese BERT networks"}
    ).json()["hits"]
    assert hits and all(h["document"].endswith("Normans.md") for h in hits)
    uploads = api.settings.index_dir / ".uploads" / "papers"
    assert sorted(p.name for p in uploads.iterdir()) == ["Normans.md"]

    assert client.delete("/v1/collections/papers").json() == {"deleted": "papers"}
    assert not uploads.exists() and not (api.settings.index_dir / "papers").exists()
    assert client.get("/v1/collections/papers").status_code == 404


@pytest.mark.parametrize(
    ("name", "data", "content_type", "status", "message"),
    [
        ("../../evil.md", b"# hi\n", "text/markdown", 400, "a file name must be a plain name"),
        ("a\\..\\b.md", b"# hi\n", "text/markdown", 400, "a file name must be a plain name"),
        ("tool.exe", b"MZ\x90\x00", "application/octet-stream", 415, "unsupported file type"),
        ("empty.md", b"", "text/markdown", 400, "the file is empty"),
        ("fake.pdf", b"just text", "application/pdf", 415, "not a PDF"),
        ("image.pdf", b"%PDF-1.4\n", "image/png", 415, "content type 'image/png' does not"),
        ("big.txt", b"x" * (50 * 1024 * 1024 + 1), "text/plain", 413, "over the 50 MB limit"),
    ],
)
def test_refused_uploads_change_nothing(
    api: Running,
    client: httpx.Client,
    name: str,
    data: bytes,
    content_type: str,
    status: int,
    message: str,
) -> None:
    before = snapshot(api)
    jobs_before = client.get("/v1/jobs").json()["jobs"]
    good = ("files", ("fine.md", b"# Fine\n\nA fine file.\n", "text/markdown"))
    response = client.post(
        "/v1/collections/demo/documents", files=[good, ("files", (name, data, content_type))]
    )
    assert response.status_code == status, response.text
    assert message in error_of(response)
    assert snapshot(api) == before
    assert client.get("/v1/jobs").json()["jobs"] == jobs_before


def test_an_upload_must_be_multipart(api: Running, client: httpx.Client) -> None:
    before = snapshot(api)
    response = client.post("/v1/collections/demo/documents", json={"files": ["x.md"]})
    assert response.status_code == 415
    assert error_of(response) == "expected Content-Type multipart/form-data, got application/json"
    assert snapshot(api) == before


def test_the_service_searches_as_the_cli_does(api: Running, client: httpx.Client) -> None:
    """No second code path: `rag search --json` and the API give the same hits."""
    query = "Which team won the Super Bowl in 2016?"
    command = [sys.executable, "-m", "rag.cli", "search", query, "-c", "demo", "--json"]
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAG_INDEX_DIR": str(api.settings.index_dir),
        "RAG_RERANK": "false",
        "RAG_CHUNKS_PER_PAGE": "0",
        "RAG_DEVICE": "cpu",
    }
    printed = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    assert printed.returncode == 0, printed.stderr
    served = client.post("/v1/collections/demo/search", json={"query": query}).json()
    cli_hits = json.loads(printed.stdout)["hits"]
    assert [h["chunk_id"] for h in served["hits"]] == [h["chunk_id"] for h in cli_hits]
    scores = zip(served["hits"], cli_hits, strict=True)
    assert all(a["score"] == pytest.approx(b["score"], rel=1e-4) for a, b in scores)


def test_concurrent_searches_and_answers_all_succeed(client: httpx.Client) -> None:
    """Requests share one open collection and one embedder across server threads."""
    questions = ["Who won Super Bowl 50?", "How large is the Amazon rainforest?"] * 6

    def one(n: int) -> tuple[int, str]:
        with httpx.Client(base_url=str(client.base_url), timeout=300) as http:
            if n % 2:
                found = http.post(
                    "/v1/collections/demo/search", json={"query": questions[n], "top_k": 3}
                )
                return found.status_code, found.json()["hits"][0]["document"]
            asked = http.post("/v1/collections/demo/ask", json={"question": questions[n]})
            return asked.status_code, asked.json()["citations"][0]["document"]

    with ThreadPoolExecutor(max_workers=len(questions)) as pool:
        results = list(pool.map(one, range(len(questions))))
    assert all(status == 200 for status, _ in results)
    expected = ["Super_Bowl_50.md", "Amazon_rainforest.md"] * 6
    assert [Path(document).name for _, document in results] == expected


def test_a_collection_made_again_is_served_afresh(api: Running, client: httpx.Client) -> None:
    """The service keeps collections open between requests; one deleted and made again behind
    its back (by `rag collections delete`, or another replica) is opened anew, never served
    from the old files."""
    for article in ("Normans.md", "Oxygen.md"):
        assert client.post("/v1/collections", json={"name": "again"}).status_code == 201
        files = [("files", (article, (DEMO / article).read_bytes(), "text/markdown"))]
        job = client.post("/v1/collections/again/documents", files=files).json()
        assert wait_job(client, job["id"])["state"] == "done"
        hits = client.post("/v1/collections/again/search", json={"query": "history"}).json()
        assert hits["hits"] and all(h["document"].endswith(article) for h in hits["hits"])
        delete_collection(api.settings.index_dir, "again")  # not through this server


def test_the_openapi_docs_offer_the_api_key(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
