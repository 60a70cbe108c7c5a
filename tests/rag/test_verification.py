"""Each answer sentence checked against the sources it cites, with the real MiniLM."""

from __future__ import annotations

from rag.settings import Settings
from rag.text import split_sentences
from rag.verification import BiEncoderVerifier, check_sentences


def test_bi_encoder_verifier(minilm) -> None:
    verifier = BiEncoderVerifier(minilm)
    passage = "Super Bowl 50 was played at Levi's Stadium. The Broncos beat the Panthers 24-10."
    assert verifier.support("The Broncos beat the Panthers 24–10.", [passage]) > 0.85
    assert verifier.support("Photosynthesis happens in chloroplasts.", [passage]) < 0.3


def bowl_and_warsaw(paragraphs: list[dict[str, object]]) -> tuple[str, str]:
    bowl = next(str(p["context"]) for p in paragraphs if p["title"] == "Super_Bowl_50")
    warsaw = next(str(p["context"]) for p in paragraphs if p["title"] == "Warsaw")
    return bowl, warsaw


def test_a_supported_and_an_unsupported_sentence(minilm, squad_paragraphs) -> None:
    bowl, warsaw = bowl_and_warsaw(squad_paragraphs)
    copied = split_sentences(bowl)[1]
    answer = f"{copied} [1] The stadium is built entirely from chocolate and marzipan [1]."
    threshold = Settings.load().min_support
    supported, invented = check_sentences(
        answer, {1: bowl, 2: warsaw}, BiEncoderVerifier(minilm), threshold
    )
    assert supported.text == f"{copied} [1]" and supported.citations == (1,)
    assert supported.supported and supported.support > 0.9 and not supported.inferred
    # Cited, but nothing in the cited source says it.
    assert invented.citations == (1,) and not invented.supported
    assert invented.support < threshold


def test_an_uncited_sentence_is_given_the_source_that_supports_it(minilm, squad_paragraphs) -> None:
    bowl, warsaw = bowl_and_warsaw(squad_paragraphs)
    claim = split_sentences(warsaw)[0]
    # [7] names no source: the sentence counts as uncited.
    [check] = check_sentences(f"{claim} [7]", {1: bowl, 2: warsaw}, BiEncoderVerifier(minilm), 0.5)
    assert check.supported and check.inferred and check.citations == (2,)
    [alone] = check_sentences(
        "Photosynthesis happens in chloroplasts.", {1: bowl}, BiEncoderVerifier(minilm), 0.5
    )
    assert not alone.supported and alone.citations == () and not alone.inferred
