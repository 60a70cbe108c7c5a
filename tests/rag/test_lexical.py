"""BM25 tokens for numbers as people write them, and indexes made another way rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import Stemmer

from rag.lexical import LEXICAL_CONFIG, LexicalIndex, _tokenize

ROWS = [
    "| Net sales | $ 34,229 | $ 35,355 | $ 32,184 |",
    "| Operating income (loss) | (123) | 6,539 | 7,161 |",
    "| Gross margin | 12.4% | 46.5% | 48.1% |",
    "FY2022 revenue grew in every segment, FY2021 did not",
]


@pytest.mark.parametrize(
    ("query", "row"),
    [("$34,229", 0), ("34229", 0), ("(123)", 1), ("12.4%", 2), ("FY2022", 3), ("46.5", 2)],
)
def test_numbers_are_found_as_people_write_them(query: str, row: int) -> None:
    index = LexicalIndex.build(np.arange(len(ROWS)), ROWS)
    _, keys = index.search(query, k=2)
    assert keys[0] == row


def test_number_tokens() -> None:
    tokens = _tokenize(["Net sales $1,234.5 million, (123) down 12.4% in FY2022, Q4'21"], None)[0]
    assert {"1234.5", "123", "12.4", "fy", "2022", "q4", "21"} <= set(tokens)
    assert "234" not in tokens


def test_index_tokenized_another_way_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "lexical"
    LexicalIndex.build(np.arange(len(ROWS)), ROWS).save(folder)
    assert LexicalIndex.load(folder).size == len(ROWS)
    old = {key: value for key, value in LEXICAL_CONFIG.items() if key != "periods"}
    (folder / "config.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="it was built with"):
        LexicalIndex.load(folder)


def test_stemmer_is_still_applied() -> None:
    assert _tokenize(["segments"], Stemmer.Stemmer("english"))[0] == ["segment"]
