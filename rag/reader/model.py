"""The span reader: the exact words of the passages that answer a question, with no LLM.

    reader = SpanReader.packaged()
    spans = reader.read("Who won Super Bowl 50?", [(1, passage_one), (2, passage_two)])
    best = spans[0]   # best.n == 2, passage_two[best.start:best.end] == best.text, best.confidence

A question-answering head on MiniLM (rag/reader/model/README.md), run by ONNX Runtime on the CPU.
Each passage is cut into windows; in each, every passage token gets a start and an end score,
and a candidate span is a (start, end) pair of passage tokens, end not before start, at most
`max_answer_tokens` long, within one sentence, scored by the sum. Candidates from all passages
compete together; the confidence of a span is a logistic regression over what the reading says
about it (rag/reader/calibration.py), fitted on SQuAD articles the reader was not trained on.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.answer_eval import normalize
from rag.errors import ConfigError, ModelError
from rag.reader.calibration import Calibrator, Candidate, candidate_features
from rag.reader.export import META_FILE
from rag.reader.windows import Window, encode_many, reader_tokenizer
from rag.text import sentence_spans

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

PACKAGED_FOLDER = Path(__file__).resolve().parent / "model"
CALIBRATION_FILE = "calibration.json"
# Candidates kept per window: enough for the probability of the best one to mean something.
_PER_WINDOW = 20
# When passages come in search order, a span in the passage ranked r loses RANK_PRIOR * ln(r)
# of its margin: the search's first passage held a gold answer for 81 % of the calibration
# articles' questions, the others far less often. Chosen on those articles (end to end over the
# SQuAD collection, 500 questions: exact match 40.0 % with no prior, 40.8 % at 1, 41.4 % at 2,
# 41.8 % at 3; docs/answers.md), not on the held-out ones. Checked again for the three-epoch
# reader there (benchmarks/reader_priors.py, search score-fused): 46.2, 47.4, 48.0, 48.0 %.
RANK_PRIOR = 2.0


@dataclass(frozen=True)
class Span:
    """An answer span in one passage, the sentence holding it, and how sure the reader is."""

    n: int
    text: str
    start: int
    end: int
    sentence: str
    sentence_start: int
    sentence_end: int
    score: float
    confidence: float


class SpanReader:
    """Reads passages for the span that answers a question; loads its model once, on first use.

    reader = SpanReader()                      # the packaged model
    reader.read("When was it built?", [(1, "It was built in 1890.")])[0].text   # "1890"
    """

    def __init__(self, folder: Path | None = None, threads: int = 2) -> None:
        self.folder = Path(folder) if folder is not None else PACKAGED_FOLDER
        if not (self.folder / META_FILE).is_file():
            raise ModelError(f"no span reader in {self.folder} (it needs {META_FILE})")
        if threads < 1:
            raise ModelError(f"threads must be at least 1, got {threads}")
        self.meta: dict[str, Any] = json.loads((self.folder / META_FILE).read_text("utf-8"))
        kind = "int8" if self.meta.get("quantized") else "fp32"
        self.name = f"span-reader-minilm-l6-squad-{kind}"
        self.threads = threads
        self._session: Any = None
        self._tokenizer: PreTrainedTokenizerFast | None = None
        self._calibrator: Calibrator | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SpanReader({str(self.folder)!r})"

    @classmethod
    def packaged(cls) -> SpanReader:
        """The reader that ships in the package, one per process."""
        return _packaged()

    def _load(self) -> tuple[Any, PreTrainedTokenizerFast]:
        with self._lock:
            if self._session is None or self._tokenizer is None:
                import onnxruntime as ort

                options = ort.SessionOptions()
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                # Idle threads would otherwise spin and take the cores from other work.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                try:
                    self._session = ort.InferenceSession(
                        str(self.folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
                    )
                    self._tokenizer = reader_tokenizer(self.folder)
                except Exception as e:
                    raise ModelError(f"cannot load the span reader in {self.folder}: {e}") from e
                calibration = self.folder / CALIBRATION_FILE
                if calibration.is_file():
                    self._calibrator = Calibrator.load(calibration)
                logger.info("loaded %s from %s", self.name, self.folder)
            return self._session, self._tokenizer

    @property
    def calibrated(self) -> bool:
        """Whether confidences come from a fitted calibration (else the softmax probability)."""
        self._load()
        return self._calibrator is not None

    def read(
        self,
        question: str,
        passages: Sequence[tuple[int, str]],
        top: int = 3,
        ranked: bool = False,
    ) -> list[Span]:
        """Best distinct spans over all passages, best first (empty when there are no passages).

        Spans are distinct answers: a span is left out when a better one has the same words
        or overlaps it in the same passage. `ranked`: the passages come best first (a search's
        order), and a span from a passage further down needs a larger margin (RANK_PRIOR).
        """
        if not question.strip():
            raise ConfigError("the question is empty")
        if top < 1:
            raise ConfigError(f"top must be at least 1, got {top}")
        candidates = self.candidates(question, passages)
        if not candidates:
            return []
        texts = dict(passages)
        ordered = candidates
        if ranked:
            rank = {n: r for r, (n, _) in enumerate(passages, start=1)}
            ordered = sorted(
                candidates, key=lambda c: -(c.margin - RANK_PRIOR * math.log(rank[c.n]))
            )
        chosen = distinct(ordered, texts, top)
        features = candidate_features(question, candidates, chosen, texts)
        if self._calibrator is not None:
            confidences = self._calibrator.probabilities(features)
        else:
            confidences = np.asarray([row["probability"] for row in features])
        return [
            _span(candidate, texts[candidate.n], float(confidence))
            for candidate, confidence in zip(chosen, confidences, strict=True)
        ]

    def candidates(self, question: str, passages: Sequence[tuple[int, str]]) -> list[Candidate]:
        """Every candidate span the model proposes, best first, a passage's span once (its best
        over the windows that hold it). Best is the span's score over its own window's "no span"
        score: raw scores of different windows are not on one scale, and a window with no answer
        still has a top span (on the calibration articles, the gold paragraph among 4 retrieved
        ones: exact match 39.1 % by raw score, 43.5 % by this margin, the gold paragraph alone
        49.6 % either way)."""
        readable = [(n, text) for n, text in passages if text.strip()]
        if not readable:
            return []
        session, tokenizer = self._load()
        windows = encode_many(
            tokenizer,
            [question] * len(readable),
            [text for _, text in readable],
            int(self.meta["max_length"]),
            int(self.meta["stride"]),
        )
        best: dict[tuple[int, int, int], Candidate] = {}
        for (n, text), passage_windows in zip(readable, windows, strict=True):
            sentence_of = _sentence_index(text)
            for window in passage_windows:
                for candidate in self._window_candidates(session, n, window):
                    # An answer lies within one sentence; one that runs across is noise.
                    if sentence_of[candidate.start] != sentence_of[candidate.end - 1]:
                        continue
                    key = (candidate.n, candidate.start, candidate.end)
                    if key not in best or best[key].margin < candidate.margin:
                        best[key] = candidate
        return sorted(best.values(), key=lambda c: (-c.margin, c.n, c.start, c.end))

    def _window_candidates(self, session: Any, n: int, window: Window) -> list[Candidate]:
        """The best spans of one window (one window per call: int8 activations are quantised per
        call, so a span's score must not depend on which windows share its batch)."""
        feeds = {
            "input_ids": np.asarray([window.input_ids], dtype=np.int64),
            "attention_mask": np.ones((1, len(window.input_ids)), dtype=np.int64),
            "token_type_ids": np.asarray([window.token_type_ids], dtype=np.int64),
        }
        inputs = [str(name) for name in self.meta.get("inputs", feeds)]
        start_logits, end_logits = session.run(None, {k: feeds[k] for k in inputs})
        starts, ends = start_logits[0], end_logits[0]
        tokens = window.passage_tokens
        if not tokens:
            return []
        first, last = tokens[0], tokens[-1] + 1
        scores = starts[first:last, None] + ends[None, first:last]
        # Only end >= start, and at most max_answer_tokens long.
        width = int(self.meta.get("max_answer_tokens", 30))
        allowed = np.triu(np.ones(scores.shape, dtype=bool)) & ~np.triu(
            np.ones(scores.shape, dtype=bool), k=width
        )
        scores = np.where(allowed, scores, -np.inf)
        flat = np.argsort(-scores, axis=None, kind="stable")[:_PER_WINDOW]
        null = float(starts[0] + ends[0])
        out = []
        for index in flat:
            i, j = divmod(int(index), scores.shape[1])
            if not np.isfinite(scores[i, j]):
                break
            begin, finish = window.offsets[first + i], window.offsets[first + j]
            if begin is None or finish is None or finish[1] <= begin[0]:
                continue
            out.append(
                Candidate(
                    n=n,
                    start=begin[0],
                    end=finish[1],
                    score=float(scores[i, j]),
                    null_score=null,
                    tokens=j - i + 1,
                )
            )
        return out


def distinct(
    candidates: Sequence[Candidate], texts: Mapping[int, str], top: int
) -> list[Candidate]:
    """The best `top` candidates such that none repeats a better one's words or overlaps it in
    the same passage (candidates come best first)."""
    chosen: list[Candidate] = []
    seen: set[str] = set()
    for candidate in candidates:
        words = normalize(texts[candidate.n][candidate.start : candidate.end])
        if words in seen or any(candidate.overlaps(other) for other in chosen):
            continue
        chosen.append(candidate)
        seen.add(words)
        if len(chosen) == top:
            break
    return chosen


def _sentence_index(passage: str) -> np.ndarray:
    """For each character of `passage`, the number of the sentence it belongs to (the spaces
    between sentences belong to the sentence after them)."""
    index = np.zeros(len(passage), dtype=np.int32)
    for number, (start, _) in enumerate(sentence_spans(passage)[1:], start=1):
        index[start:] = number
    return index


def _span(candidate: Candidate, passage: str, confidence: float) -> Span:
    """The Span of `candidate`, with the sentence of `passage` that holds it."""
    begin, finish = next(
        ((a, b) for a, b in sentence_spans(passage) if a <= candidate.start < b),
        (candidate.start, candidate.end),
    )
    return Span(
        n=candidate.n,
        text=passage[candidate.start : candidate.end],
        start=candidate.start,
        end=candidate.end,
        sentence=passage[begin:finish],
        sentence_start=begin,
        sentence_end=finish,
        score=candidate.score,
        confidence=min(1.0, max(0.0, confidence)),
    )


@functools.cache
def _packaged() -> SpanReader:
    return SpanReader()
