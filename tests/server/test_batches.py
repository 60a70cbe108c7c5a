"""Batches of questions over HTTP: a question file in, `rag batch`'s answers file out, as a job
that only its submitter sees, resumable like `rag batch`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rag.accounts import ACCOUNTS_FILE, Accounts
from rag.server import create_app
from tests.conftest import wait_for
from tests.server.conftest import Running, ingest_demo, service_settings, serving
from tests.servers.openai_compat import OpenAICompatServer

QUESTIONS = [
    {"id": "sb1", "question": "Who won Super Bowl 50?"},
    {"id": "sb2", "question": "Where was Super Bowl 50 played?"},
    {"id": "am1", "question": "How large is the Amazon rainforest?"},
    {"id": "am2", "question": "Which countries does the Amazon rainforest span?"},
]

BROKEN = b'{"id": "a", "question": "x"}\n{"id": '


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, minilm: Any, server: OpenAICompatServer
) -> Iterator[tuple[Running, dict[str, str], Any]]:
    index_dir = tmp_path_factory.mktemp("batches") / "indexes"
    settings = service_settings(index_dir, server.base_url, accounts=True)
    ingest_demo(settings, minilm, "demo")
    accounts = Accounts(index_dir / ACCOUNTS_FILE)
    keys = {"ana": accounts.add_user("ana"), "ben": accounts.add_user("ben")}
    accounts.set_owner("demo", "ana")
    accounts.share("demo", "ben")
    app = create_app(settings, embedder=minilm)
    with serving(app) as url:
        yield Running(url, settings, app), keys, app


def client(url: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


def jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def test_a_batch_answers_every_question_for_its_submitter_only(
    api: tuple[Running, dict[str, str], Any],
) -> None:
    running, keys, app = api
    with client(running.url, keys["ana"]) as ana:
        upload = {"questions": ("questions.jsonl", jsonl(QUESTIONS), "application/jsonl")}
        job = ana.post("/v1/collections/demo/batches", files=upload)
        assert job.status_code == 202, job.text
        assert job.json()["kind"] == "batch"
        assert job.json()["progress"] == {"done": 0, "total": 4}

        def finished() -> bool:
            return ana.get(f"/v1/jobs/{job.json()['id']}").json()["state"] in ("done", "failed")

        wait_for(finished, 300, "the batch did not finish", poll_s=0.2)
        record = ana.get(f"/v1/jobs/{job.json()['id']}").json()
        assert record["state"] == "done", record
        assert record["progress"] == {"done": 4, "total": 4}
        assert record["report"]["answered"] == 4 and record["report"]["failed"] == 0
        answers = ana.get(f"/v1/jobs/{job.json()['id']}/answers")
        lines = [json.loads(line) for line in answers.text.splitlines()]
        assert sorted(line["id"] for line in lines) == ["am1", "am2", "sb1", "sb2"]
        assert all(line["error"] is None and "citations" in line for line in lines)
        summary = ana.get(f"/v1/jobs/{job.json()['id']}/answers", params={"format": "csv"})
        rows = list(csv.DictReader(io.StringIO(summary.text)))
        assert sorted(row["id"] for row in rows) == ["am1", "am2", "sb1", "sb2"]

    with client(running.url, keys["ben"]) as ben:  # a reader of the collection, not the submitter
        assert ben.get(f"/v1/jobs/{job.json()['id']}").status_code == 404
        hidden = ben.get(f"/v1/jobs/{job.json()['id']}/answers")
        assert hidden.status_code == 404
        assert hidden.json()["error"]["message"] == f"no batch job with id {job.json()['id']!r}"
        assert ben.get("/v1/jobs").json() == {"jobs": []}

    # Run again (as a restarted server does): every question is already answered.
    stored = app.state.jobs.get(job.json()["id"])
    summary_line, details = app.state.jobs.runners["batch"](stored, lambda done, total: None)
    assert details["skipped"] == 4 and details["answered"] == 0, summary_line


def test_bad_question_files_are_refused_and_nothing_is_kept(
    api: tuple[Running, dict[str, str], Any],
) -> None:
    running, keys, _ = api
    jobs_folder = running.settings.index_dir / ".jobs"
    before = sorted(jobs_folder.rglob("*")) if jobs_folder.exists() else []
    with client(running.url, keys["ana"]) as ana:
        broken = ana.post(
            "/v1/collections/demo/batches",
            files={
                "questions": ("q.jsonl", b'{"id": "a", "question": "x"}\n{"id": ', "text/plain")
            },
        )
        assert broken.status_code == 400
        assert "line 2" in broken.json()["error"]["message"]
        wrong = ana.post(
            "/v1/collections/demo/batches",
            files={"questions": ("q.pdf", b"%PDF-1.4", "application/pdf")},
        )
        assert wrong.status_code == 415
        assert wrong.json()["error"]["message"].startswith("unsupported question file 'q.pdf'")
    with client(running.url, keys["ben"]) as ben:
        elsewhere = ben.post(
            "/v1/collections/nobodys/batches",
            files={"questions": ("q.jsonl", jsonl(QUESTIONS), "application/jsonl")},
        )
        assert elsewhere.status_code == 404
    after = sorted(jobs_folder.rglob("*")) if jobs_folder.exists() else []
    assert after == before
    assert not list(running.settings.index_dir.glob(".batch-*"))
