"""What decides a span reader's trained weights: shared by the trainer and the finishing stage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainOptions:
    """What decides the trained weights (the reuse check compares all of these)."""

    squad: str = "../shared/data/squad/dev-v1.1.json"
    epochs: int = 3
    learning_rate: float = 1e-4
    batch_size: int = 16
    max_length: int = 384
    stride: int = 128
    # Share of training questions also read against one paragraph of their article that does
    # not hold the answer, labelled "no span" ([CLS]): the reader learns what absence looks like.
    negatives: float = 0.2
    warmup: float = 0.1
    weight_decay: float = 0.01
    seed: int = 13
    threads: int = 2
    limit: int = 0  # train on the first N questions only (smoke tests); 0: all
