"""The OpenAI-compatible endpoint, driven by the official `openai` SDK against the real server:
a collection is a model, and the answer comes with its citations, streamed or not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import OpenAI

from rag.server import create_app
from tests.server.conftest import Running, ingest_demo, service_settings, serving
from tests.servers.openai_compat import OpenAICompatServer

QUESTION = [{"role": "user", "content": "Who won Super Bowl 50?"}]


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, minilm: Any, server: OpenAICompatServer
) -> Iterator[Running]:
    settings = service_settings(tmp_path_factory.mktemp("openai") / "indexes", server.base_url)
    ingest_demo(settings, minilm, "demo")
    with serving(create_app(settings, embedder=minilm)) as url:
        yield Running(url, settings, None)


@pytest.fixture
def client(api: Running) -> OpenAI:
    return OpenAI(base_url=f"{api.url}/v1", api_key="unused-without-accounts", max_retries=0)


def test_models_are_the_collections(client: OpenAI) -> None:
    assert [model.id for model in client.models.list()] == ["demo"]
    assert client.models.retrieve("demo").id == "demo"


def test_a_completion_answers_with_citations(client: OpenAI, server: OpenAICompatServer) -> None:
    before = len(server.chat_requests())
    completion = client.chat.completions.create(model="demo", messages=QUESTION)  # type: ignore[arg-type]
    content = completion.choices[0].message.content or ""
    assert content.startswith("I read sources [1]")
    assert "\n\nSources:\n[1] Super_Bowl_50.md, page 1" in content
    assert completion.choices[0].finish_reason == "stop"
    extra = completion.model_extra or {}
    assert extra["citations"][0]["n"] == 1
    assert extra["citations"][0]["document"].endswith("Super_Bowl_50.md")
    assert extra["rag"]["refused"] is False
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    # The product's own prompt went to the LLM, with the numbered sources.
    sent = server.chat_requests()[before].body["messages"]
    assert "[1]" in sent[-1]["content"] and "Who won Super Bowl 50?" in sent[-1]["content"]


def test_a_streamed_completion_ends_with_the_checked_answer(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="demo",
        messages=QUESTION,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("I read sources [1]")
    assert text.endswith("\n\nSources:\n" + text.split("\n\nSources:\n")[1])
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finish) == 1
    record = (finish[0].model_extra or {})["rag"]
    assert record["answer"] in text and record["citations"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_a_filter_scopes_the_answer(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model="demo",
        messages=[{"role": "user", "content": "How large is the Amazon rainforest?"}],
        extra_body={"where": {"topic": "nature"}},
    )
    citations = (completion.model_extra or {})["citations"]
    assert citations and all(c["document"].endswith("Amazon_rainforest.md") for c in citations)


def test_earlier_turns_are_the_history(client: OpenAI, server: OpenAICompatServer) -> None:
    """The follow-up is rewritten by the LLM from the conversation, as in the chat (the test
    LLM's rewrite is its stock reply, which the record shows as the query searched)."""
    before = len(server.chat_requests())
    completion = client.chat.completions.create(
        model="demo",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Tell me about the Amazon rainforest."},
            {"role": "assistant", "content": "It is a large tropical forest."},
            {"role": "user", "content": "How large is it?"},
        ],
    )
    rewrite = server.chat_requests()[before].body["messages"]
    sent = " ".join(str(m["content"]) for m in rewrite)
    assert "It is a large tropical forest." in sent and "How large is it?" in sent
    assert "You are terse." not in sent
    record = (completion.model_extra or {})["rag"]
    assert record["question"] == "How large is it?" and record["query"] != record["question"]


def test_errors_reach_the_sdk_as_one_message(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="no collection named 'nope'"):
        client.chat.completions.create(model="nope", messages=QUESTION)  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="unknown filter key 'year'"):
        client.chat.completions.create(
            model="demo",
            messages=QUESTION,  # type: ignore[arg-type]
            extra_body={"where": {"year": "2016"}},
        )
    with pytest.raises(openai.BadRequestError, match="the last message must be the user's"):
        client.chat.completions.create(
            model="demo",
            messages=[{"role": "assistant", "content": "Hello"}],
        )
