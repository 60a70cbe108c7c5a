"""`rag tune`: train a collection's own reranker or retriever, check it, and register it.

report = tune_reranker(settings, "papers", TuneOptions())    # or tune_retriever(...)
print(report.message)                                       # one line: registered or why not

Training is sentence-transformers' (CrossEncoderTrainer, SentenceTransformerTrainer). The work
folder `indexes/NAME/tune/<kind>/` keeps the training data and checkpoints, so running the same
command again after an interruption resumes. Ctrl-C stops training and keeps the best checkpoint so
far (by nDCG@10 on held-out queries), which is then evaluated like a finished run. A model that does
not beat what the collection has without it is saved with its card but not registered.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import resource
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rag.batch import read_questions
from rag.collection import Collection, EmbedderInfo
from rag.embedding import Embedder, SentenceTransformerEmbedder
from rag.errors import ConfigError, RagError
from rag.generation import make_llm
from rag.models import pick_device, resolve_model
from rag.rerank import (
    CROSS_ENCODER,
    MAXSIM,
    CrossEncoderReranker,
    MaxSimReranker,
    multi_vector_model,
)
from rag.retrieval import Searcher, index_params
from rag.settings import DEFAULT_EMBEDDER, Settings
from rag.tuning import (
    SYNTHETIC_SOURCES,
    CachingEmbedder,
    Example,
    TrainQuery,
    chunks_by_key,
    dense_ndcg,
    evaluate_reranking,
    held_out_candidates,
    labelled_queries,
    llm_queries,
    mine_negatives,
    question_queries,
    read_qrels,
    read_queries,
    reranking_samples,
    self_supervised_queries,
    split_held_out,
)

logger = logging.getLogger(__name__)

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
EVAL_NAME = "held-out"
REEMBED_BLOCK = 2048


class TuneInterrupted(RagError):
    """Ctrl-C came before any checkpoint: there is no model to keep."""


@dataclass(frozen=True)
class TuneOptions:
    """What `rag tune` is asked to do; the defaults are the documented recipe."""

    queries_file: Path | None = None
    qrels_file: Path | None = None
    questions_file: Path | None = None
    synthetic: str = "auto"
    max_queries: int = 2000
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
        if self.epochs <= 0 or (self.max_steps is not None and self.max_steps < 1):
            raise ConfigError("epochs and max_steps must be positive")


@dataclass
class TuneReport:
    """What a tune run did: the model, its card, and whether the collection now uses it."""

    kind: str
    collection: str
    model_path: Path
    registered: bool
    message: str
    card: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "collection": self.collection,
            "model": str(self.model_path),
            "registered": self.registered,
            "message": self.message,
            "card": self.card,
        }


@dataclass
class _Data:
    """The training data of a run, as saved in its work folder for a resume."""

    examples: list[Example]
    held_out: list[TrainQuery]
    counts: dict[str, Any]


# -- the two commands ---------------------------------------------------------------------------


def tune_reranker(
    settings: Settings, name: str, options: TuneOptions, embedder: Embedder | None = None
) -> TuneReport:
    """Train a cross-encoder on the collection, measure it on held-out queries, register it
    (with the fusion weight that did best) when it beats the first stage alone."""
    options.check()
    collection = Collection.open(settings.index_dir, name)
    try:
        searcher = Searcher(
            collection, settings, embedder=_caching(embedder, collection, settings), reranker=None
        )
        work = collection.path / "tune" / "reranker"
        base = options.base or DEFAULT_EMBEDDER
        data = _prepare(searcher, work, "reranker", base, options, settings)
        candidates = held_out_candidates(searcher, data.held_out, settings.rerank_depth)
        positive_text = _positive_texts(collection, data.held_out)
        samples = reranking_samples(candidates, positive_text)
        started = time.perf_counter()
        reranker: CrossEncoderReranker | MaxSimReranker
        target = collection.model_dir("reranker")
        if options.arch == MAXSIM:
            model, state = _train_multi_vector(
                base, data.examples, samples, work, options, settings
            )
            model.save(str(target))
            reranker = MaxSimReranker(str(target), device=settings.device)
        else:
            model, state = _train_cross_encoder(
                base, data.examples, samples, work, options, settings
            )
            model.save(str(target))
            reranker = CrossEncoderReranker(
                str(target), device=settings.device, max_length=options.max_length
            )
        seconds = time.perf_counter() - started
        reranker._model = model  # already in memory: no need to load it again
        scores = evaluate_reranking(candidates, reranker, progress=settings.progress)
        beats = scores.fused > scores.first_stage
        card = _card(
            "reranker", collection, base, options, data, state, seconds, samples=len(samples)
        )
        card["metrics"] = {
            "held_out_queries": scores.queries,
            "before": {"first_stage_ndcg@10": scores.first_stage},
            "after": scores.to_json(),
        }
        card["registered"] = beats and options.register
        _write_card(target, card)
        if beats and options.register:
            collection.set_reranker(
                {
                    "path": str(target.relative_to(collection.path)),
                    "arch": options.arch,
                    "base": base,
                    "fusion": {"weight": scores.weight, "k": 60},
                    "trained_at": card["created_at"],
                    "held_out_ndcg@10": {"before": scores.first_stage, "after": scores.fused},
                }
            )
        if not state.get("interrupted"):
            shutil.rmtree(work, ignore_errors=True)
        detail = (
            f"held-out nDCG@10 {scores.first_stage:.4f} without reranking, "
            f"{scores.reranker:.4f} reranked, {scores.fused:.4f} fused at weight {scores.weight}"
        )
        message = _outcome(
            state,
            beats,
            options.register,
            refused=f"the tuned reranker does not beat no reranking on {scores.queries} "
            f"held-out queries ({detail}); saved at {target}",
            registered=f"registered reranker for {name!r}: {detail}; model at {target}",
            trained=f"{detail}; model at {target}",
        )
        return TuneReport("reranker", name, target, beats and options.register, message, card)
    finally:
        collection.close()


def tune_retriever(
    settings: Settings, name: str, options: TuneOptions, embedder: Embedder | None = None
) -> TuneReport:
    """Train the bi-encoder on the collection, re-embed every chunk with it, and make it the
    collection's embedder (atomically) when held-out dense nDCG@10 improves."""
    options.check()
    collection = Collection.open(settings.index_dir, name)
    try:
        searcher = Searcher(
            collection, settings, embedder=_caching(embedder, collection, settings), reranker=None
        )
        work = collection.path / "tune" / "retriever"
        base = options.base or collection.embedder.name
        data = _prepare(searcher, work, "retriever", base, options, settings)
        candidates = held_out_candidates(searcher, data.held_out, settings.rerank_depth)
        samples = reranking_samples(candidates, _positive_texts(collection, data.held_out))
        started = time.perf_counter()
        model, state = _train_bi_encoder(base, data.examples, samples, work, options, settings)
        seconds = time.perf_counter() - started
        target = collection.model_dir("embedder")
        model.save(str(target))
        tuned = SentenceTransformerEmbedder(
            str(target),
            device=settings.device,
            batch_size=settings.embed_batch_size,
            backend=settings.embed_backend,
        )
        tuned._model = model
        keys, vectors = _reembed(collection, tuned, work / "vectors", settings.progress)
        old_keys, old_vectors = _stored_vectors(collection)
        chunk_of = chunks_by_key(collection)
        texts = [query.text for query in data.held_out]
        before = dense_ndcg(
            searcher.embedder.embed(texts), old_keys, old_vectors, chunk_of, data.held_out
        )
        after = dense_ndcg(tuned.embed(texts), keys, vectors, chunk_of, data.held_out)
        beats = after > before
        card = _card(
            "retriever", collection, base, options, data, state, seconds, samples=len(samples)
        )
        card["metrics"] = {
            "held_out_queries": len(data.held_out),
            "before": {"dense_ndcg@10": before},
            "after": {"dense_ndcg@10": after},
        }
        card["reembedded_chunks"] = len(keys)
        card["registered"] = beats and options.register
        _write_card(target, card)
        if beats and options.register:
            with collection.writer_lock():
                info = EmbedderInfo(str(target), int(vectors.shape[1]))
                collection.replace_embedder(
                    info, keys, vectors, {"base": base, "trained_at": card["created_at"]}
                )
                collection.refresh_indexes(index_params(settings))
        if not state.get("interrupted"):
            shutil.rmtree(work, ignore_errors=True)
        detail = f"held-out dense nDCG@10 {before:.4f} -> {after:.4f}"
        message = _outcome(
            state,
            beats,
            options.register,
            refused=f"the tuned embedder does not beat the current one on "
            f"{len(data.held_out)} held-out queries ({detail}); saved at {target}",
            registered=f"{name!r} now uses the tuned embedder ({len(keys)} chunks re-embedded): "
            f"{detail}; model at {target}",
            trained=f"{detail}; model at {target}",
        )
        return TuneReport("retriever", name, target, beats and options.register, message, card)
    finally:
        collection.close()


