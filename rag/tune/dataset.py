"""A run's training data, kept in its work folder so that the same command resumes.

    data = prepare(searcher, work, "reranker", base, options, settings)
    data.examples, data.held_out, data.counts   # mined examples, held-out queries, what was made

The data is built once (queries, held-out split, mined negatives) and saved with a fingerprint of
what decides it; a rerun with the same fingerprint loads it instead of building it again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.collection import Collection
from rag.errors import ConfigError
from rag.generation import make_llm
from rag.questions import read_questions
from rag.retrieval import Searcher
from rag.settings import Settings
from rag.tune.heldout import split_held_out
from rag.tune.negatives import Example, mine_negatives
from rag.tune.options import TuneOptions
from rag.tune.queries import (
    TrainQuery,
    labelled_queries,
    llm_queries,
    question_queries,
    read_qrels,
    read_queries,
    self_supervised_queries,
)

logger = logging.getLogger(__name__)


@dataclass
class RunData:
    """The training data of a run, as saved in its work folder for a resume."""

    examples: list[Example]
    held_out: list[TrainQuery]
    counts: dict[str, Any]


def prepare(
    searcher: Searcher,
    work: Path,
    kind: str,
    base: str,
    options: TuneOptions,
    settings: Settings,
) -> RunData:
    """The run's data: loaded from the work folder when the same run was interrupted (a resume),
    else built (queries, held-out split, mined negatives) and saved there."""
    collection = searcher.collection
    fingerprint = _fingerprint(kind, base, options, collection)
    run_file = work / "run.json"
    if not options.restart and run_file.is_file():
        saved = json.loads(run_file.read_text())
        if saved.get("fingerprint") == fingerprint:
            logger.info("resuming the %s run in %s", kind, work)
            return _load(work)
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
    return RunData(examples, held_out, counts)


def positive_texts(collection: Collection, queries: Sequence[TrainQuery]) -> dict[int, str]:
    """The stored text of every positive chunk of the queries, by chunk key."""
    keys = sorted({key for query in queries for key in query.positives})
    return {key: chunk.text for key, chunk in collection.store.chunks(keys).items()}


def _load(work: Path) -> RunData:
    lines = (work / "examples.jsonl").read_text(encoding="utf-8").splitlines()
    examples = [Example.from_json(json.loads(line)) for line in lines if line]
    held_out = []
    for line in (work / "held_out.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        record["positives"] = tuple(record["positives"])
        record["relevant"] = frozenset(record["relevant"])
        held_out.append(TrainQuery(**record))
    return RunData(examples, held_out, json.loads((work / "counts.json").read_text()))


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
    return self_supervised_queries(
        collection, options.max_queries, options.seed, rare_share=options.rare_share
    )


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
