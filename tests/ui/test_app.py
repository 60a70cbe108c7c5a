"""The Streamlit chat, driven by AppTest over a real collection (real MiniLM, FAISS, SQLite) and a
real OpenAI-compatible LLM server on loopback."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rag.collection import Collection
from rag.errors import CollectionError
from rag.generation import LLM_BACKENDS, Message
from rag.pipeline import REFUSAL_TEXT
from rag.settings import Settings
from rag.types import Answer, Chunk, Citation, Quote, SentenceCheck
from tests.servers.openai_compat import OpenAICompatServer
from tests.ui.conftest import APP, SMALL_PDF, closed_port, llm_env
from ui.app import UNSUPPORTED, default_collection, no_collections_message
from ui.evidence import best_sentence
from ui.messages import (
    ErrorMessage,
    UserMessage,
    conversation,
    format_citation,
    percent,
    plain,
    reply_for,
)

# Model loading and the first search take seconds on 2 cores; AppTest's default is 3 s.
TIMEOUT = 60
SUPER_BOWL = "Which NFL team won Super Bowl 50?"


@pytest.fixture
def app(index_dir: Path, llm_server: OpenAICompatServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RAG_INDEX_DIR", str(index_dir))
    for name, value in llm_env(llm_server.base_url).items():
        monkeypatch.setenv(name, value)
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def ask(app: AppTest, question: str) -> AppTest:
    app.chat_input[0].set_value(question).run()
    assert not app.exception
    return app


def requests_since(server: OpenAICompatServer, before: int) -> list[dict]:
    return [request.body for request in server.chat_requests()[before:]]


def test_start_page_shows_collection_backend_and_settings(app: AppTest) -> None:
    app.run()
    assert not app.exception and not app.error
    assert app.title[0].value == "rag — ask your documents"
    collection, backend = app.selectbox
    assert collection.value == "squad"  # no `demo` here: the first collection
    # The backend choices are the registry's keys; the one in use comes from the settings.
    assert backend.options == list(LLM_BACKENDS) and backend.value == "openai"
    assert app.slider[0].value == 5 and app.radio[0].value == "hybrid" and app.toggle[0].value
    status = [caption.value for caption in app.sidebar.caption]
    assert status[0].startswith("7 documents · ")
    # No cross-encoder is on this machine, and the status says so.
    assert any(value.startswith(plain("reranking is off:")) for value in status[1:])
    assert any(
        value.startswith("LLM in use: " + plain("openai:test/echo@http://127.0.0.1:"))
        for value in status
    )
    assert app.chat_input[0].placeholder == "Ask a question about squad"


def test_answer_is_the_llms_text_with_its_cited_sources(
    app: AppTest, llm_server: OpenAICompatServer
) -> None:
    before = len(llm_server.chat_requests())
    ask(app.run(), SUPER_BOWL)
    user, reply = app.chat_message[-2], app.chat_message[-1]
    assert user.name == "user" and user.text[0].value == SUPER_BOWL
    assert reply.name == "assistant" and not reply.error
    texts = [element.value for element in reply.text]
    # The answer first (as text), then each cited source: heading, then the quoted passage.
    assert texts[0] == "I read sources [1], [2], [3], [4], [5]. The answer is in source [1]."
    assert texts[1] == "[1] p000.md · page 1 · match 1 of 5"
    assert reply.text[1].help.endswith(plain("p000.md"))
    assert "Denver Broncos" in texts[2]
    assert [t for t in texts if t.startswith("[")] == [
        t for t in texts if t[:3] in {"[1]", "[2]", "[3]", "[4]", "[5]"}
    ]
    # The echo model's sentences say nothing the passages support: the verifier flags them.
    assert reply.warning[0].value.startswith(UNSUPPORTED)
    assert plain("The answer is in source [1].") in reply.warning[0].value
    # One streamed request with the five numbered sources and the question.
    (request,) = requests_since(llm_server, before)
    assert request["stream"] is True and request["model"] == "test/echo"
    assert request["messages"][-1]["content"].endswith(f"Question: {SUPER_BOWL}")
    # The reranker notice is in the sidebar already, so the reply does not repeat it.
    assert not [c for c in reply.caption if "rerank" in c.value]


def test_answer_mode_is_picked_in_the_sidebar_and_reaches_the_answer(
    app: AppTest, llm_server: OpenAICompatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_ANSWER_MODE", "auto")
    app.run()
    (mode,) = app.sidebar.segmented_control
    assert mode.label == "Answer mode" and mode.value == "auto"  # from the settings
    assert mode.options == ["auto", "small reader only", "LLM only"]
    mode.set_value("llm")
    before = len(llm_server.chat_requests())
    ask(app.run(), SUPER_BOWL)
    # LLM only: the small reader did not run, so the reply names no confidence of its.
    reply = app.chat_message[-1]
    assert reply.caption[0].value == plain(
        "Written by the LLM from the sources · 0 of 2 sentences backed by the sources they cite"
    )
    assert len(requests_since(llm_server, before)) == 1


def test_retrieval_settings_reach_the_answer(app: AppTest, llm_server: OpenAICompatServer) -> None:
    app.run()
    app.slider[0].set_value(2)
    app.radio[0].set_value("dense")
    before = len(llm_server.chat_requests())
    ask(app.run(), SUPER_BOWL)
    (request,) = requests_since(llm_server, before)
    prompt = request["messages"][-1]["content"]
    assert "[2] (from " in prompt and "[3] (from " not in prompt
    assert app.chat_message[-1].text[0].value.startswith("I read sources [1], [2].")


def test_picked_documents_scope_the_answer(
    app: AppTest, index_dir: Path, llm_server: OpenAICompatServer
) -> None:
    app.run()
    (picker,) = app.sidebar.multiselect
    assert picker.label == "Only these documents" and "p000.md" in picker.options
    with Collection.open(index_dir, "squad") as collection:
        sources = [d.source for d in collection.store.documents()]
    # Scoped to the Tesla and the oxygen paragraphs, a question finds only those.
    picked = [source for source in sources if source.endswith(("p003.md", "p004.md"))]
    picker.set_value(picked)
    before = len(llm_server.chat_requests())
    ask(app.run(), "What is Nikola Tesla best known for?")
    (request,) = requests_since(llm_server, before)
    prompt = request["messages"][-1]["content"]
    assert "p003.md" in prompt and "[3] (from " not in prompt
    assert not any(f"p00{n}.md" in prompt for n in (0, 1, 2))
    # Scoped away from the Super Bowl paragraph, its question does not find it.
    ask(app, SUPER_BOWL)
    assert "p000.md" not in str([t.value for t in app.chat_message[-1].text])


def test_document_text_is_shown_literally(app: AppTest) -> None:
    ask(app.run(), "quince marmalade from Zanzibar")
    reply = app.chat_message[-1]
    assert reply.text[1].value.startswith("[1] hostile.md")
    passage = reply.text[2].value
    assert "<script>alert(1)</script>" in passage and "**bold**" in passage
    assert "[a link](x)" in passage
    # Nothing of the document went through Markdown or HTML.
    assert not [m for m in app.markdown if "alert" in m.value or "bold" in m.value]
    assert not app.get("html")


def test_unrelated_question_is_refused_without_asking_the_llm(
    app: AppTest, llm_server: OpenAICompatServer
) -> None:
    before = len(llm_server.chat_requests())
    ask(app.run(), "How do I change a bicycle tyre?")
    reply = app.chat_message[-1]
    assert [info.value for info in reply.info] == [plain(REFUSAL_TEXT)]
    assert not reply.error and not reply.warning
    assert reply.expander[0].label.startswith("Closest passages (")
    assert requests_since(llm_server, before) == []  # too little evidence to ask the LLM


def test_follow_up_questions_carry_the_history(
    app: AppTest, llm_server: OpenAICompatServer
) -> None:
    ask(app.run(), SUPER_BOWL)
    before = len(llm_server.chat_requests())
    ask(app, "And who did they beat?")
    assert [message.name for message in app.chat_message] == ["user", "assistant"] * 2
    history = app.session_state["history"]
    assert [m.text for m in history if isinstance(m, UserMessage)] == [
        SUPER_BOWL,
        "And who did they beat?",
    ]
    # The follow-up was rewritten with the conversation (question and answer) before the search.
    rewrite = requests_since(llm_server, before)[0]["messages"][-1]["content"]
    assert SUPER_BOWL in rewrite and "The answer is in source [1]." in rewrite
    assert "And who did they beat?" in rewrite


def test_endpoint_down_is_one_error_and_the_app_stays_usable(
    app: AppTest, llm_server: OpenAICompatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = f"http://127.0.0.1:{closed_port()}/v1"
    monkeypatch.setenv("RAG_LLM_BASE_URL", down)
    monkeypatch.setenv("RAG_LLM_MAX_RETRIES", "0")
    ask(app.run(), SUPER_BOWL)
    assert [error.value for error in app.error] == [
        plain(f"LLM endpoint {down} is unreachable: connection refused")
    ]
    assert app.chat_message[-1].name == "assistant" and not app.chat_message[-1].text
    monkeypatch.setenv("RAG_LLM_BASE_URL", llm_server.base_url)
    ask(app, SUPER_BOWL)
    assert app.chat_message[-1].text[0].value.startswith("I read sources [1]")
    assert len(app.error) == 1  # the earlier error stays in the history, nothing new


def test_llm_that_cannot_be_made_is_one_error(
    app: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAG_LLM_MODEL")
    app.run()
    app.selectbox[1].set_value("transformers").run()  # no llm_model set for it
    assert any(
        caption.value.startswith("LLM unavailable: " + plain("llm_model must be set"))
        for caption in app.sidebar.caption
    )
    ask(app, SUPER_BOWL)
    assert len(app.error) == 1
    assert app.error[0].value.startswith(plain("llm_model must be set for the transformers"))


def test_without_an_llm_the_small_reader_still_answers(
    app: AppTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAG_LLM_MODEL")
    monkeypatch.setenv("RAG_ANSWER_MODE", "extractive")
    # However unsure the reader is, it answers: what is under test is that no LLM is needed.
    monkeypatch.setenv("RAG_READER_REFUSE", "0")
    app.run()
    app.selectbox[1].set_value("transformers").run()  # no llm_model set for it
    assert any(caption.value.startswith("LLM unavailable: ") for caption in app.sidebar.caption)
    ask(app, SUPER_BOWL)
    assert not app.error
    reply = app.chat_message[-1]
    assert reply.caption[0].value.startswith(plain("Answered by the small reader"))


def test_empty_question_is_one_error_and_the_app_stays_usable(app: AppTest) -> None:
    ask(app.run(), "   ")
    assert [error.value for error in app.error] == ["the query is empty"]
    ask(app, SUPER_BOWL)
    assert app.chat_message[-1].text[1].value.startswith("[1] p000.md")


def test_the_question_box_stops_at_the_question_limit(app: AppTest) -> None:
    app.run()
    assert app.chat_input[0].proto.max_chars == Settings().max_question_chars == 4000
    # Typed as a browser types it, a 16,000-character paste stops at the limit; a client that
    # sends more anyway is refused by the answerer (tests/hostile/test_ask_hostile.py).
    ask(app, "Which team won? " * 1000)
    assert 3990 <= len(app.chat_message[-2].text[0].value) <= 4000
    assert not app.error


def test_pdf_source_shows_its_page(app: AppTest) -> None:
    ask(app.run(), "How much knowledge can you pack into the parameters of a language model?")
    reply = app.chat_message[-1]
    pdf_headings = [t.value for t in reply.text if t.value.startswith("[") and SMALL_PDF in t.value]
    assert pdf_headings, [t.value for t in reply.text]
    toggles = [t for t in reply.toggle if t.label.startswith("Show page ")]
    assert toggles and not app.get("image")  # pages render only when asked for
    toggles[0].set_value(True).run()
    assert not app.exception and not app.error
    (image,) = app.get("image")
    assert image.value[0].endswith(".png")  # PNG, not JPEG: small print stays sharp


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
    # The first collection can be made right here.
    assert app.sidebar.text_input[0].label == "Into collection"


# -- uploads through the sidebar ---------------------------------------------------------------


def test_upload_into_a_new_collection_ingests_and_switches_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_pdfs: Path, minilm
) -> None:
    index_dir = tmp_path / "indexes"
    monkeypatch.setenv("RAG_INDEX_DIR", str(index_dir))
    monkeypatch.setenv("RAG_LLM_BACKEND", "openai")  # never loaded: no question is asked
    monkeypatch.setenv("RAG_LLM_MODEL", "test/echo")
    monkeypatch.setenv("RAG_LLM_BASE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    app.sidebar.text_input[0].set_value("papers")
    pdf = (real_pdfs / SMALL_PDF).read_bytes()
    app.sidebar.get("file_uploader")[0].set_value(
        [("../../knowledge paper.PDF", pdf, "application/pdf"), ("notes.md", b"", "text/markdown")]
    ).run()
    app.sidebar.button[0].click().run()
    assert not app.exception
    assert app.selectbox[0].value == "papers"  # switched to the new collection
    assert app.sidebar.success[0].value.startswith(plain("papers: 1 ingested (1 new"))
    assert [w.value for w in app.sidebar.warning] == [plain("refused: notes.md: the file is empty")]
    assert (index_dir / ".uploads" / "papers" / "knowledge_paper.pdf").read_bytes() == pdf
    assert app.sidebar.caption[0].value.startswith("1 documents · ")


def test_upload_with_a_bad_collection_name_is_one_error(
    tmp_path: Path, index_dir: Path, monkeypatch: pytest.MonkeyPatch, llm_server
) -> None:
    monkeypatch.setenv("RAG_INDEX_DIR", str(index_dir))
    for name, value in llm_env(llm_server.base_url).items():
        monkeypatch.setenv(name, value)
    app = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    app.sidebar.text_input[0].set_value("../etc")
    app.sidebar.get("file_uploader")[0].set_value(("a.md", b"# A\n\ntext\n", "text/markdown"))
    app.run()
    app.sidebar.button[0].click().run()
    assert not app.exception
    assert len(app.error) == 1
    assert app.error[0].value.startswith(plain("invalid collection name '../etc'"))
    assert not (index_dir / ".uploads" / "etc").exists()


def render_reply(text: str, source_path: str) -> None:
    """An AppTest script: one reply as the chat shows it (`show_reply`, not the whole app)."""
    from rag.types import Answer, Chunk, Citation, SentenceCheck
    from ui.app import show_reply
    from ui.messages import reply_for

    chunk = Chunk(id="c", document_id="d", source=source_path, page=2, start=0, end=4, text="t")
    source = Citation(1, chunk, 0.5)
    check = SentenceCheck(text, (1,), 0.1, False)
    answer = Answer("q", "q", text, False, (source,), (source,), (check,))
    show_reply(reply_for(answer), turn=0)


def test_llm_text_is_shown_literally_too() -> None:
    hostile = "See [1]. <img src=x onerror=alert(1)> **bold** [a link](javascript:alert(2))"
    app = AppTest.from_function(render_reply, args=(hostile, "/d/a.md")).run()
    assert not app.exception
    assert app.text[0].value == hostile  # the answer, as text
    warning = app.warning[0].value  # the unsupported sentence, escaped for Markdown
    assert warning == f"{UNSUPPORTED}\n\n- {plain(hostile)}"
    assert not app.get("html") and not [m for m in app.markdown if "alert" in m.value]


def test_page_of_a_missing_pdf_is_one_error(tmp_path: Path) -> None:
    gone = str(tmp_path / "moved away.pdf")
    app = AppTest.from_function(render_reply, args=("See [1].", gone)).run()
    app.toggle(key="page-0-1").set_value(True).run()
    assert not app.exception and not app.get("image")
    assert [error.value for error in app.error] == [
        plain(
            f"cannot show page 2: {gone} is not there any more (moved or deleted since it was "
            "ingested)"
        )
    ]


# -- who answered, and the evidence highlighted -------------------------------------------------

TOUCHDOWN = (
    "Super Bowl 50 was played in 2016. The AFC champion Denver Broncos defeated the Carolina "
    "Panthers 24–10. <script>alert(1)</script> **bold** [a link](x) # not a heading"
)


def reader_answer(text: str = TOUCHDOWN, confidence: float = 0.874) -> Answer:
    """A small reader's answer quoting "Denver Broncos" in the second sentence of source [1]."""
    chunk = Chunk(id="c", document_id="d", source="/d/sb.md", page=1, start=0, end=9, text=text)
    other = Chunk(id="o", document_id="d", source="/d/o.md", page=1, start=0, end=9, text="x")
    sources = (Citation(1, chunk, 0.02), Citation(2, other, 0.01))
    start = text.index("The AFC")
    span = text.index("Denver Broncos")
    quote = Quote(1, start, text.index("24–10.") + 6, span, span + len("Denver Broncos"))
    check = SentenceCheck("Denver Broncos [1]", (1,), 1.0, True)
    return Answer(
        "Who won?",
        "Who won?",
        "Denver Broncos [1]",
        False,
        sources,
        sources[:1],
        (check,),
        answered_by="reader",
        confidence=confidence,
        quote=quote,
    )


