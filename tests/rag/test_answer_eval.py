"""`rag eval answers`: SQuAD EM/F1, citation precision, unsupported share, refusals, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.answer_eval import evaluate_answers, normalize, token_f1
from rag.cli import cli
from rag.errors import ConfigError


def test_squad_normalisation_and_f1() -> None:
    assert normalize("The  Denver Broncos!") == "denver broncos"
    assert token_f1("Denver Broncos", "the Denver Broncos") == 1.0
    assert token_f1("the Broncos of Denver", "Denver Broncos") == pytest.approx(0.8)
    assert token_f1("Carolina", "Denver Broncos") == 0.0


def record(**fields) -> dict:
    base = {
        "id": "q",
        "answer": "",
        "refused": False,
        "error": None,
        "citations": [],
        "sentences": [],
    }
    return {**base, **fields}


def test_scores() -> None:
    records = [
        record(
            answer="Denver Broncos [1].",
            gold_answer=["Denver Broncos", "the Broncos"],
            gold_document="/data/Super_Bowl_50.md",
            gold_page=1,
            citations=[
                {"n": 1, "document": "/x/Super_Bowl_50.md", "page": 1},
                {"n": 2, "document": "/x/Warsaw.md", "page": 1},
            ],
            sentences=[{"supported": True}, {"supported": False}],
        ),
        record(refused=True, answer="The documents do not contain ...", gold_answer="Santa Clara"),
        record(error="LLM endpoint ... timed out", gold_answer="x"),
        record(answer="It was played in Santa Clara, California [1].", gold_answer="Santa Clara"),
    ]
    scores = evaluate_answers(records)
    assert scores["exact_match"] == 0.25  # only the first; refused and failed count as wrong
    assert scores["contains_gold"] == 0.5
    assert scores["citation_precision"] == 0.5
    assert scores["unsupported_sentences"] == 0.5
    assert (scores["refusal_rate"], scores["error_rate"]) == (0.25, 0.25)


def test_cli_report_compares_runs(tmp_path: Path) -> None:
    a, b = tmp_path / "small.jsonl", tmp_path / "large.jsonl"
    a.write_text(json.dumps(record(answer="Carolina", gold_answer="Denver Broncos")) + "\n")
    b.write_text(json.dumps(record(answer="Denver Broncos", gold_answer="Denver Broncos")) + "\n")
    report = tmp_path / "report" / "answers.md"
    result = CliRunner().invoke(
        cli, ["eval", "answers", str(a), str(b), "--report", str(report), "--json"]
    )
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)
    assert runs["small"]["exact_match"] == 0.0 and runs["large"]["exact_match"] == 1.0
    text = report.read_text()
    assert "| small | 1 |" in text and "| large | 1 |" in text and "![metrics](answers.png)" in text
    assert report.with_suffix(".png").stat().st_size > 5_000


def test_missing_file(tmp_path: Path) -> None:
    from rag.answer_eval import load_records

    with pytest.raises(ConfigError, match="answers file not found"):
        load_records(tmp_path / "none.jsonl")
