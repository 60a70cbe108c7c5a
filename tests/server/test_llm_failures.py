"""An LLM endpoint that fails: the caller gets one clear message (a 502 before the answer
starts, an `error` event once a stream has begun), and the service keeps serving."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from rag.server import create_app
from tests.server.conftest import Running, ingest_demo, service_settings, serving
from tests.servers.openai_compat import OpenAICompatServer

QUESTION = "Who won Super Bowl 50?"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, minilm: Any) -> Iterator[Running]:
    with OpenAICompatServer(models=["test/echo"], behaviour="error", error_status=500) as broken:
        settings = service_settings(
            tmp_path_factory.mktemp("llm-failures") / "indexes",
            broken.base_url,
            llm_max_retries=0,
        )
        ingest_demo(settings, minilm, "demo")
        with serving(create_app(settings, embedder=minilm)) as url:
            yield Running(url, settings, None)


def test_ask_says_the_llm_failed_in_one_message(api: Running) -> None:
    with httpx.Client(base_url=api.url, timeout=120) as http:
        asked = http.post("/v1/collections/demo/ask", json={"question": QUESTION})
        assert asked.status_code == 502
        error = asked.json()["error"]
        assert error["type"] == "upstream_error" and "\n" not in error["message"]
        assert error["message"].startswith("LLM endpoint")

        body = {"question": QUESTION, "stream": True}
        with http.stream("POST", "/v1/collections/demo/ask", json=body) as streamed:
            lines = [line for line in streamed.iter_lines() if line]
        kinds = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
        assert kinds == ["sources", "error"]
        last = json.loads(lines[-1].removeprefix("data: "))
        assert last["error"]["code"] == 502 and last["error"]["message"] == error["message"]

        # Search needs no LLM and still works.
        found = http.post("/v1/collections/demo/search", json={"query": QUESTION})
        assert found.status_code == 200 and found.json()["hits"]


def test_the_openai_sdk_sees_the_failure(api: Running) -> None:
    client = OpenAI(base_url=f"{api.url}/v1", api_key="x", max_retries=0)
    messages: Any = [{"role": "user", "content": QUESTION}]
    with pytest.raises(openai.APIStatusError, match="LLM endpoint") as raised:
        client.chat.completions.create(model="demo", messages=messages)
    assert raised.value.status_code == 502
    with pytest.raises(openai.APIError, match="LLM endpoint"):
        list(client.chat.completions.create(model="demo", messages=messages, stream=True))
