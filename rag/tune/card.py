"""The model card a tuned model is saved with: `rag-tune.json` (data) and a README.md (prose).

card = model_card("reranker", collection, base, options, data, state, seconds, samples=40)
card["metrics"], card["registered"] = {...}, True   # the command adds what it measured
write_card(model_folder, card)
"""

from __future__ import annotations

import json
import resource
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.collection import Collection
from rag.tune.dataset import RunData
from rag.tune.options import TuneOptions
from rag.tune.trainers import BI_ENCODER, TrainState


def model_card(
    kind: str,
    collection: Collection,
    base: str,
    options: TuneOptions,
    data: RunData,
    state: TrainState,
    seconds: float,
    samples: int,
) -> dict[str, Any]:
    """What was trained, on what data, how: the card before its metrics."""
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "kind": kind,
        "collection": collection.name,
        "base": base,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": {**data.counts, "held_out_eval_samples": samples},
        "training": {
            "arch": options.arch if kind == "reranker" else BI_ENCODER,
            "loss": options.loss if kind == "reranker" else "mnrl",
            "epochs": options.epochs,
            "max_steps": options.max_steps,
            "batch_size": state.batch_size,
            "learning_rate": state.learning_rate,
            "max_length": options.max_length,
            "seed": options.seed,
            "steps": state.steps,
            "interrupted": state.interrupted,
            "resumed_from": state.resumed_from,
            "best_checkpoint": Path(state.best_checkpoint).name if state.best_checkpoint else None,
            "best_in_training_ndcg@10": state.best_metric,
            "seconds": round(seconds, 1),
            "peak_rss_mb": round(peak_kib / 1024),
            "history": state.history,
        },
    }


def write_card(folder: Path, card: dict[str, Any]) -> None:
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
        "## Held-out metrics (nDCG@10; by document, or by passage for questions and cut-out "
        "sentences)",
        "",
        "```json",
        json.dumps(card["metrics"], indent=2),
        "```",
        "",
    ]
    (folder / "README.md").write_text("\n".join(lines))
