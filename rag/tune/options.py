"""What `rag tune` is asked to do: `TuneOptions`, and the reranker kinds and losses it offers.

options = TuneOptions(questions_file=Path("questions.jsonl"), arch="maxsim", max_steps=200)
options.check()   # one ConfigError naming the bad option and what is allowed
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rag.errors import ConfigError
from rag.rerank import CROSS_ENCODER, MAXSIM
from rag.tune.queries import RARE_SHARE, SYNTHETIC_SOURCES

# Name -> what it is. The CLI's choices come from these keys.
RERANKER_LOSSES: dict[str, str] = {
    "mnrl": "MultipleNegativesRankingLoss: the positive against its hard and in-batch negatives",
    "lambda": "LambdaLoss (NDCG-Loss2++): listwise over the positive and its hard negatives",
    "listnet": "ListNetLoss: listwise softmax cross-entropy over the positive and hard negatives",
    "bce": "BinaryCrossEntropyLoss: pointwise, one (query, passage, label) row per pair",
}
# Name -> what it is: the kinds of reranker `rag tune reranker --arch` trains.
RERANKER_ARCHS: dict[str, str] = {
    MAXSIM: "late interaction (ColBERT's MaxSim) over the bi-encoder's token embeddings, "
    "trained with in-batch and hard negatives; starts from the packaged MiniLM as it scores "
    "untrained",
    CROSS_ENCODER: "a cross-encoder reading query and passage together; starts from the "
    "MiniLM body with a new head, so it needs far more training (a GPU)",
}


@dataclass(frozen=True)
class TuneOptions:
    """What `rag tune` is asked to do; the defaults are the documented recipe."""

    queries_file: Path | None = None
    qrels_file: Path | None = None
    questions_file: Path | None = None
    synthetic: str = "auto"
    max_queries: int = 2000
    rare_share: float = RARE_SHARE
    base: str | None = None
    arch: str = MAXSIM
    loss: str = "mnrl"
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    negatives: int = 3
    held_out: float = 0.2
    held_out_max: int = 200
    eval_queries: int = 64
    evals: int = 4
    max_length: int = 256
    seed: int = 0
    restart: bool = False
    register: bool = True

    def check(self) -> None:
        """Fail with one line on an option that cannot work."""
        if (self.queries_file is None) != (self.qrels_file is None):
            raise ConfigError("--queries and --qrels go together: give both or neither")
        if self.questions_file is not None and self.queries_file is not None:
            raise ConfigError("give --questions or --queries/--qrels, not both")
        if self.synthetic not in SYNTHETIC_SOURCES:
            valid = ", ".join(SYNTHETIC_SOURCES)
            raise ConfigError(f"unknown synthetic query source {self.synthetic!r} (valid: {valid})")
        if self.arch not in RERANKER_ARCHS:
            valid = ", ".join(RERANKER_ARCHS)
            raise ConfigError(f"unknown reranker arch {self.arch!r} (valid: {valid})")
        if self.loss not in RERANKER_LOSSES:
            valid = ", ".join(RERANKER_LOSSES)
            raise ConfigError(f"unknown loss {self.loss!r} (valid: {valid})")
        if self.arch == MAXSIM and self.loss != "mnrl":
            raise ConfigError(
                f"--loss {self.loss} is for cross-encoders: a maxsim reranker trains with mnrl "
                "(use --arch cross-encoder for the other losses)"
            )
        for name in ("max_queries", "negatives", "held_out_max", "eval_queries", "evals"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.rare_share < 1.0:
            raise ConfigError(
                f"the share of rare words to drop must be in [0, 1), got {self.rare_share}"
            )
        if self.epochs <= 0 or (self.max_steps is not None and self.max_steps < 1):
            raise ConfigError("epochs and max_steps must be positive")
