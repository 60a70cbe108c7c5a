"""Query expansion from glossaries: matching rules, the built-in finance glossary on real
questions, and bad glossary files."""

from __future__ import annotations

import json
import os

import pytest

from rag.errors import ConfigError
from rag.glossary import Glossary, built_in_glossaries


@pytest.fixture(scope="module")
def finance() -> Glossary:
    return Glossary.load(["finance"])


def test_finance_is_built_in() -> None:
    assert "finance" in built_in_glossaries()
    assert not Glossary.load([])


def test_phrases_match_whole_words_and_hyphens_as_spaces(finance: Glossary) -> None:
    assert finance.additions("Is 3M a capital-intensive business?") == finance.additions(
        "Is 3M a capital intensive business?"
    )
    assert finance.additions("Is 3M a capital intensive business?")
    # Whole words only: "dividends" is a term, "dividendsx" and "subdividend" are not.
    assert not finance.additions("subdividend dividendsx")


def test_capitalised_terms_match_only_in_capitals(finance: Glossary) -> None:
    [roa] = finance.additions("What is Coca Cola's FY2017 ROA?")
    assert "total assets" in roa
    assert not finance.additions("the roa of the river")
    [ppe] = finance.additions("average PP&E between FY2017 and FY2018")
    assert ppe == "property plant and equipment"
    assert not finance.additions("PP&Ex")


def test_expand_appends_each_expansion_once(finance: Glossary) -> None:
    question = "What is Walmart's FY2018 DPO? DPO uses days payable outstanding and COGS."
    expanded = finance.expand(question)
    assert expanded.startswith(question)
    assert expanded.count("accounts payable") == 1
    assert "cost of goods sold" in expanded
    assert finance.expand("Who won Super Bowl 50?") == "Who won Super Bowl 50?"


def test_real_questions(finance: Glossary, shared_data) -> None:
    """Most FinanceBench questions name a ratio or a statement; almost no SQuAD question does."""
    records = (shared_data / "financebench-dev/questions.jsonl").read_text().splitlines()
    filings = [json.loads(line)["question"] for line in records]
    assert sum(bool(finance.additions(q)) for q in filings) >= len(filings) // 2
    squad = json.loads((shared_data / "squad/dev-v1.1.json").read_text())
    questions = [
        qa["question"]
        for article in squad["data"]
        for paragraph in article["paragraphs"]
        for qa in paragraph["qas"]
    ]
    expanded = [q for q in questions if finance.additions(q)]
    assert len(expanded) < 0.01 * len(questions), expanded[:20]


def test_a_user_glossary_file(tmp_path) -> None:
    path = tmp_path / "legal.toml"
    path.write_text('[[term]]\nmatch = ["NDA"]\nexpand = "non-disclosure agreement"\n')
    glossary = Glossary.load(["finance", str(path)])
    assert glossary.expand("Who signed the NDA?").endswith("non-disclosure agreement")
    # An edited file is read again by the next load (a new search, a new collection in serve).
    path.write_text('[[term]]\nmatch = ["NDA"]\nexpand = "confidentiality agreement"\n')
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    edited = Glossary.load([str(path)])
    assert edited.expand("Who signed the NDA?").endswith("confidentiality agreement")


def test_an_empty_phrase_names_the_file_and_the_term(tmp_path) -> None:
    path = tmp_path / "legal.toml"
    path.write_text(
        '[[term]]\nmatch = ["NDA"]\nexpand = "x"\n[[term]]\nmatch = [" - "]\nexpand = "y"\n'
    )
    with pytest.raises(ConfigError, match=r"legal.toml: term 2: a `match` phrase is empty"):
        Glossary.load([str(path)])


@pytest.mark.parametrize(
    "text",
    [
        "[[term]]\nmatch = []\nexpand = 'x'\n",
        "[[term]]\nmatch = ['x']\n",
        "[[term]\n",
        "term = 3\n",
    ],
)
def test_bad_glossaries_say_what_is_wrong(tmp_path, text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="glossary"):
        Glossary.load([str(path)])


def test_an_unknown_glossary_names_the_built_in_ones() -> None:
    with pytest.raises(ConfigError, match="finance"):
        Glossary.load(["no-such-glossary"])
