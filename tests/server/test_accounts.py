"""Accounts on a real server: API keys (argon2 hashes at rest), owners, shares and admins. No
request reads or writes a collection its caller may not; another user's collection is answered
as one that does not exist, in every endpoint."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from rag.accounts import ACCOUNTS_FILE, Accounts
from rag.server import create_app
from tests.conftest import REPO, wait_for
from tests.server.conftest import DEMO, Running, ingest_demo, service_settings, serving
from tests.servers.openai_compat import OpenAICompatServer

RAG = [sys.executable, "-m", "rag.cli"]
USERS_ADD = [*RAG, "users", "add"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory, server: OpenAICompatServer) -> dict[str, str]:
    """Users made as an operator makes them: with `rag users add` (the admin) and the library."""
    index_dir = tmp_path_factory.mktemp("accounts") / "indexes"
    made = subprocess.run(
        [*USERS_ADD, "root", "--admin", "--index-dir", str(index_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    accounts = Accounts(index_dir / ACCOUNTS_FILE)
    return {
        "root": made.stdout.strip(),
        "ana": accounts.add_user("ana"),
        "ben": accounts.add_user("ben"),
        "index_dir": str(index_dir),
    }


@pytest.fixture(scope="module")
def api(keys: dict[str, str], minilm: Any, server: OpenAICompatServer) -> Iterator[Running]:
    settings = service_settings(Path(keys["index_dir"]), server.base_url, accounts=True)
    ingest_demo(settings, minilm, "admins")  # made with the CLI's job: nobody owns it
    with serving(create_app(settings, embedder=minilm)) as url:
        yield Running(url, settings, None)


def client(api: Running, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=api.url, headers=headers, timeout=120)


@pytest.fixture(scope="module")
def anas(api: Running, keys: dict[str, str]) -> str:
    """Collection `anas`, made and filled by ana through the API."""
    with client(api, keys["ana"]) as ana:
        assert ana.post("/v1/collections", json={"name": "anas"}).status_code == 201
        files = [("files", ("Oxygen.md", (DEMO / "Oxygen.md").read_bytes(), "text/markdown"))]
        job = ana.post("/v1/collections/anas/documents", files=files).json()
        wait_for(
            lambda: ana.get(f"/v1/jobs/{job['id']}").json()["state"] == "done",
            300,
            "ana's ingest did not finish",
            poll_s=0.2,
        )
    return "anas"


def message(response: httpx.Response) -> str:
    return str(response.json()["error"]["message"])


READS = [
    ("GET", "/v1/collections/{c}", None),
    ("GET", "/v1/collections/{c}/documents", None),
    ("POST", "/v1/collections/{c}/search", {"query": "oxygen"}),
    ("POST", "/v1/collections/{c}/ask", {"question": "What is oxygen?"}),
    ("POST", "/v1/collections/{c}/ask", {"question": "What is oxygen?", "stream": True}),
    ("GET", "/v1/models/{c}", None),
    (
        "POST",
        "/v1/chat/completions",
        {"model": "{c}", "messages": [{"role": "user", "content": "What is oxygen?"}]},
    ),
]
WRITES = [
    ("DELETE", "/v1/collections/{c}", None),
    ("DELETE", "/v1/collections/{c}/documents/" + "0" * 64, None),
    ("PUT", "/v1/collections/{c}/shares/ben", None),
]


def call(http: httpx.Client, method: str, path: str, body: Any, name: str) -> httpx.Response:
    path = path.replace("{c}", name)
    if isinstance(body, dict) and body.get("model") == "{c}":
        body = {**body, "model": name}
    return http.request(method, path, json=body)


def test_the_key_is_stored_only_as_an_argon2_hash(api: Running, keys: dict[str, str]) -> None:
    with sqlite3.connect(api.settings.index_dir / ACCOUNTS_FILE) as db:
        hashes = [row[0] for row in db.execute("SELECT hash FROM keys")]
        dump = "\n".join(db.iterdump())
    assert len(hashes) == 3 and all(h.startswith("$argon2id$") for h in hashes)
    for name in ("root", "ana", "ben"):
        assert keys[name].startswith("rag-") and keys[name] not in dump


@pytest.mark.parametrize(("method", "path", "body"), [*READS, *WRITES])
def test_no_key_or_a_wrong_key_is_401(
    api: Running, anas: str, method: str, path: str, body: Any
) -> None:
    for key in (None, "rag-000000000000.not-a-key", "nonsense"):
        with client(api, key) as http:
            response = call(http, method, path, body, anas)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert message(response) in (
            "an API key is required: send 'Authorization: Bearer <key>'",
            "the API key is not valid",
        )
    with client(api, None) as http:
        assert http.get("/v1/collections").status_code == 401
        assert http.get("/v1/models").status_code == 401
        assert http.get("/health").status_code == 200  # liveness needs no key


@pytest.mark.parametrize(("method", "path", "body"), [*READS, *WRITES])
def test_another_users_collection_is_404_everywhere(
    api: Running, keys: dict[str, str], anas: str, method: str, path: str, body: Any
) -> None:
    with client(api, keys["ben"]) as ben:
        response = call(ben, method, path, body, anas)
        missing = call(ben, method, path, body, "no-such-collection")
    assert response.status_code == 404, response.text
    assert message(response) == "no collection named 'anas'"
    assert message(missing) == "no collection named 'no-such-collection'"  # the same words


def test_lists_show_only_what_the_caller_may_read(
    api: Running, keys: dict[str, str], anas: str
) -> None:
    with client(api, keys["ben"]) as ben:
        assert ben.get("/v1/collections").json() == {"collections": []}
        assert ben.get("/v1/models").json() == {"object": "list", "data": []}
        assert ben.get("/v1/jobs").json() == {"jobs": []}
        upload = ben.post(
            "/v1/collections/anas/documents",
            files=[("files", ("x.md", b"# x\n\nben was here\n", "text/markdown"))],
        )
        assert upload.status_code == 404
    with client(api, keys["ana"]) as ana:
        assert ana.get("/v1/collections").json() == {"collections": ["anas"]}
        assert [m["id"] for m in ana.get("/v1/models").json()["data"]] == ["anas"]
        assert len(ana.get("/v1/jobs").json()["jobs"]) == 1
        # The collection nobody owns (made with the CLI) is the admins' alone.
        assert ana.get("/v1/collections/admins").status_code == 404
    with client(api, keys["root"]) as root:
        assert root.get("/v1/collections").json() == {"collections": ["admins", "anas"]}
        info = root.get("/v1/collections/anas").json()
        assert info["owner"] == "ana" and info["shared_with"] == []
        assert root.post("/v1/collections/admins/search", json={"query": "x"}).status_code == 200


def test_a_share_lets_a_user_read_but_not_write(
    api: Running, keys: dict[str, str], anas: str
) -> None:
    with client(api, keys["ana"]) as ana:
        shared = ana.put("/v1/collections/anas/shares/ben")
        assert shared.json() == {"collection": "anas", "shared_with": ["ben"]}
    try:
        with client(api, keys["ben"]) as ben:
            assert ben.get("/v1/collections").json() == {"collections": ["anas"]}
            hits = ben.post("/v1/collections/anas/search", json={"query": "oxygen"}).json()
            assert hits["hits"][0]["document"].endswith("Oxygen.md")
            answer = ben.post("/v1/collections/anas/ask", json={"question": "What is oxygen?"})
            assert answer.status_code == 200 and answer.json()["citations"]
            for method, path, body in WRITES:
                refused = call(ben, method, path, body, anas)
                assert refused.status_code == 403, (path, refused.text)
                assert message(refused) == "collection 'anas' is shared with you read-only"
            upload = ben.post(
                "/v1/collections/anas/documents",
                files=[("files", ("x.md", b"# x\n\nben was here\n", "text/markdown"))],
            )
            assert upload.status_code == 403
    finally:
        with client(api, keys["ana"]) as ana:
            ana.delete("/v1/collections/anas/shares/ben")
    with client(api, keys["ben"]) as ben:
        assert ben.get("/v1/collections/anas").status_code == 404


def test_search_filters_cannot_reach_another_users_documents(
    api: Running, keys: dict[str, str], anas: str
) -> None:
    """A filter naming a document of another collection finds nothing here: scope is the
    collection the caller may read, and the filter only narrows it."""
    with client(api, keys["ana"]) as ana:
        scoped = ana.post(
            "/v1/collections/anas/search",
            json={"query": "Super Bowl", "where": {"document": "Super_Bowl_50.md"}},
        ).json()
    assert scoped["hits"] == []
    assert scoped["notices"][0] == "no chunk matches --where document=Super_Bowl_50.md"


def test_users_add_refuses_a_bad_or_taken_name(api: Running) -> None:
    for name, error in (
        ("ana", "Error: user 'ana' already exists"),
        ("../x", "Error: invalid user name '../x'"),
    ):
        made = subprocess.run(
            [*USERS_ADD, name, "--index-dir", str(api.settings.index_dir)],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert made.returncode == 1 and made.stderr.startswith(error), made.stderr


def test_the_openai_sdk_with_a_users_key(api: Running, keys: dict[str, str], anas: str) -> None:
    ana = OpenAI(base_url=f"{api.url}/v1", api_key=keys["ana"], max_retries=0)
    assert [model.id for model in ana.models.list()] == ["anas"]
    reply = ana.chat.completions.create(
        model="anas", messages=[{"role": "user", "content": "What is oxygen?"}], stream=True
    )
    assert "Sources:" in "".join(c.choices[0].delta.content or "" for c in reply if c.choices)
    ben = OpenAI(base_url=f"{api.url}/v1", api_key=keys["ben"], max_retries=0)
    with pytest.raises(openai.NotFoundError, match="no collection named 'anas'"):
        ben.chat.completions.create(model="anas", messages=[{"role": "user", "content": "Hi?"}])
    stranger = OpenAI(base_url=f"{api.url}/v1", api_key="rag-1234.guess", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="the API key is not valid"):
        stranger.models.list()


def test_a_name_made_again_does_not_inherit_shares(api: Running, keys: dict[str, str]) -> None:
    """A collection deleted with the CLI and made again by someone else starts with no shares."""
    index_dir = api.settings.index_dir
    with client(api, keys["ana"]) as ana:
        assert ana.post("/v1/collections", json={"name": "recycled"}).status_code == 201
        assert ana.put("/v1/collections/recycled/shares/ben").status_code == 200
    deleted = subprocess.run(
        [*RAG, "collections", "delete", "recycled", "--yes", "--index-dir", str(index_dir)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert deleted.returncode == 0, deleted.stderr
    with client(api, keys["root"]) as root:
        made = root.post("/v1/collections", json={"name": "recycled"}).json()
        assert made["owner"] == "root" and made["shared_with"] == []
    with client(api, keys["ben"]) as ben, client(api, keys["ana"]) as ana:
        assert ben.get("/v1/collections/recycled").status_code == 404
        assert ana.get("/v1/collections/recycled").status_code == 404
