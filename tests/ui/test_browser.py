"""End to end in a real browser: `streamlit run ui/app.py` in a subprocess, driven by headless
Chromium (Debian's /usr/bin/chromium through the `playwright` package), over a real collection
and a real OpenAI-compatible LLM server on loopback; and a page of highlighted evidence
(tests/ui/evidence_page.py), to see what the browser makes of escaped passages. Screenshots go to
test-artifacts/ui/."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers.openai_compat import OpenAICompatServer
from tests.ui.conftest import APP, SMALL_PDF, llm_env

# A page that shows one small reader's reply over a demo PDF and a hostile passage (no collection).
EVIDENCE_PAGE = Path(__file__).resolve().parent / "evidence_page.py"

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
UPLOAD = "1706.03762.pdf"  # "Attention Is All You Need", 15 pages
STARTUP_S = 90
# What the loopback server answers when given five sources.
ECHO_ANSWER = "I read sources [1], [2], [3], [4], [5]. The answer is in source [1]."
# The first answer loads MiniLM in the server; an upload loads it again for the ingest job.
ANSWER_MS = 90_000
INGEST_MS = 180_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while deadline > time.monotonic():
        if server.poll() is not None:
            pytest.fail(f"streamlit exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"streamlit was not healthy after {STARTUP_S}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def streamlit(script: Path, env: dict[str, str], cwd: Path) -> Iterator[str]:
    """`streamlit run script` on a free loopback port; yields its URL once it is healthy."""
    port = free_port()
    log = cwd / "streamlit.log"
    command = [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    with log.open("w") as out:
        server = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=out)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, server, log)
            yield url
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


@pytest.fixture
def app_url(index_dir: Path, tmp_path: Path) -> Iterator[str]:
    """The chat served by a real `streamlit run` over a copy of the test collection."""
    indexes = tmp_path / "indexes"
    shutil.copytree(index_dir, indexes)  # the upload below must not change the shared one
    with OpenAICompatServer(models=["test/echo"]) as llm:
        env = {
            **os.environ,
            **llm_env(llm.base_url),
            "RAG_INDEX_DIR": str(indexes),
            "RAG_DEVICE": "cpu",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        # Run from tmp_path: no rag.toml of the checkout applies.
        with streamlit(APP, env, tmp_path) as url:
            yield url


@contextlib.contextmanager
def chromium(url: str) -> Iterator[Any]:
    """A headless Chromium page open at `url`."""
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(url)
            yield page
        finally:
            browser.close()


@pytest.fixture
def page(app_url: str) -> Iterator[Any]:
    with chromium(app_url) as page:
        yield page


def shot(page, name: str, top=None) -> None:
    """A screenshot, with `top` (a locator) scrolled near the top of its pane first."""
    if top is not None:
        scroll_to(page, top)
    page.wait_for_timeout(500)  # let Streamlit finish painting
    page.screenshot(path=str(ARTIFACTS / name))


def scroll_to(page, target) -> None:
    """Scroll with the mouse wheel, as a person would: Streamlit keeps a chat pinned to its
    bottom and undoes scrolling done by script."""
    box = target.bounding_box()
    page.mouse.move(box["x"] + 10, 600)
    for _ in range(30):
        box = target.bounding_box()
        offset = box["y"] - 80
        if abs(offset) < 20:
            return
        page.mouse.wheel(0, offset)
        page.wait_for_timeout(200)


def wait_idle(page) -> None:
    """Until the script run is over (Streamlit's "running" indicator is gone)."""
    page.wait_for_timeout(300)
    page.wait_for_selector('[data-testid="stStatusWidgetRunningIcon"]', state="detached")


def ask(page, collection: str, question: str) -> None:
    box = page.get_by_placeholder(f"Ask a question about {collection}")
    box.fill(question)
    box.press("Enter")


def test_chat_preview_and_upload_in_a_real_browser(page, real_pdfs: Path) -> None:
    from playwright.sync_api import expect

    # Generous waits: CI machines are small and may be busy; nothing here measures speed.
    expect.set_options(timeout=60_000)
    chat = page.locator('[data-testid="stMainBlockContainer"]')
    sidebar = page.locator('[data-testid="stSidebar"]')
    expect(page.get_by_placeholder("Ask a question about squad")).to_be_visible(timeout=60_000)
    expect(sidebar.get_by_text("LLM in use: openai:test/echo@")).to_be_visible()
    shot(page, "01-start.png")

    # A question: the streamed answer, then its cited sources with the quoted passage.
    ask(page, "squad", "Which NFL team won Super Bowl 50?")
    # The checked answer ends the reply; until then the text streams in with a cursor.
    checked = chat.get_by_text("Not supported by the sources it cites", exact=False)
    expect(checked).to_be_visible(timeout=ANSWER_MS)
    wait_idle(page)
    expect(chat.get_by_test_id("stText").get_by_text(ECHO_ANSWER, exact=True)).to_be_visible()
    expect(chat.get_by_text("[1] p000.md · page 1 · match 1 of 5", exact=False)).to_be_visible()
    expect(chat.get_by_text("Written by the LLM from the sources", exact=False)).to_be_visible()
    expect(chat.get_by_text("Denver Broncos defeated", exact=False).first).to_be_visible()
    reply = chat.get_by_test_id("stChatMessage").last
    shot(page, "02-answer-with-sources.png", top=reply)

    # The page of a cited PDF, rendered as an image on request. A new session (reload): the
    # loopback model cannot rewrite a follow-up question the way a real one does.
    page.reload()
    ask(page, "squad", "How much knowledge can you pack into the parameters of a language model?")
    expect(checked).to_be_visible(timeout=ANSWER_MS)
    expect(chat.get_by_text(f"{SMALL_PDF} · page", exact=False).first).to_be_visible()
    wait_idle(page)  # every source is on the page
    toggle = chat.get_by_text("Show page", exact=False).first
    toggle.click()
    image = chat.locator('[data-testid="stImage"] img').first
    expect(image).to_be_visible(timeout=30_000)
    width, height = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert (width, height) == (893, 1263)  # an A4 page at scale 1.5
    shot(page, "03-page-preview.png", top=toggle)

    # An upload through the sidebar, ingested into the open collection.
    uploader = sidebar.locator('input[type="file"]')
    uploader.set_input_files(str(real_pdfs / UPLOAD))
    expect(sidebar.get_by_text(UPLOAD)).to_be_visible(timeout=30_000)
    sidebar.get_by_role("button", name="Ingest").click()
    done = sidebar.get_by_text("squad: 1 ingested (1 new", exact=False)
    expect(done).to_be_visible(timeout=INGEST_MS)
    expect(sidebar.get_by_text("8 documents · ", exact=False)).to_be_visible()
    shot(page, "04-uploaded.png", top=done)

    # A new session asks about the uploaded paper and gets it as a source.
    page.reload()
    ask(page, "squad", "What is multi-head attention in the Transformer?")
    expect(checked).to_be_visible(timeout=ANSWER_MS)
    wait_idle(page)
    expect(chat.get_by_text(f"{UPLOAD} · page", exact=False).first).to_be_visible()
    shot(page, "05-answer-from-upload.png", top=chat.get_by_test_id("stChatMessage").last)


def test_highlighted_evidence_is_literal_in_a_real_browser(tmp_path: Path) -> None:
    """The supporting sentence is marked and the answer span bold, in the passage and on the PDF
    page; a passage's HTML and Markdown stay text even where it is highlighted."""
    from playwright.sync_api import expect

    from tests.ui.evidence_page import HOSTILE, QUESTION

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with streamlit(EVIDENCE_PAGE, env, tmp_path) as url, chromium(url) as page:
        expect.set_options(timeout=60_000)
        chat = page.locator('[data-testid="stMainBlockContainer"]')
        expect(
            chat.get_by_text("Answered by the small reader, quoting source [1] · 87 % sure")
        ).to_be_visible()
        marks = chat.locator("mark")
        expect(marks).to_have_count(2)
        quoted, hostile = marks.all_inner_texts()
        assert quoted.startswith("Shortly after he arrived") and quoted.endswith("times.")
        assert chat.locator("mark strong").all_inner_texts() == [QUESTION["answer"]]
        # Shown as typed: no element, link or emphasis was made from the document's text.
        assert " ".join(hostile.split()) == " ".join(HOSTILE.split())
        assert chat.locator("mark script, mark a, mark em, mark h1, mark code").count() == 0
        image = chat.locator('[data-testid="stImage"] img').first
        expect(image).to_be_visible(timeout=30_000)
        shot(page, "06-evidence-highlighted.png", top=chat.get_by_test_id("stChatMessage").first)