def render_answer(answer: "Answer") -> None:  # noqa: UP037 (the script runs without the import)
    """An AppTest script: one answer's reply as the chat shows it."""
    from ui.app import show_reply
    from ui.messages import reply_for

    show_reply(reply_for(answer), turn=0)


def test_reader_reply_says_who_answered_and_marks_the_quote() -> None:
    answer = reader_answer()
    reply = reply_for(answer)
    assert reply.answered_by == "reader" and reply.confidence == 0.874
    assert reply.quote == answer.quote
    assert reply.who == "Answered by the small reader, quoting source [1] · 87 % sure"
    (source,) = reply.cited
    (mark,) = source.highlights
    assert source.text[mark.start : mark.end] == (
        "The AFC champion Denver Broncos defeated the Carolina Panthers 24–10."
    )
    assert mark.span is not None and source.text[slice(*mark.span)] == "Denver Broncos"
    assert source.quotes == (source.text[mark.start : mark.end],)
    assert [s.highlights for s in reply.others] == [()]


def test_highlighted_passage_is_escaped_and_shown_literally() -> None:
    app = AppTest.from_function(render_answer, args=(reader_answer(),)).run()
    assert not app.exception
    assert app.text[0].value == "Denver Broncos [1]"
    assert app.caption[0].value == plain(
        "Answered by the small reader, quoting source [1] · 87 % sure"
    )
    assert app.text[1].value == "[1] sb.md · page 1 · match 1 of 2"
    (passage,) = [m for m in app.markdown if "<mark>" in m.value]
    assert passage.proto.allow_html
    # Document text is data: HTML-escaped, then Markdown-escaped; only our own tags are tags.
    assert passage.value == (
        r"Super Bowl 50 was played in 2016\. <mark>The AFC champion <strong>Denver Broncos"
        r"</strong> defeated the Carolina Panthers 24–10\.</mark> &lt;script&gt;alert\(1\)"
        r"&lt;/script&gt; \*\*bold\*\* \[a link\]\(x\) \# not a heading"
    )
    assert "<script>" not in passage.value and not app.get("html")
    # The source not cited stays plain text.
    assert app.expander[0].label == "Other passages the small reader read (1)"
    assert app.expander[0].text[1].value == "x"


