"""Whether the documents answer a question at all: one probability from the two signals the answer
pipeline already has, instead of a threshold on each.

    model = Answerability.packaged()          # None where it does not apply (see `applies`)
    p = model.probability(evidence=0.47, confidence=0.22)
    refused = p < settings.min_answerable     # 0.5: refuse when more likely not answered

The signals: the search's evidence (the best bi-encoder cosine between the question and the
retrieved chunks, rag/pipeline.py) and the span reader's confidence (a calibrated probability that
its best span holds an answer, rag/reader). Each alone confuses two kinds of questions: a
question about another topic can still get a confident span, and a question the passages answer
in other words can score a low cosine. Together they separate the two better than either gate
does by itself (docs/answers.md, "One refusal from both signals").

A logistic regression over (evidence, logit of the confidence), fitted on SQuAD articles that
neither the reader nor anything else was tuned on: answerable questions asked of the collection
that holds their article against questions asked of one that does not, the two classes weighted
equally (no assumption about how often a user asks about something the documents lack). It means
what it says only for the bi-encoder and the reader it was fitted with, which it records; with
another embedder (`rag tune retriever`, `embedding_model`) or reader, `applies` is false and the
pipeline falls back to its two separate gates, `min_evidence` and `reader_refuse`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelError
from rag.reader.calibration import fit_logistic

PACKAGED_FILE = Path(__file__).resolve().parent / "reader" / "model" / "answerability.json"
FEATURES = ("evidence", "confidence_logit")
# Confidences are clipped before the logit: 0 and 1 would be infinitely far apart.
_EPSILON = 1e-4


def features(evidence: float, confidence: float) -> tuple[float, float]:
    """The model's inputs: the evidence as is, and the reader's confidence on the logit scale."""
    p = min(1.0 - _EPSILON, max(_EPSILON, confidence))
    return float(evidence), math.log(p / (1.0 - p))


@dataclass(frozen=True)
class Answerability:
    """P(the documents answer the question) = sigmoid(intercept + coef · features), and 0 under
    `evidence_floor`: the least evidence of any answerable question it was fitted on. Below it
    the regression would extrapolate (a sure-looking span in passages about something else)."""

    coef: tuple[float, ...]
    intercept: float
    evidence_floor: float
    embedder: str
    reader: str
    fitted_on: Mapping[str, Any]

    @classmethod
    def fit(
        cls,
        evidence: Sequence[float],
        confidence: Sequence[float],
        answerable: Sequence[bool],
        embedder: str,
        reader: str,
        fitted_on: Mapping[str, Any],
    ) -> Answerability:
        """Fit on questions with known answerability, each class weighted half."""
        x = np.asarray([features(e, c) for e, c in zip(evidence, confidence, strict=True)])
        y = np.asarray(answerable, dtype=np.float64)
        positives = float(y.sum())
        if len(y) == 0 or positives in (0.0, float(len(y))):
            raise ModelError("answerability needs both answerable and unanswerable questions")
        weights = np.where(y > 0, 0.5 / positives, 0.5 / (len(y) - positives)) * len(y)
        coef, intercept = fit_logistic(x, y, weights=weights)
        floor = math.floor(100 * float(x[y > 0, 0].min())) / 100
        return cls(tuple(coef.tolist()), intercept, floor, embedder, reader, dict(fitted_on))

    def probability(self, evidence: float, confidence: float) -> float:
        """The probability that the documents answer the question."""
        if evidence < self.evidence_floor:
            return 0.0
        z = self.intercept + float(np.dot(self.coef, features(evidence, confidence)))
        return 0.5 * (1.0 + math.tanh(0.5 * z))

    def applies(self, embedder: str, reader: str) -> bool:
        """Whether the signals come from the models this was fitted with."""
        return embedder == self.embedder and reader == self.reader

    def save(self, path: Path) -> None:
        payload = {
            "features": list(FEATURES),
            "coef": self.coef,
            "intercept": self.intercept,
            "evidence_floor": self.evidence_floor,
            "embedder": self.embedder,
            "reader": self.reader,
            "fitted_on": self.fitted_on,
        }
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Answerability:
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if tuple(saved["features"]) != FEATURES:
                raise ModelError(
                    f"{path} uses features {saved['features']}, this version {list(FEATURES)}: "
                    "refit it (benchmarks/refusal_gates.py --fit)"
                )
            return cls(
                tuple(float(v) for v in saved["coef"]),
                float(saved["intercept"]),
                float(saved["evidence_floor"]),
                str(saved["embedder"]),
                str(saved["reader"]),
                dict(saved.get("fitted_on", {})),
            )
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelError(f"cannot read the answerability model {path}: {e}") from e

    @classmethod
    def packaged(cls) -> Answerability | None:
        """The model that ships beside the span reader (None if the package has none)."""
        return cls.load(PACKAGED_FILE) if PACKAGED_FILE.is_file() else None
