"""The reader's confidence: a probability that a span answers the question, from what the reading
says about it, fitted once on SQuAD articles the reader never trained on.

    rows = candidate_features(question, candidates, chosen, texts)   # one dict per chosen span
    Calibrator.fit(rows, labels).save(folder / "calibration.json")
    Calibrator.load(path).probabilities(rows)                         # one float in [0, 1] each

The features are properties of the reading, not of a collection (no threshold tuned to one
corpus): the span's score; its share of the probability over every candidate of every passage;
its margin over the best different answer; its margin over the window's "no span" score (the
reader was trained to point there when a passage does not hold the answer); its length; how many
of the question's words its sentence holds, and how many of its own words merely repeat the
question. A logistic regression maps them to a probability.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.answer_eval import normalize
from rag.errors import ModelError
from rag.text import sentence_spans

FEATURES = (
    "score",
    "probability",
    "margin",
    "null_margin",
    "log_words",
    "question_overlap",
    "echo",
)
# A margin with no rival to measure against counts as this wide.
_MAX_MARGIN = 10.0
_WORD = re.compile(r"\w+")
# Words that say nothing about what a question asks.
_STOPWORDS = frozenset(
    _WORD.findall(
        "a an the of in on at to for from by with and or is are was were be been being do does "
        "did what which who whom whose when where why how that this these those it its as into "
        "than then there their they he she his her him i you we our your not no can could would "
        "should will has have had many much"
    )
)


@dataclass(frozen=True)
class Candidate:
    """A span the model proposes: passage `n`, characters [start, end), its score (start + end
    logit), the "no span" score of the window it came from, and its length in tokens."""

    n: int
    start: int
    end: int
    score: float
    null_score: float
    tokens: int

    @property
    def margin(self) -> float:
        """The span's score over its window's "no span" score: comparable across windows."""
        return self.score - self.null_score

    def overlaps(self, other: Candidate) -> bool:
        """Whether both lie in the same passage and share a character."""
        return self.n == other.n and self.start < other.end and other.start < self.end


def content_words(text: str) -> set[str]:
    """The lower-cased words of `text` that are not stopwords."""
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def candidate_features(
    question: str,
    candidates: Sequence[Candidate],
    chosen: Sequence[Candidate],
    texts: Mapping[int, str],
) -> list[dict[str, float]]:
    """FEATURES of each span in `chosen`, measured against all `candidates` (best first). The
    share of probability and the margin over the next different answer compare candidates by
    `Candidate.margin`, the order they are ranked in."""
    words = [normalize(texts[c.n][c.start : c.end]) for c in candidates]
    scores = np.asarray([c.margin for c in candidates], dtype=np.float64)
    weights = np.exp(scores - scores.max())
    total = float(weights.sum())
    mass: dict[str, float] = {}
    for text, weight in zip(words, weights, strict=True):
        mass[text] = mass.get(text, 0.0) + float(weight)
    asked = content_words(question)
    rows = []
    for span in chosen:
        text = texts[span.n][span.start : span.end]
        own = normalize(text)
        rival = next(
            (
                c.margin
                for c, other in zip(candidates, words, strict=True)
                if other != own and not c.overlaps(span)
            ),
            None,
        )
        margin = _MAX_MARGIN if rival is None else span.margin - rival
        sentence = _sentence(texts[span.n], span.start, span.end)
        span_words = content_words(text)
        rows.append(
            {
                "score": span.score,
                "probability": mass.get(own, 0.0) / total,
                "margin": float(np.clip(margin, -_MAX_MARGIN, _MAX_MARGIN)),
                "null_margin": float(np.clip(span.margin, -20.0, 20.0)),
                "log_words": math.log1p(len(_WORD.findall(text))),
                "question_overlap": len(asked & content_words(sentence)) / max(1, len(asked)),
                "echo": len(span_words & asked) / max(1, len(span_words)),
            }
        )
    return rows


def _sentence(passage: str, start: int, end: int) -> str:
    """The sentences of `passage` that the characters [start, end) touch."""
    spans = [s for s in sentence_spans(passage) if s[0] < end and start < s[1]]
    return passage[spans[0][0] : spans[-1][1]] if spans else passage


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float = 1.0, weights: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Coefficients and intercept of a logistic regression of labels `y` (0 or 1) on the rows of
    `x`: maximum (optionally `weights`-weighted) likelihood with an L2 penalty `l2` on the
    coefficients, not the intercept, by Newton's method."""
    z = np.hstack([np.ones((len(x), 1)), x])
    sample = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(100):
        p = _sigmoid(z @ w)
        gradient = z.T @ (sample * (p - y)) + penalty * w
        hessian = (z * (sample * p * (1 - p))[:, None]).T @ z + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[1:], float(w[0])