def test_llm_reply_marks_the_sentences_that_support_it() -> None:
    text = (
        "The stadium opened in 2014. Levi's Stadium in Santa Clara hosted Super Bowl 50 in "
        "February 2016. Tickets sold out."
    )
    chunk = Chunk(id="c", document_id="d", source="/d/x.pdf", page=4, start=0, end=9, text=text)
    source = Citation(1, chunk, 0.03)
    sentences = (
        SentenceCheck("Super Bowl 50 was hosted at Levi's Stadium [1].", (1,), 0.8, True),
        SentenceCheck("It rained all day [1].", (1,), 0.2, False),
    )
    answer = Answer(
        "Where?", "Where?", "…", False, (source,), (source,), sentences, confidence=0.34
    )
    reply = reply_for(answer)
    assert reply.who == (
        "Written by the LLM from the sources (the small reader was only 34 % sure) · "
        "1 of 2 sentences backed by the sources they cite"
    )
    (mark,) = reply.cited[0].highlights
    assert text[mark.start : mark.end].startswith("Levi's Stadium in Santa Clara") and not mark.span
    assert reply.unsupported == ("It rained all day [1].",)  # still marked as unsupported
    # The reader did not run (answer_mode llm): no confidence to speak of.
    plain_llm = reply_for(replace(answer, confidence=None))
    assert plain_llm.who == (
        "Written by the LLM from the sources · 1 of 2 sentences backed by the sources they cite"
    )
    # A reply with no supported sentence marks nothing: the passage is shown as plain text.
    unsupported = replace(answer, sentences=sentences[1:])
    assert reply_for(unsupported).cited[0].highlights == ()


