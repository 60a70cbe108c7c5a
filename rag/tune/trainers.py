"""One `fit` for every kind of model `rag tune` trains, with sentence-transformers' trainers.

    model, state = fit(MAXSIM, base, examples, samples, work, options, settings)
    state.steps, state.interrupted, state.best_checkpoint   # a TrainState

The kinds (TRAINERS) differ only in their `Recipe`: the model, its loss and dataset, the
evaluator, the trainer classes and how a checkpoint is read back. Checkpoints go to
`work/checkpoints`, evaluated on held-out samples `options.evals` times a run; a rerun resumes
from the last complete one. Ctrl-C stops training and keeps the best checkpoint so far.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import RagError
from rag.models import pick_device, resolve_model
from rag.rerank import CROSS_ENCODER, MAXSIM, multi_vector_model
from rag.settings import Settings
from rag.tune.negatives import Example
from rag.tune.options import TuneOptions

logger = logging.getLogger(__name__)

BI_ENCODER = "bi-encoder"  # what `rag tune retriever` trains
EVAL_NAME = "held-out"


class TuneInterrupted(RagError):
    """Ctrl-C came before any checkpoint: there is no model to keep."""


@dataclass(frozen=True)
class TrainState:
    """How a training run went: steps, whether Ctrl-C stopped it, the checkpoint kept."""

    interrupted: bool
    resumed_from: str | None  # the checkpoint folder's name
    steps: int
    max_steps: int
    best_checkpoint: str | None  # its path
    best_metric: float | None  # held-out nDCG@10 during training
    history: list[dict[str, float]]
    batch_size: int
    learning_rate: float


@dataclass(frozen=True)
class Recipe:
    """What differs between the kinds of model `fit` trains."""

    model: Any
    loss: Any
    dataset: Any
    evaluator: Callable[[list[dict[str, Any]]], Any]  # held-out samples -> evaluator
    trainer_class: Any
    args_class: Any
    load: Callable[[str], Any]  # a checkpoint folder -> the model
    learning_rate: float  # the default
    extra_args: dict[str, Any] = field(default_factory=dict)


def fit(
    kind: str,
    base: str,
    examples: list[Example],
    samples: list[dict[str, Any]],
    work: Path,
    options: TuneOptions,
    settings: Settings,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[Any, TrainState]:
    """Train a model of `kind` (a key of TRAINERS) from `base` on the examples, evaluated on the
    held-out samples: the trained model (the best checkpoint, when interrupted), and how it went.
    `on_step(done, total)` hears of every optimiser step."""
    recipe = TRAINERS[kind](base, examples, options, pick_device(settings.device))
    batch_size = options.batch_size or 16
    learning_rate = options.learning_rate or recipe.learning_rate
    evaluator = recipe.evaluator(samples[: options.eval_queries]) if samples else None
    args = recipe.args_class(
        **_trainer_args(work, len(recipe.dataset), batch_size, options, learning_rate, settings),
        metric_for_best_model=f"eval_{EVAL_NAME}_ndcg@10" if evaluator else None,
        **recipe.extra_args,
    )
    # sentence-transformers fills its own model card's examples when a trainer is made, behind a
    # "Computing widget examples" bar that --no-progress cannot reach; `rag tune` writes its own
    # card (rag/tune/card.py) over that one, so give it examples and it skips the work.
    recipe.model.model_card_data.widget = [{"text": "written by rag tune"}]
    trainer = recipe.trainer_class(
        model=recipe.model,
        args=args,
        train_dataset=recipe.dataset,
        loss=recipe.loss,
        evaluator=evaluator,
    )
    if on_step is not None:
        trainer.add_callback(_step_callback(on_step))
    state = _run_trainer(trainer, work, options, batch_size, learning_rate)
    if state.interrupted and state.best_checkpoint:
        return recipe.load(state.best_checkpoint), state
    return recipe.model, state


# -- the kinds ----------------------------------------------------------------------------------


def _multi_vector(base: str, examples: list[Example], options: TuneOptions, device: str) -> Recipe:
    """MaxSim over token embeddings, trained with MultipleNegativesRankingLoss."""
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.multi_vector_encoder import (
        MultiVectorEncoderTrainer,
        MultiVectorEncoderTrainingArguments,
    )
    from sentence_transformers.multi_vector_encoder.evaluation import (
        MultiVectorRerankingEvaluator,
    )
    from sentence_transformers.multi_vector_encoder.losses import (
        MultiVectorMultipleNegativesRankingLoss,
    )

    model = multi_vector_model(base, device, options.max_length)
    return Recipe(
        model,
        MultiVectorMultipleNegativesRankingLoss(model),
        _contrastive_dataset(examples),
        functools.partial(MultiVectorRerankingEvaluator, at_k=10, name=EVAL_NAME),
        MultiVectorEncoderTrainer,
        MultiVectorEncoderTrainingArguments,
        functools.partial(MultiVectorEncoder, device=device),
        learning_rate=2e-5,
        # Recompute activations in the backward pass: a batch of 16 with 3 negatives at 256
        # tokens peaked at 8.5 GB without it.
        extra_args={"batch_sampler": "no_duplicates", "gradient_checkpointing": True},
    )


def _bi_encoder(base: str, examples: list[Example], options: TuneOptions, device: str) -> Recipe:
    """One vector per text, trained with MultipleNegativesRankingLoss."""
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.evaluation import RerankingEvaluator
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    model = SentenceTransformer(resolve_model(base), device=device)
    return Recipe(
        model,
        MultipleNegativesRankingLoss(model),
        _contrastive_dataset(examples),
        functools.partial(RerankingEvaluator, at_k=10, name=EVAL_NAME),
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        functools.partial(SentenceTransformer, device=device),
        learning_rate=2e-5,
        extra_args={"batch_sampler": "no_duplicates"},
    )


def _cross_encoder(base: str, examples: list[Example], options: TuneOptions, device: str) -> Recipe:
    """Query and passage read together, with the loss `options.loss` names."""
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    location = resolve_model(base)
    model = CrossEncoder(location, num_labels=1, max_length=options.max_length, device=device)
    loss, dataset = _reranker_loss(options.loss, model, examples)
    return Recipe(
        model,
        loss,
        dataset,
        functools.partial(CrossEncoderRerankingEvaluator, at_k=10, name=EVAL_NAME, write_csv=False),
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
        functools.partial(CrossEncoder, max_length=options.max_length, device=device),
        learning_rate=5e-5,
    )


# Kind -> its recipe: the reranker archs (RERANKER_ARCHS) and the retriever's bi-encoder.
TRAINERS: dict[str, Callable[[str, list[Example], TuneOptions, str], Recipe]] = {
    MAXSIM: _multi_vector,
    CROSS_ENCODER: _cross_encoder,
    BI_ENCODER: _bi_encoder,
}


def _contrastive_dataset(examples: list[Example]) -> Any:
    """Each query's positive against its hard negatives and every other passage in the batch (no
    duplicate texts in a batch: the "no_duplicates" sampler)."""
    from datasets import Dataset

    # The first column is the query (the multi-vector collator encodes it as one).
    return Dataset.from_dict(_negatives_columns(examples, "query"))


def _reranker_loss(name: str, model: Any, examples: list[Example]) -> tuple[Any, Any]:
    """The loss and the dataset in the shape that loss reads."""
    from datasets import Dataset
    from sentence_transformers.cross_encoder import losses

    if name == "mnrl":
        # One in-batch negative on top of the hard ones: each costs a cross-encoder pass per row.
        return losses.MultipleNegativesRankingLoss(model, num_negatives=1), Dataset.from_dict(
            _negatives_columns(examples, "query")
        )
    if name in ("lambda", "listnet"):
        dataset = Dataset.from_dict(
            {
                "query": [e.query for e in examples],
                "docs": [[e.positive, *e.negatives] for e in examples],
                "labels": [[1.0] + [0.0] * len(e.negatives) for e in examples],
            }
        )
        loss = losses.LambdaLoss(model) if name == "lambda" else losses.ListNetLoss(model)
        return loss, dataset
    rows = [(e.query, e.positive, 1.0) for e in examples]
    rows += [(e.query, negative, 0.0) for e in examples for negative in e.negatives]
    dataset = Dataset.from_dict(
        {
            "query": [q for q, _, _ in rows],
            "passage": [p for _, p, _ in rows],
            "label": [label for _, _, label in rows],
        }
    )
    return losses.BinaryCrossEntropyLoss(model), dataset


def _negatives_columns(examples: list[Example], query_column: str) -> dict[str, list[str]]:
    """The (query, positive, negative_1..n) columns both MultipleNegativesRankingLosses read."""
    columns = {
        query_column: [e.query for e in examples],
        "positive": [e.positive for e in examples],
    }
    for n in range(len(examples[0].negatives)):
        columns[f"negative_{n + 1}"] = [e.negatives[n] for e in examples]
    return columns


# -- running a trainer --------------------------------------------------------------------------


def _trainer_args(
    work: Path,
    rows: int,
    batch_size: int,
    options: TuneOptions,
    learning_rate: float,
    settings: Settings,
) -> dict[str, Any]:
    """Training arguments every kind shares: evaluate and checkpoint `evals` times a run."""
    steps = options.max_steps or math.ceil(math.ceil(rows / batch_size) * options.epochs)
    every = max(1, math.ceil(steps / options.evals))
    return {
        "output_dir": str(work / "checkpoints"),
        "num_train_epochs": options.epochs,
        "max_steps": options.max_steps or -1,
        "per_device_train_batch_size": batch_size,
        "per_device_eval_batch_size": batch_size,
        "learning_rate": learning_rate,
        "warmup_steps": max(1, steps // 10),
        "eval_strategy": "steps",
        "eval_steps": every,
        "save_strategy": "steps",
        "save_steps": every,
        "save_total_limit": 2,
        "load_best_model_at_end": True,
        "greater_is_better": True,
        "logging_steps": every,
        "seed": options.seed,
        "report_to": "none",
        "disable_tqdm": not settings.progress,
        "use_cpu": pick_device(settings.device) == "cpu",
        "dataloader_num_workers": 0,
    }


def _run_trainer(
    trainer: Any, work: Path, options: TuneOptions, batch_size: int, learning_rate: float
) -> TrainState:
    """Train, resuming from the last complete checkpoint in `work` when there is one. Ctrl-C stops
    it and returns the best complete checkpoint so far; with none yet, TuneInterrupted."""
    _logs_to_stderr(trainer)
    folder = work / "checkpoints"
    _drop_incomplete_checkpoints(folder)
    done = _complete_checkpoints(folder)
    last = str(done[-1]) if done and not options.restart else None
    if last:
        logger.info("resuming from %s", last)
    interrupted = False
    try:
        trainer.train(resume_from_checkpoint=last)
    except KeyboardInterrupt:
        interrupted = True
    trainer_state = trainer.state
    best = trainer_state.best_model_checkpoint
    if interrupted:
        # Ctrl-C may land while a checkpoint is being written: keep only complete ones.
        done = _complete_checkpoints(folder)
        if best is None or Path(best) not in done:
            best = str(done[-1]) if done else None
        if best is None:
            raise TuneInterrupted(
                "interrupted before the first checkpoint: nothing was kept; run the same "
                "command to start again"
            )
    history = [
        {k: v for k, v in entry.items() if isinstance(v, int | float)}
        for entry in trainer_state.log_history
    ]
    return TrainState(
        interrupted=interrupted,
        resumed_from=Path(last).name if last else None,
        steps=int(trainer_state.global_step),
        max_steps=int(trainer_state.max_steps),
        best_checkpoint=best,
        best_metric=trainer_state.best_metric,
        history=history,
        batch_size=batch_size,
        learning_rate=learning_rate,
    )


def _step_callback(on_step: Callable[[int, int], None]) -> Any:
    """A transformers TrainerCallback that passes (step, max steps) to `on_step`."""
    from transformers import TrainerCallback

    class StepCallback(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            on_step(int(state.global_step), int(state.max_steps))

    return StepCallback()


def _logs_to_stderr(trainer: Any) -> None:
    """The trainers print their logs on stdout, which `--json` keeps for the report: move them
    (and the progress bar) to stderr."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class StderrProgress(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if state.is_world_process_zero and self.training_bar is not None:
                shown = {k: v for k, v in (logs or {}).items() if k != "total_flos"}
                self.training_bar.write(str(shown), file=sys.stderr)

    had_bar = any(isinstance(c, ProgressCallback) for c in trainer.callback_handler.callbacks)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if had_bar:
        trainer.add_callback(StderrProgress())


def _complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints whose trainer state (the file the trainer writes last) exists, oldest first."""
    if not folder.is_dir():
        return []
    found = [
        path
        for path in folder.glob("checkpoint-*")
        if path.name.split("-")[-1].isdigit() and (path / "trainer_state.json").is_file()
    ]
    return sorted(found, key=lambda path: int(path.name.split("-")[-1]))


def _drop_incomplete_checkpoints(folder: Path) -> None:
    if not folder.is_dir():
        return
    complete = set(_complete_checkpoints(folder))
    for path in folder.iterdir():
        if path.is_dir() and path not in complete:
            shutil.rmtree(path, ignore_errors=True)
