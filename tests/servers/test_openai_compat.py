"""The loopback server as its own process, as benchmarks/batch_throughput.py runs it."""

from __future__ import annotations

import subprocess
import sys

from rag.generation import Message, OpenAICompatibleLLM, complete
from tests.conftest import REPO


def test_server_process_prints_its_url_and_streams_with_a_token_delay() -> None:
    command = [sys.executable, "-m", "tests.servers.openai_compat", "--token-delay", "0.001"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        llm = OpenAICompatibleLLM(None, base_url=url, max_retries=0, timeout=10)
        text, usage = complete(
            llm, [Message("user", "Sources: [1] a [2] b")], max_tokens=64, temperature=0.0
        )
    finally:
        process.kill()
        process.wait()
    assert llm.model == "test/echo-model"
    assert text == "I read sources [1], [2]. The answer is in source [1]."
    assert usage is not None and usage.completion_tokens == 11