def test_refused_reply_says_so_with_the_readers_confidence() -> None:
    refused = replace(
        reader_answer(confidence=0.04),
        text=REFUSAL_TEXT,
        refused=True,
        answered_by="refused",
        citations=(),
        sentences=(),
        quote=None,
    )
    reply = reply_for(refused)
    assert reply.who == (
        "Not answered: the sources do not seem to say (the small reader's best guess was 4 % sure)"
    )
    assert reply_for(replace(refused, confidence=None)).who == (
        "Not answered: the sources do not seem to say"
    )
    # Where the answerability model decided, the reply gives its probability too.
    assert reply_for(replace(refused, answerable=0.31)).who == (
        "Not answered: the sources do not seem to say (the small reader's best guess was "
        "4 % sure; 31 % likely they do)"
    )
    assert all(not s.highlights for s in reply.others)
    app = AppTest.from_function(render_answer, args=(refused,)).run()
    assert [i.value for i in app.info] == [plain(REFUSAL_TEXT)]
    assert app.caption[0].value == plain(reply.who)


def test_percent_never_says_certain() -> None:
    assert [percent(p) for p in (0.874, 0.999, 1.0, 0.001, 0.0)] == [
        "87 %",
        "99 %",
        "99 %",
        "1 %",
        "1 %",
    ]


