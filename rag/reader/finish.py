"""After training: export, choose int8 or float32, fit the confidence, describe the run.

    finish_model(options, training_record, work=Path(".cache/reader-train"), out=Path(...))

Everything here looks only at the calibration articles (rag/squad.py): they choose the export and
fit the calibration, so the held-out articles stay unseen for the figures reported.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import ModelError
from rag.reader.calibration import FEATURES, Calibrator, reliability
from rag.reader.data import Example, paragraphs, squad_examples
from rag.reader.evaluate import CONDITIONS, passage_sets, read_all, summary
from rag.reader.export import export_reader
from rag.reader.model import CALIBRATION_FILE, SpanReader
from rag.squad import ArticleSplit, article_split, load_squad

if TYPE_CHECKING:
    from rag.reader.options import TrainOptions

logger = logging.getLogger(__name__)

TRAINING_FILE = "training.json"
# What a confidence is the probability of. Holding a gold answer, not matching one exactly: an
# answer such as "90° to each other" for the gold "90°" is right for the person who reads it, and
# a label of exact match taught the confidence to refuse such answers (docs/answers.md).
LABEL = "the best span holds a gold answer (SQuAD normalisation)"
# The files of a model folder this stage writes; anything else there (the card) is left alone.
_OWNED = ("model.onnx", "reader.json", CALIBRATION_FILE, TRAINING_FILE)


def finish_model(
    options: TrainOptions,
    record: dict[str, Any],
    work: Path,
    out: Path,
    int8_tolerance: float = 1.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Export the weights in `work/torch`, keep int8 unless it loses more than `int8_tolerance`
    F1 points to float32 on the calibration articles, fit the confidence there, and write the
    model folder `out`. Returns what was written to `out/training.json`."""
    began = time.perf_counter()
    articles, split, examples = calibration_examples(options)
    gold = [[e.paragraph] for e in examples]
    exports, scores = {}, {}
    for kind in ("fp32", "int8"):
        exports[kind] = export_reader(
            work / "torch",
            work / f"onnx-{kind}",
            quantize=kind == "int8",
            max_length=options.max_length,
            stride=options.stride,
        )
        outcomes = read_all(SpanReader(exports[kind]), examples, gold, "gold", progress=progress)
        scores[kind] = summary(outcomes)
        logger.info("%s on the calibration articles' gold paragraphs: %s", kind, scores[kind])
    loss = float(scores["fp32"]["f1"]) - float(scores["int8"]["f1"])
    chosen = "int8" if loss <= int8_tolerance else "fp32"
    out.mkdir(parents=True, exist_ok=True)
    for name in _OWNED:
        (out / name).unlink(missing_ok=True)
    for path in exports[chosen].iterdir():
        shutil.copy2(path, out / path.name)

    calibration = fit_confidence(out, articles, split, examples, progress)
    written = {
        **record,
        "options": dataclasses.asdict(options),
        "split": {
            "train": list(split.train),
            "calibration": list(split.calibration),
            "held_out": list(split.held_out),
        },
        "export": {
            "kept": chosen,
            "int8_tolerance_f1": int8_tolerance,
            "calibration_articles_gold_paragraph": scores,
            "model_mb": round((out / "model.onnx").stat().st_size / 2**20, 1),
        },
        "calibration": calibration,
        "finish_seconds": round(time.perf_counter() - began, 1),
    }
    (out / TRAINING_FILE).write_text(json.dumps(written, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote the %s reader to %s", chosen, out)
    return written


def calibration_examples(
    options: TrainOptions,
) -> tuple[list[dict[str, Any]], ArticleSplit, list[Example]]:
    """The SQuAD articles, their split, and the questions of the calibration articles (the first
    `options.limit` of them when it is set)."""
    articles = load_squad(Path(options.squad))
    split = article_split([str(a["title"]) for a in articles])
    examples = squad_examples(articles, split.calibration)
    return articles, split, examples[: options.limit or None]


def fit_confidence(
    folder: Path,
    articles: list[dict[str, Any]],
    split: ArticleSplit,
    examples: list[Example],
    progress: bool = True,
) -> dict[str, Any]:
    """Fit the confidence of the reader in `folder` on `examples` (questions of the calibration
    articles) read in each of CONDITIONS, write it to `folder`, and say what was fitted."""
    from rag.embedding import SentenceTransformerEmbedder

    dense = SentenceTransformerEmbedder("sentence-transformers/all-MiniLM-L6-v2", device="cpu")
    sets = passage_sets(examples, paragraphs(articles, split.calibration), dense)
    reader = SpanReader(folder)
    rows: list[dict[str, float]] = []
    labels: list[bool] = []
    counts: dict[str, dict[str, int]] = {}
    for condition in CONDITIONS:
        outcomes = read_all(
            reader, examples, sets[condition], condition, with_features=True, progress=progress
        )
        kept = [o for o in outcomes if o.features is not None]
        rows.extend(o.features for o in kept if o.features is not None)
        labels.extend(o.contains for o in kept)
        counts[condition] = {"spans": len(kept), "right": sum(o.contains for o in kept)}
    calibration: dict[str, Any] = {"label": LABEL, "conditions": counts}
    try:
        calibrator = Calibrator.fit(
            rows,
            labels,
            LABEL,
            {"articles": list(split.calibration), "questions": len(examples), **counts},
        )
    except ModelError as e:  # a smoke run's handful of questions may all be wrong
        logger.warning("no calibration written: %s", e)
        (folder / CALIBRATION_FILE).unlink(missing_ok=True)
        calibration["skipped"] = str(e)
        return calibration
    calibrator.save(folder / CALIBRATION_FILE)
    error, table = reliability(calibrator.probabilities(rows).tolist(), labels)
    calibration.update(
        {
            "coefficients": dict(zip(FEATURES, calibrator.coef, strict=True)),
            "in_sample_ece": round(error, 4),
            "in_sample_table": table,
        }
    )
    return calibration


def recalibrate(options: TrainOptions, folder: Path, progress: bool = True) -> dict[str, Any]:
    """Fit the confidence of the finished model in `folder` again (with this code's label and
    features) and record it in its training.json; the weights are left as they are."""
    record_file = folder / TRAINING_FILE
    if not record_file.is_file():
        raise ModelError(f"{folder} holds no finished reader ({TRAINING_FILE} is missing)")
    articles, split, examples = calibration_examples(options)
    record = json.loads(record_file.read_text(encoding="utf-8"))
    record["calibration"] = fit_confidence(folder, articles, split, examples, progress)
    record_file.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    logger.info("fitted the confidence of %s again", folder)
    return record
