"""PDFs read in a child process, so that a parser that crashes or hangs costs one file, not the job.

    title, pages, empty = read_pdf(raw, source, ocr="auto", pdf_text="pdfium", stall_s=300)

PDFium and Tesseract are C and C++; pypdf is Python that a crafted file can send into a loop. In
the ingest job's own process a segmentation fault in any of them ended the whole job, and a rerun
met the same file first and ended the same way: a folder with one such file could never be
ingested. Here one long-lived child (`python -m ingest.pdf_child`, started on the first PDF)
reads every PDF of this process and says each time it finishes a page (passed on to the calling
thread's `ingest.pdf.listening` callback, for progress). The parent waits for it:

- the child exits or is killed (a crash, the kernel's out-of-memory killer): that file fails
  with the reason, the next PDF starts a new child;
- no page finished for `stall_s` seconds (the `pdf_stall_s` setting): the child is killed and
  the file fails the same way.

Messages are pickles with a length in front, over the child's stdin and stdout; the child moves
its own stdout to stderr first, so that nothing a library prints can break them. The child's log
records come back and are logged here under their own logger names.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from typing import IO, Any

from ingest import pdf
from rag.errors import LoadError
from rag.types import Page

PdfRead = tuple[str, tuple[Page, ...], tuple[int, ...]]
# select() on pipes and process groups are POSIX: elsewhere PDFs are read in the job's process.
SUPPORTED = os.name == "posix"
_HEADER = struct.Struct("!Q")
# What a new child may take to start (imports) before it says it has begun reading.
_START_S = 60.0


def read_pdf(raw: bytes, source: str, ocr: str, pdf_text: str, stall_s: float) -> PdfRead:
    """The PDF's title, pages and empty page numbers, read in the child process; `LoadError`
    when the file is broken, when the reader crashes on it, or when it stalls."""
    with _lock:
        return _worker.read(raw, source, ocr, pdf_text, stall_s)


def child_pid() -> int | None:
    """The process id of this process's PDF reader while one runs."""
    return _worker.pid


def stop() -> None:
    """Stop this process's PDF reader (a new one starts with the next PDF)."""
    with _lock:
        _worker.stop()


class _Worker:
    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None

    def read(self, raw: bytes, source: str, ocr: str, pdf_text: str, stall_s: float) -> PdfRead:
        process = self._start()
        assert process.stdin is not None and process.stdout is not None
        try:
            send(process.stdin, (raw, source, ocr, pdf_text))
        except OSError:
            return self._failed(source)  # died before it read the request
        last, limit = time.monotonic(), max(stall_s, _START_S)  # until the child says it began
        while True:
            waited = time.monotonic() - last
            ready, _, _ = select.select([process.stdout], [], [], max(limit - waited, 0.0))
            if not ready:
                self.stop()
                raise LoadError(
                    source,
                    f"no page read in {stall_s:g} s; the PDF reader was stopped and the file "
                    "skipped (setting pdf_stall_s)",
                )
            message = receive(process.stdout)
            if message is None:
                return self._failed(source)
            kind = message[0]
            if kind == "page":
                last, limit = time.monotonic(), stall_s
                if len(message) == 4:  # (step, done, total) for this thread's listener
                    pdf.page_done(*message[1:])
            elif kind == "log":
                _, name, level, text = message
                logging.getLogger(name).log(level, "%s", text)
            elif kind == "done":
                return message[1]
            else:  # "error": a LoadError's reason, or an unexpected exception as one line
                raise LoadError(source, message[1])

    def _failed(self, source: str) -> PdfRead:
        """The child is gone (or going): say how it ended, as this file's failure."""
        process = self._process
        code = None
        if process is not None:
            # Still alive with its pipe closed: stopped below, and reported as a crash.
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = process.wait(timeout=5)
        self.stop()
        raise LoadError(source, f"the PDF reader crashed on this file ({_exit(code)}); skipped")

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self.stop()  # one that died between files
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.environ.get("PYTHONPATH", "")
        env = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "ingest.pdf_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # Unbuffered: a buffer that read ahead would hold messages that select() cannot see.
            bufsize=0,
            env=env,
            # Ctrl-C goes to the job, which stops the child; the child does not see it first.
            start_new_session=True,
        )
        return self._process

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # The child leads its own process group: its tesseract processes go with it.
        with contextlib.suppress(OSError):  # the group is gone already
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                pipe.close()

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None


def _exit(code: int | None) -> str:
    if code is None:
        return "it stopped"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def send(pipe: IO[bytes], message: Any) -> None:
    """One message: a pickle with its length in front (both sides)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:  # an unbuffered pipe may take part of it
        view = view[pipe.write(view) or 0 :]
    pipe.flush()


def receive(pipe: IO[bytes]) -> Any | None:
    """One message, or None at the end of the stream (the other side is gone)."""
    header = _read_exactly(pipe, _HEADER.size)
    if header is None:
        return None
    data = _read_exactly(pipe, _HEADER.unpack(header)[0])
    return None if data is None else pickle.loads(data)


def _read_exactly(pipe: IO[bytes], size: int) -> bytes | None:
    parts: list[bytes] = []
    while size:
        part = pipe.read(size)
        if not part:
            return None
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


_lock = threading.Lock()
_worker = _Worker()
atexit.register(stop)