def _caching(
    embedder: Embedder | None, collection: Collection, settings: Settings
) -> CachingEmbedder:
    inner = embedder or SentenceTransformerEmbedder(
        collection.embedder.name,
        device=settings.device,
        batch_size=settings.embed_batch_size,
        backend=settings.embed_backend,
    )
    return CachingEmbedder(inner)


# -- data ---------------------------------------------------------------------------------------


def _prepare(
    searcher: Searcher,
    work: Path,
    kind: str,
    base: str,
    options: TuneOptions,
    settings: Settings,
) -> _Data:
    """The run's data: loaded from the work folder when the same run was interrupted (a resume),
    else built (queries, held-out split, mined negatives) and saved there."""
    collection = searcher.collection
    fingerprint = _fingerprint(kind, base, options, collection)
    run_file = work / "run.json"
    if not options.restart and run_file.is_file():
        saved = json.loads(run_file.read_text())
        if saved.get("fingerprint") == fingerprint:
            logger.info("resuming the %s run in %s", kind, work)
            return _load_data(work)
        logger.info("the options or the collection changed: starting the %s run afresh", kind)
    shutil.rmtree(work, ignore_errors=True)
    queries = _queries(searcher, options, settings)
    train, held_out = split_held_out(queries, options.held_out, options.held_out_max)
    examples = mine_negatives(
        searcher, train, options.negatives, seed=options.seed, progress=settings.progress
    )
    if not examples:
        raise ConfigError(
            f"no training examples: the {len(train)} training queries found too few negatives"
        )
    origins: dict[str, int] = {}
    for query in queries:
        origins[query.origin] = origins.get(query.origin, 0) + 1
    counts = {
        "queries": origins,
        "train_queries": len(train),
        "held_out_queries": len(held_out),
        "examples": len(examples),
        "negatives_per_example": options.negatives,
    }
    work.mkdir(parents=True, exist_ok=True)
    with (work / "examples.jsonl").open("w", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps(example.to_json(), ensure_ascii=False) + "\n")
    with (work / "held_out.jsonl").open("w", encoding="utf-8") as out:
        for query in held_out:
            record = dataclasses.asdict(query)
            record["relevant"] = sorted(query.relevant)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    (work / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    # Written last: its presence means the data above is complete.
    run_file.write_text(json.dumps({"fingerprint": fingerprint, "kind": kind}, indent=2) + "\n")
    return _Data(examples, held_out, counts)


def _load_data(work: Path) -> _Data:
    lines = (work / "examples.jsonl").read_text(encoding="utf-8").splitlines()
    examples = [Example.from_json(json.loads(line)) for line in lines if line]
    held_out = []
    for line in (work / "held_out.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        record["positives"] = tuple(record["positives"])
        record["relevant"] = frozenset(record["relevant"])
        held_out.append(TrainQuery(**record))
    return _Data(examples, held_out, json.loads((work / "counts.json").read_text()))


def _queries(searcher: Searcher, options: TuneOptions, settings: Settings) -> list[TrainQuery]:
    collection = searcher.collection
    if options.questions_file is not None:
        return question_queries(searcher, read_questions(options.questions_file))
    if options.queries_file is not None and options.qrels_file is not None:
        return labelled_queries(
            searcher, read_queries(options.queries_file), read_qrels(options.qrels_file)
        )
    source = options.synthetic
    if source == "auto":
        source = "self" if settings.llm_backend == "embedded" else "llm"
    if source == "llm":
        llm = make_llm(settings)
        return llm_queries(
            collection, llm, options.max_queries, options.seed, progress=settings.progress
        )
    return self_supervised_queries(collection, options.max_queries, options.seed)


def _fingerprint(kind: str, base: str, options: TuneOptions, collection: Collection) -> str:
    """What decides a run's data and training: same fingerprint, same run (so it may resume)."""
    described = {
        "kind": kind,
        "base": base,
        "options": {
            key: str(value)
            for key, value in dataclasses.asdict(options).items()
            if key not in ("restart", "register")
        },
        "files": [
            hashlib.sha256(path.read_bytes()).hexdigest()
            for path in (options.queries_file, options.qrels_file, options.questions_file)
            if path is not None
        ],
        "generation": collection.store.generation,
        "embedder": collection.embedder.name,
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def _positive_texts(collection: Collection, queries: Sequence[TrainQuery]) -> dict[int, str]:
    keys = sorted({key for query in queries for key in query.positives})
    return {key: chunk.text for key, chunk in collection.store.chunks(keys).items()}


# -- training -----------------------------------------------------------------------------------


def _train_cross_encoder(
    base: str,
    examples: list[Example],
    samples: list[dict[str, Any]],
    work: Path,
    options: TuneOptions,
    settings: Settings,
) -> tuple[Any, dict[str, Any]]:
    from sentence_transformers.cross_encoder import (
        CrossEncoder,
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    device = pick_device(settings.device)
    location = resolve_model(base)
    model = CrossEncoder(location, num_labels=1, max_length=options.max_length, device=device)
    loss, dataset = _reranker_loss(options.loss, model, examples)
    batch_size = options.batch_size or 16
    learning_rate = options.learning_rate or 5e-5
    evaluator = (
        CrossEncoderRerankingEvaluator(
            samples[: options.eval_queries], at_k=10, name=EVAL_NAME, write_csv=False
        )
        if samples
        else None
    )
    args = CrossEncoderTrainingArguments(
        **_trainer_args(work, len(dataset), batch_size, options, learning_rate, settings),
        metric_for_best_model=f"eval_{EVAL_NAME}_ndcg@10" if evaluator else None,
    )
    trainer = CrossEncoderTrainer(
        model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator
    )
    state = _run_trainer(trainer, work, options)
    state.update(batch_size=batch_size, learning_rate=learning_rate)
    best = state.get("best_checkpoint")
    if state["interrupted"] and best:
        model = CrossEncoder(best, max_length=options.max_length, device=device)
    return model, state


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


def _train_multi_vector(
    base: str,
    examples: list[Example],
    samples: list[dict[str, Any]],
    work: Path,
    options: TuneOptions,
    settings: Settings,
) -> tuple[Any, dict[str, Any]]:
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

    device = pick_device(settings.device)
    model = multi_vector_model(base, device, options.max_length)
    return _train_contrastive(
        model,
        MultiVectorMultipleNegativesRankingLoss(model),
        MultiVectorRerankingEvaluator,
        MultiVectorEncoderTrainer,
        MultiVectorEncoderTrainingArguments,
        lambda folder: MultiVectorEncoder(folder, device=device),
        examples,
        samples,
        work,
        options,
        settings,
        # Recompute activations in the backward pass: a batch of 16 with 3 negatives at 256
        # tokens peaked at 8.5 GB without it.
        gradient_checkpointing=True,
    )


def _train_bi_encoder(
    base: str,
    examples: list[Example],
    samples: list[dict[str, Any]],
    work: Path,
    options: TuneOptions,
    settings: Settings,
) -> tuple[Any, dict[str, Any]]:
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.evaluation import RerankingEvaluator
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    device = pick_device(settings.device)
    model = SentenceTransformer(resolve_model(base), device=device)
    return _train_contrastive(
        model,
        MultipleNegativesRankingLoss(model),
        RerankingEvaluator,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        lambda folder: SentenceTransformer(folder, device=device),
        examples,
        samples,
        work,
        options,
        settings,
    )


def _train_contrastive(
    model: Any,
    loss: Any,
    evaluator_class: Any,
    trainer_class: Any,
    args_class: Any,
    load: Callable[[str], Any],
    examples: list[Example],
    samples: list[dict[str, Any]],
    work: Path,
    options: TuneOptions,
    settings: Settings,
    **extra_args: Any,
) -> tuple[Any, dict[str, Any]]:
    """Train an embedding model (one vector or one per token) with MultipleNegativesRankingLoss:
    each query's positive against its hard negatives and every other passage in the batch (no
    duplicate texts in a batch). `load` reads a checkpoint back after an interruption."""
    from datasets import Dataset

    # The first column is the query (the multi-vector collator encodes it as one).
    dataset = Dataset.from_dict(_negatives_columns(examples, "query"))
    batch_size = options.batch_size or 16
    learning_rate = options.learning_rate or 2e-5
    evaluator = (
        evaluator_class(samples[: options.eval_queries], at_k=10, name=EVAL_NAME)
        if samples
        else None
    )
    args = args_class(
        **_trainer_args(work, len(dataset), batch_size, options, learning_rate, settings),
        batch_sampler="no_duplicates",
        metric_for_best_model=f"eval_{EVAL_NAME}_ndcg@10" if evaluator else None,
        **extra_args,
    )
    trainer = trainer_class(
        model=model, args=args, train_dataset=dataset, loss=loss, evaluator=evaluator
    )
    state = _run_trainer(trainer, work, options)
    state.update(batch_size=batch_size, learning_rate=learning_rate)
    best = state.get("best_checkpoint")
    if state["interrupted"] and best:
        model = load(best)
    return model, state


def _trainer_args(
    work: Path,
    rows: int,
    batch_size: int,
    options: TuneOptions,
    learning_rate: float,
    settings: Settings,
) -> dict[str, Any]:
    """Training arguments both trainers share: evaluate and checkpoint `evals` times a run."""
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


def _run_trainer(trainer: Any, work: Path, options: TuneOptions) -> dict[str, Any]:
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
    return {
        "interrupted": interrupted,
        "resumed_from": Path(last).name if last else None,
        "steps": int(trainer_state.global_step),
        "max_steps": int(trainer_state.max_steps),
        "best_checkpoint": best,
        "best_metric": trainer_state.best_metric,
        "history": history,
    }


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


def _outcome(
    state: dict[str, Any], beats: bool, register: bool, refused: str, registered: str, trained: str
) -> str:
    """The command's one line: refused by the guard, registered, or trained only as asked."""
    if not beats:
        line = f"not registered: {refused}"
    elif register:
        line = registered
    else:
        line = f"trained (not registered, as asked): {trained}"
    return _interrupted_note(state) + line


def _interrupted_note(state: dict[str, Any]) -> str:
    if not state.get("interrupted"):
        return ""
    kept = Path(state["best_checkpoint"]).name if state.get("best_checkpoint") else "none"
    return (
        f"interrupted at step {state['steps']} of {state['max_steps']}, kept the best checkpoint "
        f"so far ({kept}; run the same command to resume); "
    )


# -- re-embedding and the card ------------------------------------------------------------------


def _reembed(
    collection: Collection, embedder: SentenceTransformerEmbedder, folder: Path, progress: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Embed every live chunk with the tuned model, in blocks saved as they finish (a rerun of
    an interrupted command picks them up)."""
    keys, texts = collection.store.live_texts()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _model_stamp(embedder.name)
    parts = []
    with tqdm(
        total=len(texts), desc="re-embed", unit="chunk", disable=not progress, dynamic_ncols=True
    ) as bar:
        for start in range(0, len(texts), REEMBED_BLOCK):
            path = folder / f"{stamp}-{start}-{len(texts)}.npy"
            if path.is_file():
                block = np.load(path)
            else:
                block = embedder.embed(texts[start : start + REEMBED_BLOCK])
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, block)
                tmp.replace(path)
            parts.append(block)
            bar.update(len(block))
    vectors = np.concatenate(parts) if parts else np.zeros((0, embedder.dimension), np.float32)
    return keys, vectors


def _model_stamp(folder: str) -> str:
    """A short digest of a model folder's weights: blocks from other weights are not reused."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _stored_vectors(collection: Collection) -> tuple[np.ndarray, np.ndarray]:
    parts = list(collection.store.live_vectors(collection.embedder.dimension))
    return np.concatenate([k for k, _ in parts]), np.concatenate([v for _, v in parts])


def _card(
    kind: str,
    collection: Collection,
    base: str,
    options: TuneOptions,
    data: _Data,
    state: dict[str, Any],
    seconds: float,
    samples: int,
) -> dict[str, Any]:
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "kind": kind,
        "collection": collection.name,
        "base": base,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {**data.counts, "held_out_eval_samples": samples},
        "training": {
            "arch": options.arch if kind == "reranker" else "bi-encoder",
            "loss": options.loss if kind == "reranker" else "mnrl",
            "epochs": options.epochs,
            "max_steps": options.max_steps,
            "batch_size": state["batch_size"],
            "learning_rate": state["learning_rate"],
            "max_length": options.max_length,
            "seed": options.seed,
            "steps": state["steps"],
            "interrupted": state["interrupted"],
            "resumed_from": state["resumed_from"],
            "best_checkpoint": Path(state["best_checkpoint"]).name
            if state.get("best_checkpoint")
            else None,
            "best_in_training_ndcg@10": state["best_metric"],
            "seconds": round(seconds, 1),
            "peak_rss_mb": round(peak_kib / 1024),
            "history": state["history"],
        },
    }


def _write_card(folder: Path, card: dict[str, Any]) -> None:
    """`rag-tune.json` (the card as data) and a README.md a person reads."""
    (folder / "rag-tune.json").write_text(json.dumps(card, indent=2) + "\n")
    training, data = card["training"], card["data"]
    lines = [
        f"# {card['kind']} tuned on collection `{card['collection']}`",
        "",
        f"Trained by `rag tune {card['kind']}` on {card['created_at']} from `{card['base']}`.",
        f"Registered in the collection's manifest: {'yes' if card['registered'] else 'no'}.",
        "",
        "## Data",
        "",
        f"- queries by origin: {data['queries']}",
        f"- training queries: {data['train_queries']}, held-out queries: "
        f"{data['held_out_queries']}",
        f"- training examples: {data['examples']}, each with {data['negatives_per_example']} "
        "hard negatives (dense and BM25, no relevant document)",
        "",
        "## Training",
        "",
        f"- model: {training['arch']}, loss: {training['loss']}, steps: {training['steps']}, "
        f"epochs: {training['epochs']}, "
        f"learning rate: {training['learning_rate']}, batch size: {training['batch_size']}",
        f"- time: {training['seconds']} s, peak memory (RSS): {training['peak_rss_mb']} MB",
        f"- interrupted: {training['interrupted']}, kept checkpoint: "
        f"{training['best_checkpoint'] or 'the final model'}",
        "",
        "## Held-out metrics (nDCG@10, document level)",
        "",
        "```json",
        json.dumps(card["metrics"], indent=2),
        "```",
        "",
    ]
    (folder / "README.md").write_text("\n".join(lines))
