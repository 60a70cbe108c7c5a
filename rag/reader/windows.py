"""A question and a passage as the reader sees them: token windows over the passage, and back.

    tokenizer = reader_tokenizer(folder)
    for window in encode(tokenizer, "Who won?", passage, max_length=256, stride=96):
        window.input_ids, window.offsets   # offsets[i]: passage chars of token i, None off-passage

Training and inference cut windows the same way here, so a span the model learned to point at
decodes to the same characters it was labelled with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# A question longer than this is cut: windows keep room for the passage (SQuAD questions are
# 12 tokens on average; a 100 KB question must not push the passage out of every window).
MAX_QUESTION_TOKENS = 64


@dataclass(frozen=True)
class Window:
    """One model input: [CLS] question [SEP] part of the passage [SEP].

    `offsets[i]` is the (start, end) of token i in the passage's characters, or None for the
    question and special tokens, which no span may touch.
    """

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...]
    offsets: tuple[tuple[int, int] | None, ...]

    @property
    def passage_tokens(self) -> range:
        """Token positions that belong to the passage (contiguous, after the question)."""
        first = next((i for i, o in enumerate(self.offsets) if o is not None), len(self.offsets))
        last = max((i for i, o in enumerate(self.offsets) if o is not None), default=first - 1)
        return range(first, last + 1)


def reader_tokenizer(folder: Path | str) -> PreTrainedTokenizerFast:
    """The fast (Rust) tokenizer saved in `folder`: only fast tokenizers give character offsets."""
    from transformers import AutoTokenizer

    return cast(
        "PreTrainedTokenizerFast", AutoTokenizer.from_pretrained(str(folder), use_fast=True)
    )


def clip_question(tokenizer: PreTrainedTokenizerFast, question: str) -> str:
    """`question` cut after MAX_QUESTION_TOKENS tokens, at a character boundary."""
    encoded = tokenizer(
        question, add_special_tokens=False, return_offsets_mapping=True, truncation=False
    )
    offsets = encoded["offset_mapping"]
    if len(offsets) <= MAX_QUESTION_TOKENS:
        return question
    return question[: offsets[MAX_QUESTION_TOKENS - 1][1]]


def encode(
    tokenizer: PreTrainedTokenizerFast,
    question: str,
    passage: str,
    max_length: int,
    stride: int,
) -> list[Window]:
    """Windows of at most `max_length` tokens over `passage`, consecutive ones sharing `stride`
    tokens, so an answer cut by one window's edge lies whole in the next."""
    return encode_many(tokenizer, [question], [passage], max_length, stride)[0]


def encode_many(
    tokenizer: PreTrainedTokenizerFast,
    questions: Sequence[str],
    passages: Sequence[str],
    max_length: int,
    stride: int,
) -> list[list[Window]]:
    """`encode` for pairs of questions and passages in one tokenizer call: windows per pair."""
    if not questions:
        return []
    encoded = tokenizer(
        [clip_question(tokenizer, q) for q in questions],
        list(passages),
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_token_type_ids=True,
        padding=False,
    )
    out: list[list[Window]] = [[] for _ in questions]
    for row, pair in enumerate(encoded["overflow_to_sample_mapping"]):
        sequence = encoded.sequence_ids(row)
        offsets = tuple(
            (int(o[0]), int(o[1])) if kind == 1 else None
            for o, kind in zip(encoded["offset_mapping"][row], sequence, strict=True)
        )
        out[pair].append(
            Window(
                tuple(encoded["input_ids"][row]),
                tuple(encoded["token_type_ids"][row]),
                offsets,
            )
        )
    return out


def token_span(window: Window, start: int, end: int) -> tuple[int, int] | None:
    """The first and last token of the passage's characters [start, end) in `window`, or None
    when the window does not hold them whole (a training label then points at [CLS])."""
    tokens = window.passage_tokens
    if not tokens:
        return None
    first_offset, last_offset = window.offsets[tokens[0]], window.offsets[tokens[-1]]
    if first_offset is None or last_offset is None:
        return None
    if start < first_offset[0] or end > last_offset[1]:
        return None
    first = next(i for i in tokens if (o := window.offsets[i]) is not None and o[1] > start)
    last = max(i for i in tokens if (o := window.offsets[i]) is not None and o[0] < end)
    return (first, last) if first <= last else None
