"""The one sentence splitter and citation pattern, on real SQuAD text: verification splits answers
and passages with them, tuning cuts sentences out of passages, answer scores drop the markers."""

from __future__ import annotations

import pytest

from rag.text import (
    CITATION,
    cited_numbers,
    embedding_text,
    marker_numbers,
    sentence_spans,
    sentence_starts,
    split_sentences,
)


def context(paragraphs: list[dict[str, object]], title: str, holding: str) -> str:
    return next(
        str(p["context"])
        for p in paragraphs
        if p["title"] == title and holding in str(p["context"])
    )


def test_a_squad_paragraph_splits_into_sentences_cut_from_it(squad_paragraphs) -> None:
    text = context(squad_paragraphs, "Super_Bowl_50", "Super Bowl 50 was an American football")
    sentences = split_sentences(text)
    assert len(sentences) == 4
    assert sentences[0] == (
        "Super Bowl 50 was an American football game to determine the champion of the National "
        "Football League (NFL) for the 2015 season."
    )
    assert sentences[2].startswith("The game was played on February 7, 2016, at Levi's Stadium")
    # Tuning cuts a sentence out of its passage: each is there as written, and none is lost.
    assert all(sentence in text for sentence in sentences)
    assert " ".join(sentences) == text


def test_a_quotation_opens_a_sentence(squad_paragraphs) -> None:
    text = context(squad_paragraphs, "Martin_Luther", "Black Cloister")
    sentences = split_sentences(text)
    assert any(
        s.startswith('"This day you see me, and then, not ever again," he said.') for s in sentences
    )
    assert any(s.endswith("walked him to the door of the Black Cloister.") for s in sentences)


def test_markers_after_the_full_stop_stay_with_their_sentence(squad_paragraphs) -> None:
    first, second, *_ = split_sentences(
        context(squad_paragraphs, "Super_Bowl_50", "Super Bowl 50 was an American football")
    )
    answer = f"{first} [1] {second} [1, 2]. [3]"
    assert split_sentences(answer) == [f"{first} [1]", f"{second} [1, 2]. [3]"]
    # A reply that opens with a marker has no sentence before it to join.
    assert split_sentences(f"[2] {second}") == [f"[2] {second}"]
    assert split_sentences("   ") == []


def test_sentence_spans_cut_where_split_sentences_cuts_in_the_texts_own_characters(
    squad_paragraphs,
) -> None:
    # The span reader maps an answer to the sentence that holds it by these offsets.
    for paragraph in squad_paragraphs[:300]:
        text = str(paragraph["context"])
        assert [text[a:b] for a, b in sentence_spans(text)] == split_sentences(text)
    text = "  It opened in 1890. [1] It closed in 1990 [2].  "
    spans = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == ["It opened in 1890. [1]", "It closed in 1990 [2]."]
    assert sentence_spans("") == [] and sentence_spans("   ") == []


def test_markers_are_read_back_in_order_and_dropped_for_scoring() -> None:
    text = "Denver won [2; 4]. It was in Santa Clara [1, 2] [3], not [x] or [1-2]."
    assert cited_numbers(text) == (2, 4, 1, 3)
    assert [marker_numbers(m) for m in CITATION.finditer(text)] == [[2, 4], [1, 2], [3]]
    assert " ".join(CITATION.sub(" ", text).split()) == (
        "Denver won . It was in Santa Clara , not [x] or [1-2]."
    )


@pytest.mark.parametrize("marker", ["[1]", "[1,2]", "[1 , 2]", "[10; 2]"])
def test_every_marker_form_is_one_match(marker: str) -> None:
    assert [m.group(0) for m in CITATION.finditer(f"Paris {marker}.")] == [marker]


def test_tables_are_plain_rows_for_the_embedder() -> None:
    table = "| (Millions) | 2022 | 2021 |\n| --- | :---: | --- |\n| Net sales | $34,229 | |"
    text = f"3M · Income\n{table}"
    assert embedding_text(text) == "3M · Income\n(Millions), 2022, 2021\nNet sales, $34,229"
    assert embedding_text("a | b, not a table") == "a | b, not a table"


def test_sentence_spans_are_offsets_of_the_same_sentences() -> None:
    text = '  It opened in 1890.\n It closed in 1990 (briefly).  Then? no.\n\n"Done." '
    spans = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == [
        "It opened in 1890.",
        "It closed in 1990 (briefly).",
        "Then? no.",
        '"Done."',
    ]
    assert [text[a:b] for a, b in spans] == split_sentences(text)
    assert sentence_spans("") == [] and sentence_spans(" \n ") == []


def test_sentence_starts_count_sentences_as_they_are_written() -> None:
    text = "The Broncos won. [1] They beat the Panthers 24–10 [1]. Miller was MVP."
    starts = sentence_starts(text)
    assert [text[at:].split()[0] for at in starts] == ["The", "They", "Miller"]
    assert len(starts) == len(split_sentences(text))
    # While it is written: a full stop and a half-written marker start nothing yet.
    assert len(sentence_starts("The Broncos won. [")) == 1
    assert len(sentence_starts("The Broncos won. [1] ")) == 1
    assert len(sentence_starts("The Broncos won. [1] T")) == 2
    assert sentence_starts("  ") == []
