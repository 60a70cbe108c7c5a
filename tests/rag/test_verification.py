"""Each answer sentence checked against the sources it cites, with the real MiniLM."""

from __future__ import annotations

from rag.verification import BiEncoderVerifier


def test_bi_encoder_verifier(minilm) -> None:
    verifier = BiEncoderVerifier(minilm)
    passage = "Super Bowl 50 was played at Levi's Stadium. The Broncos beat the Panthers 24-10."
    assert verifier.support("The Broncos beat the Panthers 24–10.", [passage]) > 0.85
    assert verifier.support("Photosynthesis happens in chloroplasts.", [passage]) < 0.3
