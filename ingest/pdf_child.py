"""The PDF reader's own process (`python -m ingest.pdf_child`), started by ingest/pdf_worker.py:
it reads PDF requests from stdin, loads each in this process and answers on stdout, with a tick
each time a page is done (which step, how many of how many) and its log records forwarded."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ingest import pdf
from ingest.loaders import load_pdf
from ingest.pdf_worker import receive, send
from rag.errors import LoadError

# Page ticks closer together than this are not sent: a 300-page filing is not 300 messages.
_TICK_EVERY_S = 0.2


class _Forward(logging.Handler):
    def __init__(self, send: Callable[[Any], None]) -> None:
        super().__init__(logging.INFO)
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        self._send(("log", record.name, record.levelno, record.getMessage()))


def serve() -> None:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints cannot corrupt messages
    requests = sys.stdin.buffer
    write = threading.Lock()  # OCR threads log too

    def reply(message: Any) -> None:
        with write:
            send(out, message)

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(_Forward(reply))

    last = [0.0]

    def page_done(step: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= _TICK_EVERY_S:
            last[0] = now
            reply(("page", step, done, total))

    with pdf.listening(page_done):
        while (request := receive(requests)) is not None:
            raw, source, ocr, pdf_text = request
            reply(("page",))  # begun: the stall clock starts now
            try:
                reply(("done", load_pdf(raw, source, ocr, pdf_text)))
            except LoadError as e:
                reply(("error", e.reason))
            except Exception as e:  # noqa: BLE001 - one line to the parent, never a dead child
                reply(("error", f"unexpected error: {type(e).__name__}: {e}"))


if __name__ == "__main__":
    serve()
