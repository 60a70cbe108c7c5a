"""The chat with accounts on (AppTest, real collections and keys): it asks for an API key, shows
only the collections that user may read, and lets uploads go only where they may write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from ingest.pipeline import IngestJob
from rag.accounts import ACCOUNTS_FILE, Accounts
from rag.collection import Collection
from rag.settings import Settings
from tests.conftest import REPO
from tests.servers.openai_compat import OpenAICompatServer
from tests.ui.conftest import APP, llm_env
from ui.app import SIGN_IN
from ui.messages import plain

TIMEOUT = 60
DEMO = REPO / "ui" / "demo_corpus"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory, minilm: Any) -> tuple[Path, dict[str, str]]:
    """Collections `anas` (ana's) and `admins` (made with the CLI's job: nobody owns it)."""
    index_dir = tmp_path_factory.mktemp("chat-accounts") / "indexes"
    settings = Settings.load(index_dir=index_dir, progress=False, device="cpu")
    job = IngestJob(settings, embedder=minilm)
    job.run_files("anas", [DEMO / "Oxygen.md"])
    job.run_files("admins", [DEMO / "Warsaw.md"])
    accounts = Accounts(index_dir / ACCOUNTS_FILE)
    keys = {name: accounts.add_user(name) for name in ("ana", "ben")}
    keys["root"] = accounts.add_user("root", admin=True)
    accounts.set_owner("anas", "ana")
    return index_dir, keys


@pytest.fixture
def app(
    keyed: tuple[Path, dict[str, str]], llm_server: OpenAICompatServer, monkeypatch: Any
) -> AppTest:
    monkeypatch.setenv("RAG_INDEX_DIR", str(keyed[0]))
    monkeypatch.setenv("RAG_ACCOUNTS", "true")
    for name, value in llm_env(llm_server.base_url).items():
        monkeypatch.setenv(name, value)
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def sign_in(app: AppTest, key: str) -> AppTest:
    app.run()
    app.sidebar.text_input(key="api_key").set_value(key).run()
    assert not app.exception
    return app


def collections_shown(app: AppTest) -> list[str]:
    pickers = [box for box in app.sidebar.selectbox if box.label == "Collection"]
    return list(pickers[0].options) if pickers else []


def test_without_a_key_nothing_is_shown(app: AppTest) -> None:
    app.run()
    assert not app.exception
    assert [m.value for m in app.error] == [SIGN_IN]
    assert collections_shown(app) == [] and app.chat_input[0].disabled
    sign_in(app, "rag-0123456789ab.wrong")
    assert "That API key is not valid." in [e.value for e in app.sidebar.error]
    assert collections_shown(app) == [] and app.chat_input[0].disabled


def test_each_user_sees_only_what_they_may_read(
    app: AppTest, keyed: tuple[Path, dict[str, str]]
) -> None:
    _, keys = keyed
    assert collections_shown(sign_in(app, keys["ana"])) == ["anas"]
    assert collections_shown(sign_in(app, keys["root"])) == ["admins", "anas"]
    ben = sign_in(app, keys["ben"])
    assert collections_shown(ben) == [] and ben.chat_input[0].disabled


def test_a_collection_asked_for_by_name_stays_hidden(
    app: AppTest, keyed: tuple[Path, dict[str, str]]
) -> None:
    _, keys = keyed
    app.query_params["collection"] = "admins"
    ana = sign_in(app, keys["ana"])
    assert "no collection named 'admins' (collections: anas)" in ana.error[0].value.replace(
        "\\", ""
    )
    assert collections_shown(ana) == ["anas"]


def test_answers_come_from_the_users_collection(
    app: AppTest, keyed: tuple[Path, dict[str, str]], llm_server: OpenAICompatServer
) -> None:
    _, keys = keyed
    ana = sign_in(app, keys["ana"])
    ana.chat_input[0].set_value("What is the atomic number of oxygen?").run()
    assert not ana.exception
    sent = llm_server.chat_requests()[-1].body["messages"][-1]["content"]
    assert "Oxygen.md" in sent and "Warsaw.md" not in sent


def upload(app: AppTest, collection: str, name: str, data: bytes) -> AppTest:
    target = next(box for box in app.sidebar.text_input if box.label == "Into collection")
    target.set_value(collection)
    app.sidebar.get("file_uploader")[0].set_value((name, data, "text/markdown"))
    app.run()
    app.sidebar.button[0].click().run()
    assert not app.exception
    return app


def test_uploads_go_only_where_the_user_may_write(
    app: AppTest, keyed: tuple[Path, dict[str, str]]
) -> None:
    index_dir, keys = keyed
    accounts = Accounts(index_dir / ACCOUNTS_FILE)
    with Collection.open(index_dir, "admins") as admins:
        counts = admins.store.counts()
    ben = upload(sign_in(app, keys["ben"]), "admins", "mine.md", b"# Mine\n\nben's notes\n")
    refusal = plain("collection 'admins' is not yours to add to; pick another name")
    assert ben.error[-1].value == refusal
    with Collection.open(index_dir, "admins") as admins:
        assert admins.store.counts() == counts
    assert not (index_dir / ".uploads" / "admins").exists()

    ben = upload(ben, "bens", "mine.md", (DEMO / "Normans.md").read_bytes())
    assert ben.sidebar.success[0].value.startswith(plain("bens: 1 ingested (1 new"))
    assert accounts.owner("bens") == "ben"
    assert collections_shown(ben) == ["bens"]
    assert collections_shown(sign_in(app, keys["ana"])) == ["anas"]