def test_best_sentence_is_the_one_sharing_most_words() -> None:
    passage = "Oxygen was found in 1774. Priestley called it dephlogisticated air. It burns."
    claim = "Joseph Priestley named it dephlogisticated air [2]."
    start, end = best_sentence(claim, passage) or (0, 0)
    assert passage[start:end] == "Priestley called it dephlogisticated air."
    # Case, Unicode forms and citation markers do not count; common words alone are not enough.
    assert best_sentence("OXYGEN WAS FOUND [1]", passage) == (0, len("Oxygen was found in 1774."))
    assert best_sentence("It was in the [1].", passage) is None
    assert best_sentence("Sodium melts.", passage) is None


# -- the plain functions -----------------------------------------------------------------------


def make_citation(n: int, source: str, text: str = "some text", score: float = 0.5) -> Citation:
    chunk = Chunk(id="c", document_id="d", source=source, page=3, start=0, end=9, text=text)
    return Citation(n, chunk, score)


def make_answer(**changes) -> Answer:
    sources = (make_citation(1, "/d/a.md"), make_citation(2, "/d/b.pdf"), make_citation(3, "c"))
    values = {
        "question": "q",
        "query": "q",
        "text": "A is so [1]. B is *so* [3].",
        "refused": False,
        "sources": sources,
        "citations": (sources[0], sources[2]),
        "sentences": (
            SentenceCheck("A is so [1].", (1,), 0.9, True),
            SentenceCheck("B is\n*so* [3].", (3,), 0.1, False),
        ),
        "notices": ("reranking is off: x", "dropped citations to sources that were not given: [7]"),
    }
    return Answer(**{**values, **changes})


