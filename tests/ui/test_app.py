"""The Streamlit chat, driven by AppTest over a real collection (real MiniLM, FAISS, SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ingest.pipeline import IngestJob
from rag.errors import CollectionError
from rag.settings import Settings
from rag.types import Chunk, Hit, SearchResult
from tests.conftest import write_squad_docs
from ui.app import (
    INTRO,
    default_collection,
    format_hit,
    no_collections_message,
    plain,
    reply_for,
)

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"
# Model loading and the first search take seconds on 2 cores; AppTest's default is 3 s.
TIMEOUT = 60
TITLES = ("Super_Bowl_50", "Warsaw", "Normans", "Nikola_Tesla", "Oxygen")
HOSTILE = (
    "# Quince preserves\n\n"
    "Quince marmalade from Zanzibar: <script>alert(1)</script> is **bold** and _not_ [a link](x).\n"
)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, squad_paragraphs, minilm) -> Path:
    """A `squad` collection: the first paragraph of five articles, plus one hostile document."""
    root = tmp_path_factory.mktemp("ui-app")
    firsts = [next(p for p in squad_paragraphs if p["title"] == title) for title in TITLES]
    docs = write_squad_docs(root / "docs", firsts, len(firsts))  # p000.md is Super Bowl 50
    hostile = root / "docs" / "hostile.md"
    hostile.write_text(HOSTILE)
    settings = Settings.load(index_dir=root / "indexes", progress=False, device="cpu")
    report = IngestJob(settings, embedder=minilm).run_files("squad", [*docs, hostile])
    assert report.ingested == len(TITLES) + 1, report.failed
    return root / "indexes"


@pytest.fixture
def app(index_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("RAG_INDEX_DIR", str(index_dir))
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def ask(app: AppTest, question: str) -> AppTest:
    app.chat_input[0].set_value(question).run()
    assert not app.exception
    return app


def test_start_page_shows_collection_and_status(app: AppTest) -> None:
    app.run()
    assert not app.exception and not app.error
    assert app.title[0].value == "rag — ask your documents"
    assert app.selectbox[0].value == "squad"  # no `demo` here: the first collection
    assert app.slider[0].value == 5 and app.radio[0].value == "hybrid" and app.toggle[0].value
    status = [caption.value for caption in app.sidebar.caption]
    assert status[0] == f"6 documents · {chunks_in(app)} chunks · embedder " + plain(
        "sentence-transformers/all-MiniLM-L6-v2"
    )
    # No cross-encoder is on this machine, and the status says so.
    assert any(value.startswith(plain("reranking is off:")) for value in status[1:])


def chunks_in(app: AppTest) -> int:
    return int(app.sidebar.caption[0].value.split(" chunks")[0].rsplit(" ", 1)[-1])


def test_question_gets_numbered_sources(app: AppTest) -> None:
    ask(app.run(), "Which NFL team won Super Bowl 50?")
    user, reply = app.chat_message[-2], app.chat_message[-1]
    assert user.name == "user" and user.text[0].value == "Which NFL team won Super Bowl 50?"
    assert reply.name == "assistant"
    assert reply.markdown[0].value == INTRO
    texts = [element.value for element in reply.text]
    # Each source is a heading line (with the full path as its tooltip) and the passage.
    assert texts[0].startswith("[1] p000.md · page 1 · ") and len(texts) == 2 * 5
    assert reply.text[0].help.endswith("docs/p000.md")
    assert "Denver Broncos" in texts[1]
    # The reranker notice is in the sidebar already, so the reply does not repeat it.
    assert not reply.caption


def test_top_k_and_mode_come_from_the_sidebar(app: AppTest) -> None:
    app.run()
    app.slider[0].set_value(2)
    app.radio[0].set_value("dense")
    ask(app.run(), "Which NFL team won Super Bowl 50?")
    texts = [element.value for element in app.chat_message[-1].text]
    assert len(texts) == 4 and "dense score" in texts[0]


def test_document_text_is_shown_literally(app: AppTest) -> None:
    ask(app.run(), "quince marmalade from Zanzibar")
    reply = app.chat_message[-1]
    assert reply.text[0].value.startswith("[1] hostile.md")
    passage = reply.text[1].value
    assert "<script>alert(1)</script>" in passage and "**bold**" in passage
    assert "[a link](x)" in passage
    # Nothing of the document went through Markdown or HTML.
    assert not [m for m in app.markdown if "alert" in m.value or "bold" in m.value]
    assert not app.get("html")


def test_history_is_kept_across_questions(app: AppTest) -> None:
    ask(app.run(), "Which NFL team won Super Bowl 50?")
    ask(app, "quince marmalade from Zanzibar")
    assert [message.name for message in app.chat_message] == ["user", "assistant"] * 2
    assert app.session_state["history"][0]["text"] == "Which NFL team won Super Bowl 50?"


def test_empty_question_is_one_error_and_the_app_stays_usable(app: AppTest) -> None:
    ask(app.run(), "   ")
    assert [error.value for error in app.error] == ["the query is empty"]
    ask(app, "Which NFL team won Super Bowl 50?")
    assert app.chat_message[-1].text[0].value.startswith("[1] p000.md")


def test_unknown_collection_is_one_error(app: AppTest) -> None:
    app.query_params["collection"] = "nope"
    app.run()
    assert not app.exception
    assert [error.value for error in app.error] == [
        plain("no collection named 'nope' (collections: squad)")
    ]
    assert app.selectbox[0].value == "squad"  # falls back to a collection that exists


def test_bad_setting_is_one_error(app: AppTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_SEARCH_MODE", "fuzzy")
    app.run()
    assert not app.exception
    assert len(app.error) == 1
    assert app.error[0].value.startswith(plain("invalid settings: search_mode"))


def test_no_collections_says_how_to_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "empty"))
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not app.exception
    assert [error.value for error in app.error] == [no_collections_message(tmp_path / "empty")]
    assert "`make run`" in app.error[0].value and "`rag ingest PATH -c NAME`" in app.error[0].value
    assert app.chat_input[0].disabled


# -- the plain functions -----------------------------------------------------------------------


def make_hit(source: str, text: str = "some text", score: float = 0.5) -> Hit:
    chunk = Chunk(id="c", document_id="d", source=source, page=3, start=0, end=9, text=text)
    return Hit(chunk=chunk, score=score, stage="dense")


def test_format_hit_names_the_file_and_keeps_the_path() -> None:
    view = format_hit(2, make_hit("/data/reports/annual 2024.pdf", score=0.81234))
    assert view.name == "annual 2024.pdf" and view.path == "/data/reports/annual 2024.pdf"
    assert view.heading == "[2] annual 2024.pdf · page 3 · dense score 0.812"
    assert view.text == "some text"


def test_reply_numbers_sources_and_drops_notices_already_shown() -> None:
    result = SearchResult(
        "q", (make_hit("a.md"), make_hit("b.md")), ("reranking is off: x", "other")
    )
    reply = reply_for(result, shown=("reranking is off: x",))
    assert [(s.number, s.name) for s in reply["sources"]] == [(1, "a.md"), (2, "b.md")]
    assert reply["notices"] == ["other"]


def test_default_collection() -> None:
    assert default_collection(["a", "demo", "z"]) == "demo"
    assert default_collection(["b", "a"]) == "b"
    assert default_collection([]) is None
    assert default_collection(["a", "b"], requested="b") == "b"
    with pytest.raises(CollectionError, match=r"no collection named 'c' \(collections: a, b\)"):
        default_collection(["a", "b"], requested="c")


def test_plain_escapes_markdown() -> None:
    assert plain("a_b *c* <x> `d` $1") == r"a\_b \*c\* \<x\> \`d\` \$1"
