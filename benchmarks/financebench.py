"""Evidence pages on SEC filings: the product's search against a plain LangChain pipeline.

    .venv/bin/python benchmarks/financebench.py --out docs/financebench.json
    .venv/bin/python benchmarks/financebench.py --variants rag --reuse /tmp/fb   # search only

Each variant ingests the filings of `--data` (default ../shared/data/financebench-dev) into its
own collection under `--work`, then searches every question for its top 10 chunks. A hit is a
chunk of the gold filing on the gold evidence page (`rag eval hits`'s rule). Reported per search
mode: page@1/5/10, document@5 (the gold filing among the top 5), evidence@5 (any of the
question's evidence pages in that filing among the top 5: many questions have several), and
page@5 with the search scoped to the gold filing (`--where document=...`): the part of the
problem left once the filing is known. The LangChain baseline is what a newcomer would write:
PyPDFLoader pages, RecursiveCharacterTextSplitter at 1,000 characters (200 overlap), MiniLM,
FAISS.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
import warnings
from pathlib import Path, PurePath
from typing import Any

from rag.evaluation import evaluate_hits
from rag.filters import Where, glob_escape
from rag.models import packaged_path
from rag.questions import Question, read_questions
from rag.settings import DEFAULT_EMBEDDER, Settings

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data" / "financebench-dev"
KS = (1, 5, 10)
MODES = ("dense", "bm25", "hybrid")
# name: (what it is, settings overrides); "langchain" is run by its own function.
RAG_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "rag": ("the product's defaults", {}),
    "rag-no-context": (
        "defaults, chunks indexed without their label and heading",
        {
            "chunk_context": False,
        },
    ),
    "rag-pypdf": (
        "defaults, PDF text read by pypdf alone (before 2026-12-02)",
        {"pdf_text": "pypdf"},
    ),
}


def rag_variant(name: str, data: Path, work: Path, reuse: bool) -> dict[str, Any]:
    from ingest.pipeline import IngestJob
    from rag.collection import Collection
    from rag.retrieval import Searcher

    _, overrides = RAG_VARIANTS[name]
    settings = Settings.load(
        index_dir=work / name / "idx", progress=False, rerank=False, **overrides
    )
    started = time.perf_counter()
    if not (reuse and Collection.exists(settings.index_dir, "fb")):
        report = IngestJob(settings).run_files("fb", [data / "pdfs"])
        print(report.summary(), flush=True)
    ingest_s = time.perf_counter() - started
    questions = read_questions(data / "questions.jsonl")
    result: dict[str, Any] = {"ingest_s": round(ingest_s, 1), "modes": {}}
    with Collection.open(settings.index_dir, "fb") as collection:
        searcher = Searcher(collection, settings, reranker=None)
        for mode in MODES:
            scores = evaluate_hits(searcher, questions, KS, mode=mode, progress=False)
            scoped = scoped_page_rate(searcher, questions, mode)
            evidence = evidence_rate(searcher, data, mode)
            result["modes"][mode] = summarise(scores) | {
                "evidence@5": evidence,
                "page@5_in_gold_document": scoped,
            }
            print(name, mode, result["modes"][mode], flush=True)
    return result


def scoped_page_rate(searcher: Any, questions: list[Question], mode: str, k: int = 5) -> float:
    """page@k with each search restricted to the question's gold filing."""
    from rag.evaluation import is_gold_hit

    found = 0
    for question in questions:
        where = Where.parse([f"document={glob_escape(str(question.document))}"])
        hits = searcher.search(question.question, top_k=k, mode=mode, where=where).hits
        found += any(is_gold_hit(hit, question) for hit in hits)
    return round(found / len(questions), 4)


def evidence_pages(data: Path) -> list[tuple[str, str, set[int]]]:
    """(question, gold filing, every evidence page in it) for each question."""
    out = []
    for line in (data / "questions.jsonl").read_text().splitlines():
        record = json.loads(line)
        document = record["document"]
        pages = {e["page"] for e in record["evidence"] if e["document"] == document}
        out.append((record["question"], document, pages | {record["page"]}))
    return out