def test_format_citation_names_the_file_and_keeps_the_path() -> None:
    citation = make_citation(2, "/data/reports/annual 2024.pdf", score=0.81234)
    view = format_citation(citation, rank=2, of=5)
    assert view.name == "annual 2024.pdf" and view.path == "/data/reports/annual 2024.pdf"
    # Its place among the passages found, not a raw fusion score; that stays in the tooltip.
    assert view.heading == "[2] annual 2024.pdf · page 3 · match 2 of 5"
    assert view.tooltip == "retrieval score 0.812 · /data/reports/annual 2024.pdf"
    assert view.text == "some text" and view.pdf
    assert not format_citation(make_citation(1, "/data/a.PDF.md")).pdf


def test_reply_splits_cited_sources_and_flags_unsupported_sentences() -> None:
    reply = reply_for(make_answer())
    assert reply.text == "A is so [1]. B is *so* [3]." and not reply.refused
    assert [s.number for s in reply.cited] == [1, 3]
    assert [s.number for s in reply.others] == [2]
    assert reply.unsupported == ("B is *so* [3].",)
    # Reranking's state is in the sidebar; other notices show once.
    assert reply.notices == ("dropped citations to sources that were not given: [7]",)
    again = reply_for(make_answer(), shown=set(reply.notices))
    assert again.notices == ()


