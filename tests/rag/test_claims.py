"""The facts of a sentence and the forms a source may state them in (rag/claims.py)."""

from __future__ import annotations

import pytest

from rag.claims import (
    claim_facts,
    missing_facts,
    new_phrases,
    repetition,
    text_keys,
    word_stems,
)


def missing(claim: str, source: str, question: str = "") -> list[str]:
    return [fact.text for fact in missing_facts(claim, text_keys(source) | text_keys(question))]


@pytest.mark.parametrize(
    ("claim", "source"),
    [
        ("It seats 1234 people.", "The hall seats 1,234 people."),
        ("It seats 1,234.0 people.", "The hall seats 1234 people."),
        ("It cost $1,200,000.", "The bridge cost $1.2 million."),
        ("It cost 1.2 million dollars.", "The bridge cost $1,200,000."),
        ("Turnout was 45 percent.", "Turnout was 45%."),
        ("He came third.", "He finished 3rd."),
        ("They won twenty-five games.", "They won 25 games."),
        ("He made 2.5 sacks.", "He recorded 2½ sacks."),
        ("It was built in the 1990s.", "It was built in 1994 and 1995, in the 1990s."),
        ("The NFL chose the date.", "The National Football League chose it."),
        ("The National Football League chose it.", "The NFL chose the date."),
        ("It aired on the Disney–ABC network.", "Disney-ABC aired it."),
        ("He spoke with the Normans.", "The Norman lords met him."),
        ("He arrived in Sept. of that year.", "He arrived in September."),
    ],
)
def test_the_same_fact_written_another_way_is_stated(claim: str, source: str) -> None:
    assert missing(claim, source) == []


@pytest.mark.parametrize(
    ("claim", "source", "named"),
    [
        ("It seats 1,243 people.", "The hall seats 1,234 people.", ["1,243"]),
        ("The bridge cost $1.2 billion.", "The bridge cost $1.2 million.", ["1.2 billion"]),
        ("He finished fourth.", "He finished 3rd.", ["fourth"]),
        ("It opened in March 1990.", "It opened in May 1990.", ["March"]),
        ("The game was won by Carolina.", "Denver won the game.", ["Carolina"]),
        ("The AFL chose the date.", "The National Football League chose it.", ["AFL"]),
    ],
)
def test_a_different_fact_is_missing(claim: str, source: str, named: list[str]) -> None:
    assert missing(claim, source) == named


def test_what_is_not_checked() -> None:
    # A sentence's first word is capitalised whatever it is; "may" is a verb; "one" a pronoun.
    assert missing("Carolina won.", "Denver won.") == []
    assert missing("It may rain in one of the towns.", "Rain fell.") == []
    # What the question names needs no source: the answer may repeat what was asked.
    assert (
        missing("The game was played at Levi's Stadium.", "It was played at Levi's Stadium.") == []
    )
    assert missing("Super Bowl 50 was played there.", "It was played there.") == ["50", "Bowl"]
    assert (
        missing(
            "Super Bowl 50 was played there.",
            "It was played there.",
            "Where was Super Bowl 50 played?",
        )
        == []
    )


def test_claim_facts_names_each_fact_once() -> None:
    facts = claim_facts("Von Miller made 2½ sacks on February 7, 2016, and Miller won it.")
    assert [(f.kind, f.text) for f in facts] == [
        ("number", "2½"),
        ("number", "7"),
        ("number", "2016"),
        ("date", "February"),
        ("name", "Miller"),
    ]


def test_a_loop_repeats_a_phrase_beyond_its_source() -> None:
    loop = "Super Bowl XXXIII, Super Bowl XV, Super Bowl XXII, Super Bowl XXIV"
    assert repetition(loop) == "super bowl"
    assert (
        repetition(
            loop,
            "It won Super Bowl XXXIII, Super Bowl XV, Super Bowl XXII, Super Bowl "
            "XXIV and Super Bowl L.",
        )
        is None
    )
    assert repetition("The Broncos beat the Panthers, and the Broncos won the title.") is None


def test_new_phrases_are_runs_of_words_the_source_never_uses() -> None:
    source = "Students do not pay tuition fees, but some extra costs are levied."
    stated = word_stems(source)
    assert new_phrases("Students pay no tuition, but extra costs are charged.", stated) == []
    assert new_phrases(
        "Students do not pay fees, but the helmeted honeyeater is levied.", stated
    ) == ["helmeted honeyeater"]
    # Function words inside a run belong to it; at its ends they do not.
    assert new_phrases("Costs are levied for the freedom of the ceremony.", stated) == [
        "freedom of the ceremony"
    ]
