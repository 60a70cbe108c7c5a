"""A real OpenAI-compatible chat server on loopback, for tests of LLM clients.

It speaks the chat-completions protocol that vLLM, Ollama, llama.cpp's server and OpenAI speak:
`GET /v1/models`, `POST /v1/chat/completions` with and without streaming (server-sent events,
a usage chunk when `stream_options.include_usage` is set, then `data: [DONE]`).

    with OpenAICompatServer(models=["test/echo"]) as server:
        client = OpenAI(base_url=server.base_url, api_key="EMPTY")
        ...
        assert server.chat_requests()[0].body["model"] == "test/echo"

The reply is deterministic, built from the request: it names the `[n]` source markers found in
the last user message and cites the first one, one word per streamed chunk. Tokens are words.
Behaviours: "normal"; "slow" (waits `delay` seconds before answering); "error" (every chat
request gets `error_status` with an OpenAI-style error body); `fail_next(status, times)` makes
the next chat requests fail, then answers normally (429 then success); `api_key` makes the server
answer 401 to any other bearer token; `reject_stream_options` answers 400 to requests that carry
`stream_options`, as some older servers do. `token_delay` (seconds, default 0) is spent before each
streamed token, to model a remote endpoint's decoding speed in benchmarks.

As its own process (for benchmarks): `python -m tests.servers.openai_compat --token-delay 0.02`
prints its base URL on the first line of stdout and serves until killed.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Behaviour = Literal["normal", "slow", "error"]
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


@dataclass(frozen=True)
class Received:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class OpenAICompatServer:
    """A chat-completions server in a background thread on 127.0.0.1, port chosen by the OS."""

    models: list[str] = field(default_factory=lambda: ["test/echo-model"])
    behaviour: Behaviour = "normal"
    delay: float = 5.0
    error_status: int = 500
    api_key: str | None = None
    reject_stream_options: bool = False
    token_delay: float = 0.0
    # Sent with 429 and 5xx answers so that client retries in tests take milliseconds.
    retry_after_ms: int | None = 20
    requests: list[Received] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> OpenAICompatServer:
        """Bind a free port and serve in a daemon thread."""
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; requests still waiting in "slow" are woken and dropped."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OpenAICompatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- test controls ---------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next `times` chat requests with HTTP `status`, then behave as configured."""
        with self._lock:
            self._failures.extend([status] * times)

    def chat_requests(self) -> list[Received]:
        """The chat-completion requests received so far, in order."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # -- used by the handler ---------------------------------------------------------------

    def _record(self, request: Received) -> int | None:
        """Keep the request; return the status of a scripted failure to answer with, if any."""
        with self._lock:
            self.requests.append(request)
            if request.path.endswith("/chat/completions") and self._failures:
                return self._failures.pop(0)
        return None


class _Handler(BaseHTTPRequestHandler):
    server_state: OpenAICompatServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        state = self.server_state
        state._record(
            Received("GET", self.path, {k.lower(): v for k, v in self.headers.items()}, None)
        )
        if not self._authorised():
            return
        if self.path.rstrip("/") != "/v1/models":
            self._error(404, f"no route {self.path}")
            return
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in state.models
        ]
        self._json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        state = self.server_state
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        failure = state._record(
            Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        )
        if not self._authorised():
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route {self.path}")
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._error(400, "'messages' is a required property")
            return
        if failure is not None:
            self._error(failure, f"scripted failure {failure}")
            return
        if state.behaviour == "error":
            self._error(state.error_status, "the model crashed while generating (test)")
            return
        if state.behaviour == "slow" and state._stopping.wait(state.delay):
            return  # the server is stopping: drop the request
        if body.get("model") not in state.models:
            self._error(404, f"The model `{body.get('model')}` does not exist.")
            return
        if body.get("stream_options") is not None and (
            state.reject_stream_options or not body.get("stream")
        ):
            self._error(400, "Unrecognized request argument supplied: stream_options")
            return
        words, finish = _reply(body)
        usage = {
            "prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in body["messages"]),
            "completion_tokens": len(words),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(body["model"], words, finish, usage if include_usage else None)
        else:
            message = {"role": "assistant", "content": "".join(words)}
            choice = {"index": 0, "message": message, "finish_reason": finish}
            self._json(200, _completion(body["model"], "chat.completion", [choice], usage))

    # -- helpers ---------------------------------------------------------------------------

    def _authorised(self) -> bool:
        expected = self.server_state.api_key
        given = self.headers.get("Authorization", "")
        if expected is None or given == f"Bearer {expected}":
            return True
        # Like some real servers, the message quotes what it got: clients must not repeat it.
        shown = given.removeprefix("Bearer ")
        self._error(401, f"Incorrect API key provided: {shown}. Check your key.")
        return False

    def _error(self, status: int, message: str) -> None:
        kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request")
        payload = {"error": {"message": message, "type": kind, "param": None, "code": status}}
        headers = {}
        retry_ms = self.server_state.retry_after_ms
        if retry_ms is not None and (status == 429 or status >= 500):
            headers["retry-after-ms"] = str(retry_ms)
        self._json(status, payload, headers)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(
        self, model: str, words: list[str], finish: str, usage: dict[str, int] | None
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        # No length is known in advance: the body ends when the connection closes.
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        events = [_completion(model, "chat.completion.chunk", [first])]
        for word in words:
            choice = {"index": 0, "delta": {"content": word}, "finish_reason": None}
            events.append(_completion(model, "chat.completion.chunk", [choice]))
        last = {"index": 0, "delta": {}, "finish_reason": finish}
        events.append(_completion(model, "chat.completion.chunk", [last]))
        if usage is not None:
            events.append(_completion(model, "chat.completion.chunk", [], usage))
        delay = self.server_state.token_delay
        try:
            for event in events:
                if delay and event["choices"] and event["choices"][0]["delta"].get("content"):
                    time.sleep(delay)
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped reading


def _completion(
    model: str, kind: str, choices: list[dict[str, Any]], usage: dict[str, int] | None = None
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage,
    }


def _reply(body: dict[str, Any]) -> tuple[list[str], str]:
    """The answer's words (each with its trailing space) and the finish reason."""
    users = [m for m in body["messages"] if m.get("role") == "user"]
    last = str(users[-1].get("content", "")) if users else ""
    sources = sorted({int(n) for n in re.findall(r"\[(\d+)\]", last)})
    if sources:
        named = ", ".join(f"[{n}]" for n in sources)
        text = f"I read sources {named}. The answer is in source [{sources[0]}]."
    else:
        text = "No sources were given, so I cannot answer."
    words = [w + " " for w in text.split(" ")]
    words[-1] = words[-1].rstrip()
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < len(words):
        return words[:limit], "length"
    return words, "stop"


def main() -> None:
    """Serve on loopback until killed; the base URL is printed first, for the parent process."""
    import argparse

    parser = argparse.ArgumentParser(description="OpenAI-compatible test server on 127.0.0.1")
    parser.add_argument("--model", default="test/echo-model")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds per token")
    args = parser.parse_args()
    server = OpenAICompatServer(models=[args.model], token_delay=args.token_delay).start()
    print(server.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