def evidence_rate(searcher: Any, data: Path, mode: str, k: int = 5) -> float:
    """Share of questions with any of their evidence pages among the top k."""
    items = evidence_pages(data)
    found = 0
    for question, document, pages in items:
        hits = searcher.search(question, top_k=k, mode=mode).hits
        found += any(
            PurePath(h.chunk.source).name == document and h.chunk.page in pages for h in hits
        )
    return round(found / len(items), 4)


def summarise(scores: dict[str, Any]) -> dict[str, float]:
    out = {f"page@{k}": scores[f"hit@{k}"] for k in KS}
    out["document@5"] = scores["document_hit@5"]
    return out


def langchain_variant(data: Path) -> dict[str, Any]:
    """PyPDFLoader + 1,000-character chunks + MiniLM + FAISS, as in LangChain's tutorials."""
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    started = time.perf_counter()
    pages = []
    for path in sorted((data / "pdfs").glob("*.pdf")):
        pages.extend(PyPDFLoader(str(path)).load())
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    chunks = splitter.split_documents(pages)
    embeddings = HuggingFaceEmbeddings(model_name=str(packaged_path(DEFAULT_EMBEDDER)))
    store = FAISS.from_documents(chunks, embeddings)
    ingest_s = time.perf_counter() - started
    questions = read_questions(data / "questions.jsonl")
    evidence = evidence_pages(data)
    ranks: list[tuple[int | None, int | None]] = []
    any_evidence = 0
    for question, (_, _, pages) in zip(questions, evidence, strict=True):
        found = store.similarity_search(question.question, k=max(KS))
        gold = PurePath(str(question.document)).name
        page_rank = doc_rank = None
        for rank, chunk in enumerate(found, start=1):
            name = PurePath(chunk.metadata["source"]).name
            if name == gold and doc_rank is None:
                doc_rank = rank
            if name == gold and int(chunk.metadata["page"]) + 1 == question.page:
                page_rank = page_rank or rank
        any_evidence += any(
            PurePath(c.metadata["source"]).name == gold and int(c.metadata["page"]) + 1 in pages
            for c in found[:5]
        )
        ranks.append((page_rank, doc_rank))
    n = len(questions)
    scores = {
        f"page@{k}": round(sum(r is not None and r <= k for r, _ in ranks) / n, 4) for k in KS
    }
    scores["document@5"] = round(sum(d is not None and d <= 5 for _, d in ranks) / n, 4)
    scores["evidence@5"] = round(any_evidence / n, 4)
    print("langchain", scores, flush=True)
    return {"ingest_s": round(ingest_s, 1), "chunks": len(chunks), "modes": {"dense": scores}}


def table(results: dict[str, Any]) -> str:
    rows = [
        "| variant | mode | page@1 | page@5 | page@10 | evidence@5 | document@5 "
        "| page@5 in the gold filing |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        for mode, s in result["modes"].items():
            scoped = s.get("page@5_in_gold_document", "")
            rows.append(
                f"| {name} | {mode} | {s['page@1']:.3f} | {s['page@5']:.3f} | "
                f"{s['page@10']:.3f} | {s['evidence@5']:.3f} | {s['document@5']:.3f} | {scoped} |"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--work", type=Path, default=Path("/tmp/financebench-bench"))
    parser.add_argument("--variants", default="langchain,rag,rag-no-context")
    parser.add_argument("--reuse", action="store_true", help="Search collections already built.")
    parser.add_argument("--out", type=Path, help="Write the results here as JSON.")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    results: dict[str, Any] = {}
    for name in args.variants.split(","):
        if name == "langchain":
            results[name] = langchain_variant(args.data)
        else:
            results[name] = rag_variant(name, args.data, args.work, args.reuse)
    print(table(results))
    if args.out:
        meta = {"data": str(args.data), "machine": platform.platform(), "cpus": _cpus()}
        args.out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