def test_conversation_keeps_questions_and_answers_but_not_errors() -> None:
    history = [
        UserMessage("Who won?"),
        reply_for(make_answer(text="Denver [1]."), ()),
        UserMessage("And then?"),
        ErrorMessage("LLM endpoint x is unreachable"),
        UserMessage("Who lost?"),
        reply_for(make_answer(text="Carolina [2]."), ()),
    ]
    assert conversation(history) == [
        Message("user", "Who won?"),
        Message("assistant", "Denver [1]."),
        Message("user", "Who lost?"),
        Message("assistant", "Carolina [2]."),
    ]


def test_default_collection() -> None:
    assert default_collection(["a", "demo", "z"]) == "demo"
    assert default_collection(["b", "a"]) == "b"
    assert default_collection([]) is None
    assert default_collection(["a", "b"], requested="b") == "b"
    with pytest.raises(CollectionError, match=r"no collection named 'c' \(collections: a, b\)"):
        default_collection(["a", "b"], requested="c")


def test_plain_escapes_markdown() -> None:
    assert plain("a_b *c* <x> `d` $1") == r"a\_b \*c\* \<x\> \`d\` \$1"
    assert plain("Title\n===") == "Title\n\\=\\=\\="


def test_a_reranker_training_in_the_background_shows_its_progress(
    app: AppTest, index_dir: Path
) -> None:
    from rag.tune.progress import PROGRESS_FILE, TuneProgress

    progress_file = index_dir / "squad" / PROGRESS_FILE
    try:
        # This process stands for the training one: alive, so the run counts as running.
        TuneProgress.start(index_dir / "squad").update("training", 30, 120)
        app.run()
        assert not app.exception
        bars = app.get("progress")
        assert len(bars) == 1 and bars[0].value == 25
        assert "training, step 30 of 120" in bars[0].proto.text
        TuneProgress.read(index_dir / "squad").finish("registered")
        app.run()
        assert not app.exception and not app.get("progress")
    finally:
        progress_file.unlink(missing_ok=True)
