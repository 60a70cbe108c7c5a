"""The chat's engine without Streamlit: a real collection (real MiniLM, FAISS, SQLite) answered on
the engine's own thread by a real OpenAI-compatible LLM server on loopback, and the typed reply
the chat renders from it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rag.collection import MANIFEST
from rag.errors import GenerationError
from rag.settings import Settings
from rag.types import AnswerDone, AnswerToken, SourcesFound
from tests.servers.openai_compat import OpenAICompatServer
from tests.ui.conftest import LLM_MODEL
from ui.engine import Engine, build_llm
from ui.messages import AssistantReply, UserMessage, conversation, reply_for

REPO = Path(__file__).resolve().parents[2]
SUPER_BOWL = "Which NFL team won Super Bowl 50?"


@pytest.fixture
def settings(index_dir: Path, llm_server: OpenAICompatServer) -> Settings:
    return Settings.load(
        index_dir=index_dir,
        progress=False,
        device="cpu",
        llm_backend="openai",
        llm_base_url=llm_server.base_url,
        llm_model=LLM_MODEL,
        answer_mode="llm",  # the chat's plumbing, not the small reader, is under test here
    )


@pytest.fixture
def engine(index_dir: Path, settings: Settings):
    engine = Engine(index_dir, "squad", settings)
    yield engine
    engine.close()


def test_engine_answers_on_its_thread_with_a_typed_reply(
    engine: Engine, settings: Settings, llm_server: OpenAICompatServer
) -> None:
    before = len(llm_server.chat_requests())
    events = list(engine.answer(build_llm(settings), settings, SUPER_BOWL))
    # Sources first, then the LLM's tokens as they came, then the finished answer.
    assert isinstance(events[0], SourcesFound) and len(events[0].sources) == 5
    tokens = [e.text for e in events if isinstance(e, AnswerToken)]
    assert isinstance(events[-1], AnswerDone) and len(events) == len(tokens) + 2
    reply = reply_for(events[-1].answer)
    assert isinstance(reply, AssistantReply) and not reply.refused
    assert reply.text == "".join(tokens)
    assert reply.text == "I read sources [1], [2], [3], [4], [5]. The answer is in source [1]."
    assert [s.number for s in reply.cited] == [1, 2, 3, 4, 5] and reply.others == ()
    assert reply.cited[0].name == "p000.md" and "Denver Broncos" in reply.cited[0].text
    # The echo model's sentences say nothing the passages support: the verifier flags them.
    assert "The answer is in source [1]." in reply.unsupported
    assert len(llm_server.chat_requests()) == before + 1


def test_retrieval_settings_and_history_reach_the_answer(
    engine: Engine, settings: Settings, llm_server: OpenAICompatServer
) -> None:
    llm = build_llm(settings)
    tuned = settings.model_copy(update={"context_chunks": 2, "search_mode": "dense"})
    before = len(llm_server.chat_requests())
    (first,) = [e for e in engine.answer(llm, tuned, SUPER_BOWL) if isinstance(e, AnswerDone)]
    (request,) = [r.body for r in llm_server.chat_requests()[before:]]
    prompt = request["messages"][-1]["content"]
    assert "[2] (from " in prompt and "[3] (from " not in prompt
    assert first.answer.text.startswith("I read sources [1], [2].")
    # A follow-up is rewritten with the conversation (question and answer) before the search.
    history = conversation([UserMessage(SUPER_BOWL), reply_for(first.answer)])
    before = len(llm_server.chat_requests())
    list(engine.answer(llm, tuned, "And who did they beat?", history))
    rewrite = llm_server.chat_requests()[before].body["messages"][-1]["content"]
    assert SUPER_BOWL in rewrite and "I read sources [1], [2]." in rewrite
    assert "And who did they beat?" in rewrite
    # The dense searcher is made once and shares the engine's embedder.
    dense = engine.call(engine.searcher_for, "dense", settings.rerank)
    assert dense is engine.call(engine.searcher_for, "dense", settings.rerank)
    assert dense.embedder is engine.searcher.embedder and dense is not engine.searcher


def test_status_counts_the_collection_and_says_why_reranking_is_off(engine: Engine) -> None:
    status = engine.status()
    assert (status.documents, status.chunks) == engine.call(engine.collection.store.counts)
    assert status.documents == 7 and status.chunks >= 7
    assert status.embedder == engine.collection.embedder.name
    # No cross-encoder is on this machine (HF_HOME is empty in tests).
    assert status.reranking_off is not None and status.reranking_off.startswith("reranking is off:")
    assert status.reranker is None


def test_status_calls_a_maxsim_reranker_what_it_is(index_dir: Path, settings: Settings) -> None:
    """A MaxSim model is a late-interaction bi-encoder, not a cross-encoder: the sidebar says so."""
    engine = Engine(index_dir, "squad", settings.model_copy(update={"reranker": "maxsim"}))
    try:
        status = engine.status()
    finally:
        engine.close()
    assert status.reranking_off is None
    assert status.reranker == "MaxSim (late interaction): all-MiniLM-L6-v2"


def test_engine_is_not_current_once_the_manifest_changes(
    index_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    copy = tmp_path / "indexes"
    shutil.copytree(index_dir / "squad", copy / "squad")
    engine = Engine(copy, "squad", settings.model_copy(update={"index_dir": copy}))
    try:
        assert engine.current()
        manifest = json.loads((copy / "squad" / MANIFEST).read_text())
        (copy / "squad" / MANIFEST).write_text(json.dumps({**manifest, "note": "changed"}))
        assert not engine.current()
    finally:
        engine.close()


def test_engine_streams_items_made_on_its_own_thread(engine: Engine) -> None:
    made_on: list[str] = []
    closed = threading.Event()

    def numbers():
        made_on.append(threading.current_thread().name)
        try:
            yield from range(1000)
        finally:
            closed.set()

    stream = engine.stream(numbers)
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    stream.close()  # the reader gives up: the producer stops too
    assert closed.wait(5)
    assert made_on == [engine.call(lambda: threading.current_thread().name)]
    assert made_on[0].startswith("rag-squad")

    def failing():
        yield 1
        raise GenerationError("LLM endpoint x is unreachable")

    stream = engine.stream(failing)
    assert next(stream) == 1
    with pytest.raises(GenerationError, match="is unreachable"):
        next(stream)


def test_engine_and_messages_import_no_streamlit() -> None:
    code = "import sys, ui.engine, ui.messages; print('streamlit' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
