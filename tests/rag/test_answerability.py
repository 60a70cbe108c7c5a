"""The refusal model: one probability that the documents answer a question, from the search's
evidence and the reader's confidence together. The packaged model, its file format, and fitting.
The pipeline's use of it, with real retrieval and the packaged reader: tests/rag/test_routing.py."""

from __future__ import annotations

import json

import pytest

from rag.answerability import PACKAGED_FILE, Answerability
from rag.errors import ModelError
from rag.models import canonical_name
from rag.reader import SpanReader
from rag.settings import DEFAULT_EMBEDDER


def test_the_packaged_model_belongs_to_the_packaged_embedder_and_reader() -> None:
    model = Answerability.packaged()
    assert model is not None
    assert model.applies(canonical_name(DEFAULT_EMBEDDER), SpanReader.packaged().name)
    assert not model.applies("someone/else", SpanReader.packaged().name)
    assert model.fitted_on["split"] == "calibration"  # never the held-out articles


def test_more_evidence_and_a_surer_reader_both_make_an_answer_more_likely() -> None:
    model = Answerability.packaged()
    assert model is not None
    low, high = model.probability(0.3, 0.3), model.probability(0.7, 0.3)
    assert 0.0 < low < high < 1.0
    assert model.probability(0.5, 0.05) < model.probability(0.5, 0.9)
    # A close match with an unsure reader is likely answered; a question about another topic
    # (a best cosine under any answerable one it was fitted on) is not, however sure the reader.
    assert model.probability(0.75, 0.2) > 0.5
    assert 0.2 < model.evidence_floor < 0.4
    assert model.probability(model.evidence_floor - 0.01, 0.99) == 0.0
    # Confidences of exactly 0 and 1 are clipped, not infinite.
    assert 0.0 < model.probability(0.5, 0.0) < model.probability(0.5, 1.0) < 1.0


def test_fit_weighs_both_classes_and_round_trips(tmp_path) -> None:
    # Twice as many answerable questions as not: with the classes weighted equally, a question
    # that sits where both are equally common comes out near one half.
    evidence = [0.6, 0.62, 0.58, 0.61, 0.3, 0.59, 0.28, 0.31, 0.45, 0.45]
    confidence = [0.8, 0.7, 0.6, 0.9, 0.2, 0.75, 0.1, 0.3, 0.4, 0.4]
    answerable = [True, True, True, True, False, True, False, False, True, False]
    model = Answerability.fit(evidence, confidence, answerable, "emb", "reader", {"split": "test"})
    assert model.probability(0.6, 0.8) > 0.8 and model.probability(0.31, 0.15) < 0.2
    assert model.evidence_floor == 0.45  # the least evidence of an answerable question
    assert model.probability(0.44, 0.99) == 0.0
    path = tmp_path / "answerability.json"
    model.save(path)
    again = Answerability.load(path)
    assert again == model
    assert again.probability(0.45, 0.4) == pytest.approx(model.probability(0.45, 0.4))


def test_fit_needs_both_kinds_of_question() -> None:
    with pytest.raises(ModelError, match="both answerable and unanswerable"):
        Answerability.fit([0.5, 0.6], [0.5, 0.6], [True, True], "emb", "reader", {})


def test_a_file_for_other_features_or_a_broken_one_is_one_clear_error(tmp_path) -> None:
    saved = json.loads(PACKAGED_FILE.read_text(encoding="utf-8"))
    saved["features"] = ["evidence"]
    other = tmp_path / "other.json"
    other.write_text(json.dumps(saved), encoding="utf-8")
    with pytest.raises(ModelError, match="refit it"):
        Answerability.load(other)
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(ModelError, match="cannot read the answerability model"):
        Answerability.load(broken)
