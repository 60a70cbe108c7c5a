"""Training examples: a query, its positive passage and the hard negatives mined for it."""

from __future__ import annotations

import json


def test_examples_round_trip_through_json() -> None:
    from rag.tune.negatives import Example

    example = Example("q", "p", ("n1", "n2"))
    assert Example.from_json(json.loads(json.dumps(example.to_json()))) == example