def _matrix(rows: Sequence[Mapping[str, float]]) -> np.ndarray:
    return np.asarray([[float(row[name]) for name in FEATURES] for row in rows], dtype=np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass(frozen=True)
class Calibrator:
    """A logistic regression over standardised FEATURES."""

    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    label: str
    fitted_on: Mapping[str, Any]

    @classmethod
    def fit(
        cls,
        rows: Sequence[Mapping[str, float]],
        labels: Sequence[bool],
        label: str,
        fitted_on: Mapping[str, Any],
        l2: float = 1.0,
    ) -> Calibrator:
        """Maximum likelihood with an L2 penalty `l2` on the coefficients (Newton's method)."""
        x = _matrix(rows)
        y = np.asarray(labels, dtype=np.float64)
        if len(x) == 0 or y.min() == y.max():
            raise ModelError("calibration needs examples of both right and wrong spans")
        mean, scale = x.mean(axis=0), x.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        coef, intercept = fit_logistic((x - mean) / scale, y, l2=l2)
        return cls(
            tuple(mean.tolist()),
            tuple(scale.tolist()),
            tuple(coef.tolist()),
            intercept,
            label,
            dict(fitted_on),
        )

    def probabilities(self, rows: Sequence[Mapping[str, float]]) -> np.ndarray:
        """The probability that each span is right."""
        if not rows:
            return np.zeros(0)
        z = (_matrix(rows) - np.asarray(self.mean)) / np.asarray(self.scale)
        return _sigmoid(z @ np.asarray(self.coef) + self.intercept)

    def save(self, path: Path) -> None:
        payload = {
            "features": list(FEATURES),
            "mean": self.mean,
            "scale": self.scale,
            "coef": self.coef,
            "intercept": self.intercept,
            "label": self.label,
            "fitted_on": self.fitted_on,
        }
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Calibrator:
        """Read a saved calibration; one made for other features is an error, not a guess."""
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if tuple(saved["features"]) != FEATURES:
                raise ModelError(
                    f"{path} calibrates features {saved['features']}, this reader computes "
                    f"{list(FEATURES)}: refit it (python -m rag.reader.train)"
                )
            return cls(
                tuple(float(v) for v in saved["mean"]),
                tuple(float(v) for v in saved["scale"]),
                tuple(float(v) for v in saved["coef"]),
                float(saved["intercept"]),
                str(saved["label"]),
                dict(saved.get("fitted_on", {})),
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelError(f"cannot read the reader's calibration {path}: {e}") from e


def reliability(
    confidences: Sequence[float], labels: Sequence[bool], bins: int = 10
) -> tuple[float, list[dict[str, float]]]:
    """Expected calibration error over `bins` equal-width bins, and the table: per non-empty bin
    its range, count, mean confidence and share right."""
    conf = np.asarray(confidences, dtype=np.float64)
    right = np.asarray(labels, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    table, error = [], 0.0
    for b in range(bins):
        inside = index == b
        if not inside.any():
            continue
        mean_conf, accuracy = float(conf[inside].mean()), float(right[inside].mean())
        error += inside.sum() / max(1, len(conf)) * abs(mean_conf - accuracy)
        table.append(
            {
                "from": round(float(edges[b]), 2),
                "to": round(float(edges[b + 1]), 2),
                "count": int(inside.sum()),
                "confidence": round(mean_conf, 4),
                "right": round(accuracy, 4),
            }
        )
    return float(error), table
