"""Time from `make run` to a chat that answers, as a newcomer meets it (install excluded).

    python benchmarks/first_run.py              # fresh index folder and model caches
    python benchmarks/first_run.py --keep-caches   # the ONNX exports and SmolLM2 already made

What `make run` does, step by step, in a scratch folder: `python -m ui.demo --background` (build
the demo collection; start training its reranker in the background), then `streamlit run
ui/app.py`, then a real browser (Chromium through Playwright) opens the chat, asks the first demo
question and waits until the reply is finished. By default the model caches start empty
(XDG_CACHE_HOME points at an empty folder), so the one-off ONNX exports and the SmolLM2 conversion
are counted, as on a fresh machine. Also counts the lines on the terminal that are warnings.
Writes benchmarks/results/first_run.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
QUESTION = "Which NFL team represented the AFC at Super Bowl 50?"
WARNING = re.compile(r"warn|deprecat|traceback|error", re.IGNORECASE)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_healthy(url: str, limit_s: float = 600) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"streamlit was not healthy after {limit_s} s")


def first_answer(url: str) -> float:
    """Seconds from opening the page to a finished reply to QUESTION, in a real browser."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=600_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            started = time.monotonic()
            page.goto(url)
            box = page.get_by_placeholder("Ask a question about demo")
            expect(box).to_be_visible()
            box.fill(QUESTION)
            box.press("Enter")
            replies = page.get_by_test_id("stChatMessage")
            expect(replies).to_have_count(2)
            page.wait_for_timeout(300)
            page.wait_for_selector(
                '[data-testid="stStatusWidgetRunningIcon"]', state="detached", timeout=600_000
            )
            seconds = time.monotonic() - started
            page.screenshot(path=str(ROOT / "benchmarks" / "results" / "first_run.png"))
            return seconds
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-caches", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/first_run.json")
    args = parser.parse_args()

    results: dict[str, Any] = {"cpu_count": os.cpu_count(), "fresh_caches": not args.keep_caches}
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            **os.environ,
            "RAG_INDEX_DIR": str(Path(scratch) / "indexes"),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        if not args.keep_caches:
            env["XDG_CACHE_HOME"] = str(Path(scratch) / "cache")
        started = time.monotonic()
        demo = subprocess.run(
            [sys.executable, "-m", "ui.demo", "--background"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        results["demo_s"] = round(time.monotonic() - started, 1)
        port = free_port()
        log = Path(scratch) / "streamlit.log"
        with log.open("w") as sink:
            server = subprocess.Popen(
                [
                    sys.executable, "-m", "streamlit", "run", "ui/app.py",
                    "--server.headless", "true", "--server.port", str(port),
                    "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
                ],
                cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                url = f"http://127.0.0.1:{port}"
                wait_healthy(url)
                results["server_ready_s"] = round(time.monotonic() - started, 1)
                results["first_answer_in_browser_s"] = round(first_answer(url), 1)
                results["make_run_to_first_answer_s"] = round(time.monotonic() - started, 1)
            finally:
                server.terminate()
                server.wait(timeout=30)
        progress_file = Path(scratch) / "indexes" / "demo" / "tune" / "reranker-progress.json"
        if progress_file.is_file():
            progress = json.loads(progress_file.read_text())
            results["background_training_at_the_end"] = progress
            if not progress.get("finished"):
                with contextlib.suppress(OSError):
                    os.kill(int(progress["pid"]), 15)
        terminal = demo.stdout + demo.stderr + log.read_text()
        results["terminal_lines"] = len(terminal.splitlines())
        results["terminal_warning_lines"] = [
            line for line in terminal.splitlines() if WARNING.search(line)
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
