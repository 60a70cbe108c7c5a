"""`/ready` on a real server over a real collection: each way the service can lose what it
serves (the index folder, a collection's files, the accounts file) turns it to 503 with one line
a problem, and putting the file back turns it to 200 again, with nothing created or repaired by
the check itself."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.accounts import ACCOUNTS_FILE, Accounts
from rag.collection import STORE
from rag.manifest import MANIFEST
from rag.server import create_app
from tests.server.conftest import ingest_demo, service_settings, serving

# No request here reaches an LLM: readiness never asks one.
NO_LLM = "http://127.0.0.1:9/v1"


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory, minilm: Any) -> Path:
    folder = tmp_path_factory.mktemp("ready") / "indexes"
    ingest_demo(service_settings(folder, NO_LLM), minilm, "demo")
    Accounts(folder / ACCOUNTS_FILE).add_user("ana", admin=True)
    return folder


@pytest.fixture(scope="module")
def client(index_dir: Path, minilm: Any) -> Iterator[httpx.Client]:
    app = create_app(service_settings(index_dir, NO_LLM, accounts=True), embedder=minilm)
    with serving(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        yield http


def unavailable(client: httpx.Client) -> list[str]:
    """The problems of a 503 answer, each checked to be one line."""
    response = client.get("/ready")
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["status"] == "unavailable" and body["problems"]
    assert all(isinstance(p, str) and "\n" not in p for p in body["problems"])
    return list(body["problems"])


def ready(client: httpx.Client) -> None:
    response = client.get("/ready")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "accounts": True}


def broken(client: httpx.Client, break_it: Callable[[], None], mend: Callable[[], None]) -> str:
    """Break something, read the one problem /ready reports, mend it, and see 200 again."""
    ready(client)
    break_it()
    try:
        problems = unavailable(client)
    finally:
        mend()
    ready(client)
    assert len(problems) == 1, problems
    return problems[0]


def test_a_collection_store_that_is_missing(client: httpx.Client, index_dir: Path) -> None:
    store = index_dir / "demo" / STORE
    aside = store.with_name("moved-away")
    problem = broken(client, lambda: store.rename(aside), lambda: aside.rename(store))
    assert problem.startswith("collection 'demo' cannot be opened: ")
    assert f"{store} is damaged: the file is missing" in problem


def test_a_collection_store_that_is_not_a_database(client: httpx.Client, index_dir: Path) -> None:
    store = index_dir / "demo" / STORE
    original = store.read_bytes()

    def scribble() -> None:
        store.write_bytes(b"this is no sqlite file" * 100 + original[2200:])

    problem = broken(client, scribble, lambda: store.write_bytes(original))
    assert problem.startswith("collection 'demo' cannot be opened: ")
    assert f"{store} is damaged" in problem


def test_a_manifest_that_is_not_json(client: httpx.Client, index_dir: Path) -> None:
    manifest = index_dir / "demo" / MANIFEST
    original = manifest.read_bytes()
    problem = broken(
        client, lambda: manifest.write_bytes(b"{not json"), lambda: manifest.write_bytes(original)
    )
    assert problem.startswith("collection 'demo' cannot be opened: ")
    assert str(manifest) in problem


def test_the_index_folder_gone(client: httpx.Client, index_dir: Path) -> None:
    """As when the shared storage is unmounted under a replica."""
    aside = index_dir.with_name("unmounted")
    problem = broken(client, lambda: index_dir.rename(aside), lambda: aside.rename(index_dir))
    assert problem == f"index folder {index_dir} is missing"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes whatever the permission bits say")
def test_an_index_folder_this_server_cannot_write(client: httpx.Client, index_dir: Path) -> None:
    problem = broken(client, lambda: index_dir.chmod(0o555), lambda: index_dir.chmod(0o755))
    assert problem == f"index folder {index_dir} cannot be read and written: Permission denied"


def test_an_accounts_file_that_is_not_a_database(client: httpx.Client, index_dir: Path) -> None:
    accounts = index_dir / ACCOUNTS_FILE
    original = accounts.read_bytes()
    problem = broken(
        client, lambda: accounts.write_bytes(b"x" * 4096), lambda: accounts.write_bytes(original)
    )
    assert problem == f"accounts file {accounts} cannot be read: file is not a database"


def test_an_accounts_file_removed_is_not_made_again(client: httpx.Client, index_dir: Path) -> None:
    """Made again empty, it would leave the server "ready" and every key refused."""
    accounts = index_dir / ACCOUNTS_FILE
    aside = accounts.with_name("accounts-moved")

    def remove() -> None:
        shutil.move(accounts, aside)

    def put_back() -> None:
        assert not accounts.exists(), "the readiness check made the accounts file again"
        shutil.move(aside, accounts)

    problem = broken(client, remove, put_back)
    assert problem == f"accounts file {accounts} is missing"
