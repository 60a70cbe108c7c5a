"""How much a hit's document should count in its hybrid score: one search, many weights.

    python benchmarks/financebench.py --variants rag --work /tmp/fb          # builds /tmp/fb
    python benchmarks/document_prior.py --index-dir /tmp/fb/rag/idx --collection fb \
        --questions ../shared/data/financebench-dev/questions.jsonl
    python benchmarks/document_prior.py --collection squad-dev \
        --questions .cache/squad-calibration/questions.jsonl

Each question is searched once as the product searches (its candidates, here without the
document prior), then the candidates are re-scored by `rag.retrieval.with_document_prior` at
each weight, cut to one chunk a page and scored as `rag eval hits` scores them: the gold passage
(or page) in the top 1, 5 and 10, and the gold document in the top 1 and 5. `--mode dense` or
`bm25` applies the same re-scoring to one retriever's list, which the product does not do.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path, PurePath
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tqdm import tqdm

from rag.collection import Collection
from rag.evaluation import is_gold_hit
from rag.questions import read_questions
from rag.retrieval import Searcher, per_page_limit, with_document_prior
from rag.settings import Settings

WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)
KS = (1, 5, 10)


def sweep(
    searcher: Searcher, questions: list[Any], mode: str, per_page: int
) -> list[dict[str, Any]]:
    found: dict[float, dict[str, list[int | None]]] = {
        weight: {"hit": [], "document": []} for weight in WEIGHTS
    }
    depth = searcher.settings.candidates
    for question in tqdm(questions, desc=mode, unit="q", mininterval=10):
        hits = searcher.retrieve(question.question, depth, mode)
        gold = PurePath(str(question.document)).name
        for weight in WEIGHTS:
            ranked = per_page_limit(with_document_prior(hits, weight), per_page)[: max(KS)]
            rank = next((r for r, h in enumerate(ranked, 1) if is_gold_hit(h, question)), None)
            document = next(
                (r for r, h in enumerate(ranked, 1) if PurePath(h.chunk.source).name == gold),
                None,
            )
            found[weight]["hit"].append(rank)
            found[weight]["document"].append(document)

    def rate(ranks: list[int | None], k: int) -> float:
        return round(sum(r is not None and r <= k for r in ranks) / len(ranks), 4)

    return [
        {
            "mode": mode,
            "weight": weight,
            **{f"hit@{k}": rate(found[weight]["hit"], k) for k in KS},
            **{f"document@{k}": rate(found[weight]["document"], k) for k in (1, 5)},
        }
        for weight in WEIGHTS
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-dir", type=Path, help="default: the settings' index_dir")
    parser.add_argument("--collection", required=True)
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--mode", action="append", choices=["hybrid", "dense", "bm25"])
    parser.add_argument("--out", type=Path, help="write the rows here as JSON")
    args = parser.parse_args()
    overrides: dict[str, Any] = {"progress": False, "rerank": False, "document_prior": 0.0}
    if args.index_dir:
        overrides["index_dir"] = args.index_dir
    settings = Settings.load(**overrides)
    questions = read_questions(args.questions)
    rows = []
    with Collection.open(settings.index_dir, args.collection) as collection:
        searcher = Searcher(collection, settings, reranker=None)
        for mode in args.mode or ["hybrid"]:
            rows += sweep(searcher, questions, mode, settings.chunks_per_page)
    for row in rows:
        print("  ".join(f"{key} {value}" for key, value in row.items()))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        results = {"collection": args.collection, "questions": str(args.questions), "rows": rows}
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
