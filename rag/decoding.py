"""Decoding for local models: no loops, and an end at the answer's sentence limit.

    decoding = Decoding(repetition_penalty=1.2, max_sentences=4)
    processors = answer_processors(decoding, prompt_tokens, common_tokens(tokenizer, "cpu"))
    cut = AnswerCut(decoding.max_sentences, prompt_text)
    for piece in streamed_text:
        yield cut.feed(piece)   # '' once the answer must end; then cut.done is True

Used by rag.generation's transformers backends; an OpenAI-compatible server decodes on its own.
torch and transformers are imported only when processors are built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rag.claims import FUNCTION_WORDS, Loops
from rag.errors import ConfigError
from rag.text import sentence_starts

if TYPE_CHECKING:
    from rag.settings import Settings


@dataclass(frozen=True)
class Decoding:
    """How a local model keeps out of loops and where it stops, beyond max_tokens and temperature.

    Small models fall into loops: "Super Bowl 51, Super Bowl 52, ..." or one sentence over and
    over, until max_tokens. Measured on 20 demo questions in docs/answers.md.

    - `repetition_penalty` (1: off) divides the odds of each word the answer has used. Not the
      prompt's words, which a grounded answer should copy; not punctuation, digits, brackets or
      function words, which every answer repeats.
    - `no_repeat_ngram` (0: off) forbids saying a run of that many tokens twice in the answer
      (a run may still end in punctuation, a digit or a bracket: "[1]." ends many sentences).
    - `max_sentences` (0: no limit) ends the answer after that many finished sentences, as the
      answer prompt asks (rag.pipeline.MAX_SENTENCES).
    - `stop_at_loops` ends it where a sentence starts to repeat a phrase beyond what any sentence
      of the prompt says (rag.claims.Loops).
    """

    repetition_penalty: float = 1.1
    no_repeat_ngram: int = 4
    max_sentences: int = 4
    stop_at_loops: bool = True

    def __post_init__(self) -> None:
        if self.repetition_penalty < 1.0:
            raise ConfigError(
                f"repetition_penalty must be 1 (off) or more, got {self.repetition_penalty}"
            )
        if self.no_repeat_ngram < 0 or self.no_repeat_ngram == 1 or self.max_sentences < 0:
            raise ConfigError(
                f"no_repeat_ngram must be 0 (off) or 2 or more, got {self.no_repeat_ngram}; "
                f"max_sentences 0 (no limit) or more, got {self.max_sentences}"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> Decoding:
        return cls(
            repetition_penalty=settings.llm_repetition_penalty,
            no_repeat_ngram=settings.llm_no_repeat_ngram,
            max_sentences=settings.llm_max_sentences,
        )


class AnswerCut:
    """Reads an answer as it streams and ends it after `max_sentences` finished sentences (0: no
    limit), or as soon as its last sentence loops beyond what `source` (the prompt) says."""

    def __init__(self, max_sentences: int, source: str = "", stop_at_loops: bool = True) -> None:
        self.max_sentences = max_sentences
        self.loops = Loops(source) if stop_at_loops else None
        self.text = ""
        self.done = False

    def feed(self, piece: str) -> str:
        """The part of `piece` that belongs to the answer ('' once it has ended)."""
        if self.done:
            return ""
        before = len(self.text)
        self.text += piece
        starts = sentence_starts(self.text)
        if self.max_sentences and len(starts) > self.max_sentences:
            self.done = True
            return self.text[before : starts[self.max_sentences]].rstrip()
        if self.loops and self.loops.find(self.text[starts[-1] :] if starts else self.text):
            self.done = True
            return ""
        return piece


@dataclass(frozen=True)
class CommonTokens:
    """Token ids that any answer repeats, as torch tensors: `marks` have no letter (punctuation,
    digits, brackets: "[1]." ends many sentences), `words` are function words ("the", "was")."""

    marks: Any
    words: Any


def common_tokens(tokenizer: Any, device: str) -> CommonTokens:
    """The common tokens of `tokenizer`'s vocabulary, found by decoding each token once."""
    import torch

    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    marks = [i for i, text in enumerate(texts) if not any(ch.isalpha() for ch in text)]
    words = [i for i, text in enumerate(texts) if text.strip().lower() in FUNCTION_WORDS]
    return CommonTokens(
        torch.tensor(marks, dtype=torch.long, device=device),
        torch.tensor(words, dtype=torch.long, device=device),
    )


def answer_processors(decoding: Decoding, prompt_tokens: int, common: CommonTokens) -> list[Any]:
    """Logits processors for `decoding`, acting on the answer's tokens only (after the prompt):
    a grounded answer should copy the sources' words, so those are not penalised. The penalty
    spares all common tokens (penalised, "The answer is: The ..." was pushed off its track); the
    n-gram ban spares only the marks, so "who was on the" cannot come round a third time."""
    import torch
    from transformers import LogitsProcessor

    spared = torch.cat([common.marks, common.words])

    class AnswerRepetitionPenalty(LogitsProcessor):
        """Divides the odds of each word token the answer has used (CTRL's penalty)."""

        def __init__(self, penalty: float) -> None:
            self.penalty = penalty
            self.masks: dict[int, Any] = {}

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            answer = input_ids[:, prompt_tokens:]
            if answer.shape[1] == 0:
                return scores
            free = self._mask(scores.shape[-1], scores.device)[answer]
            used = torch.gather(scores, 1, answer)
            penalised = torch.where(used < 0, used * self.penalty, used / self.penalty)
            return scores.scatter(1, answer, torch.where(free, used, penalised))

        def _mask(self, vocabulary: int, device: Any) -> Any:
            if vocabulary not in self.masks:
                mask = torch.zeros(vocabulary, dtype=torch.bool, device=device)
                mask[spared[spared < vocabulary].to(device)] = True
                self.masks[vocabulary] = mask
            return self.masks[vocabulary]

    class AnswerNoRepeatNGram(LogitsProcessor):
        """Forbids the word token that would say a run of n answer tokens a second time."""

        def __init__(self, n: int) -> None:
            self.n = n
            self.marks = set(common.marks.tolist())

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            for row in range(input_ids.shape[0]):
                answer = input_ids[row, prompt_tokens:].tolist()
                if len(answer) < self.n:
                    continue
                prefix = answer[len(answer) - self.n + 1 :]
                banned = [
                    answer[i + self.n - 1]
                    for i in range(len(answer) - self.n + 1)
                    if answer[i : i + self.n - 1] == prefix
                    and answer[i + self.n - 1] not in self.marks
                ]
                if banned:
                    scores[row, banned] = float("-inf")
            return scores

    processors: list[Any] = []
    if decoding.repetition_penalty != 1.0:
        processors.append(AnswerRepetitionPenalty(decoding.repetition_penalty))
    if decoding.no_repeat_ngram:
        processors.append(AnswerNoRepeatNGram(decoding.no_repeat_ngram))
    return processors
