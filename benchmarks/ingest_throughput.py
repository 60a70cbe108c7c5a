"""Ingest throughput and peak memory: the project's job against the LangChain equivalent.

    .venv/bin/python benchmarks/ingest_throughput.py                      # all variants
    .venv/bin/python benchmarks/ingest_throughput.py --variants langchain,rag-int8 --repeat 2
    .venv/bin/python benchmarks/ingest_throughput.py --quality            # int8/onnx vs fp32

Each variant runs in its own subprocess, so its peak RSS is its own (`os.wait4`) and its model
load is counted the same way for all. A variant reports `setup` (imports and model load) and
`work` (parse, chunk, embed, index) separately; the table's rates are end to end (setup + work).
ONNX exports are built once before any timing (their one-off cost is reported on its own).
Results go to a JSON file (default benchmarks/results/ingest_throughput.json).
The jobs being timed are in ingest_runners.py, the experimental variant (OpenVINO static
int8) in ingest_experimental.py.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from ingest_experimental import run_openvino_int8
from ingest_runners import (
    CHUNK_OVERLAP,
    CHUNK_TOKENS,
    MODEL,
    ROOT,
    run_langchain,
    run_rag,
    run_rag_one_call,
)

HERE = Path(__file__).resolve().parent
# The commit before the throughput work, for the "rag-before" variant.
BASELINE_REV = "37ebf25"


# --- variants (each runs inside a worker subprocess) ------------------------------------------


def pipeline_before() -> ModuleType:
    """ingest/pipeline.py as it was before the throughput work (BASELINE_REV), as a module.

    It runs against today's rest of the code, so it may break once that moves on."""
    source = subprocess.run(
        ["git", "show", f"{BASELINE_REV}:ingest/pipeline.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = ModuleType("ingest_pipeline_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{BASELINE_REV[:7]}:ingest/pipeline.py", "exec"), module.__dict__)
    return module


def run_rag_before(pdfs: list[Path], workdir: Path, backend: str = "torch") -> dict[str, Any]:
    """The job as it was before this work (embedding in calls of >= 512 chunks)."""
    return run_rag(pdfs, workdir, backend=backend, job_class=pipeline_before().IngestJob)


VARIANTS: dict[str, tuple[str, Callable[..., dict[str, Any]], dict[str, Any]]] = {
    "langchain": (
        "PyPDFLoader + RecursiveCharacterTextSplitter + HuggingFaceEmbeddings + FAISS",
        run_langchain,
        {},
    ),
    "rag-before": (
        f"the project's job as at {BASELINE_REV[:7]}: torch fp32, embeds in calls of >= 512 chunks",
        run_rag_before,
        {},
    ),
    "rag-before-int8": (
        f"the job as at {BASELINE_REV[:7]} with the int8 embedder",
        run_rag_before,
        {"backend": "int8"},
    ),
    "rag": ("the job now (embeds as soon as a batch is ready), torch fp32", run_rag, {}),
    "rag-onnx": ("... ONNX Runtime fp32, fused attention", run_rag, {"backend": "onnx"}),
    "rag-int8": ("... ONNX Runtime int8 (per-channel dynamic)", run_rag, {"backend": "int8"}),
    "rag-int8-one-call": (
        "rag-int8 as before texts were embedded side by side: one call at a time, on all cores",
        run_rag_one_call,
        {},
    ),
    "rag-int8-plain": (
        "rag-int8 without the document features of issue #13: no OCR, chunks without context",
        run_rag,
        {"backend": "int8", "overrides": {"ocr": "off", "chunk_context": False}},
    ),
    "rag-int8-torch-probe": (
        "rag-int8 importing torch to look for a GPU first (every command before 2026-12-03)",
        run_rag,
        {"backend": "int8", "probe_torch": True},
    ),
    "rag-int8-pypdf": (
        "rag-int8 with PDF text read by pypdf alone (the product before PDFium read the text)",
        run_rag,
        {"backend": "int8", "overrides": {"pdf_text": "pypdf"}},
    ),
    "rag-int8-in-process": (
        "rag-int8 reading PDFs in the job's own process (the product before 2026-12-03)",
        run_rag,
        {"backend": "int8", "overrides": {"pdf_stall_s": 0}},
    ),
    "rag-ov-int8": (
        "experimental, not in the product: OpenVINO static int8 (NNCF, 64 SciFact abstracts)",
        run_openvino_int8,
        {},
    ),
}
DEFAULT_VARIANTS = ["langchain", "rag-before", "rag", "rag-onnx", "rag-int8"]


def worker(variant: str, pdf_dir: Path, result: Path) -> None:
    """Run one variant in this process and write its numbers to `result`."""
    _, function, options = VARIANTS[variant]
    pdfs = sorted(pdf_dir.glob("*.pdf"))
    with tempfile.TemporaryDirectory(prefix=f"bench-{variant}-") as tmp:
        numbers = function(pdfs, Path(tmp), **options)
    result.write_text(json.dumps(numbers), encoding="utf-8")


# --- the parent: spawn, measure, tabulate -----------------------------------------------------


def spawn(args: list[str]) -> tuple[int, float, float, float]:
    """Run this script with `args` in a child; (exit status, wall seconds, CPU seconds, peak
    RSS in MB)."""
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    # Linux reports ru_maxrss in KiB.
    cpu = usage.ru_utime + usage.ru_stime
    return child.returncode, time.perf_counter() - started, cpu, usage.ru_maxrss / 1024


def measure(variant: str, pdf_dir: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-result-") as tmp:
        result = Path(tmp) / "result.json"
        status, wall, cpu, rss = spawn(
            ["--worker", variant, "--pdfs", str(pdf_dir), "--result", str(result)]
        )
        if status != 0:
            raise SystemExit(f"variant {variant} failed with exit status {status}")
        numbers: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
    numbers["total_s"] = numbers["setup_s"] + numbers["work_s"]
    numbers["process_s"] = wall
    numbers["cpu_s"] = cpu
    numbers["peak_rss_mb"] = rss
    return numbers


def prepare_exports(names: list[str]) -> dict[str, float]:
    """Build the exported models the variants need, each in a fresh process (timed; about zero
    when cached already)."""
    seconds: dict[str, float] = {}
    wanted = {
        "rag-onnx": "onnx",
        "rag-int8": "int8",
        "rag-int8-plain": "int8",
        "rag-before-int8": "int8",
        "rag-int8-pypdf": "int8",
        "rag-int8-in-process": "int8",
        "rag-int8-torch-probe": "int8",
        "rag-ov-int8": "openvino-int8",
    }
    for backend in sorted({wanted[name] for name in names if name in wanted}):
        build = (
            f"import sys; sys.path.insert(0, {str(HERE)!r}); "
            "__import__('ingest_experimental').openvino_int8_model()"
            if backend == "openvino-int8"
            else f"__import__('rag.embedding').embedding.onnx_export({MODEL!r}, {backend!r})"
        )
        code = f"import time; t = time.perf_counter(); {build}; print(time.perf_counter() - t)"
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
        )
        seconds[backend] = float(out.stdout.strip().splitlines()[-1])
    return seconds


def table(rows: dict[str, dict[str, Any]], baseline: str = "langchain") -> str:
    head = (
        f"{'variant':<18} {'files':>5} {'pages':>5} {'chunks':>6} {'setup s':>8} {'work s':>7} "
        f"{'total s':>8} {'cpu s':>6} {'pages/s':>8} {'chunks/s':>8} {'peak MB':>8} {'vs LC':>6}"
    )
    lines = [head, "-" * len(head)]
    base = rows.get(baseline)
    for name, r in rows.items():
        pages_s = r["pages"] / r["total_s"]
        speedup = f"{pages_s / (base['pages'] / base['total_s']):.2f}x" if base is not None else "-"
        lines.append(
            f"{name:<18} {r['files']:>5} {r['pages']:>5} {r['chunks']:>6} {r['setup_s']:>8.1f} "
            f"{r['work_s']:>7.1f} {r['total_s']:>8.1f} {r['cpu_s']:>6.0f} {pages_s:>8.2f} "
            f"{r['chunks'] / r['total_s']:>8.1f} {r['peak_rss_mb']:>8.0f} {speedup:>6}"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in load],
    }


def main_benchmark(args: argparse.Namespace) -> None:
    names = args.variants.split(",") if args.variants else DEFAULT_VARIANTS
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]!r} (valid: {', '.join(VARIANTS)})")
    pdf_dir = (ROOT / args.pdfs).resolve()  # an absolute --pdfs replaces ROOT
    if not any(pdf_dir.glob("*.pdf")):
        raise SystemExit(f"no PDFs in {pdf_dir}")
    exports = prepare_exports(names)
    rounds: list[dict[str, dict[str, Any]]] = []
    for number in range(1, args.repeat + 1):
        rows: dict[str, dict[str, Any]] = {}
        for name in names:
            print(f"[round {number}] {name} ...", file=sys.stderr, flush=True)
            rows[name] = measure(name, pdf_dir)
        rounds.append(rows)
        print(f"\nround {number} of {args.repeat} ({pdf_dir})")
        print(table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "pdfs": str(pdf_dir),
        "machine": machine(),
        "chunking": {"chunk_tokens": CHUNK_TOKENS, "chunk_overlap": CHUNK_OVERLAP},
        "variants": {name: VARIANTS[name][0] for name in names},
        "onnx_export_once_s": exports,
        "rounds": rounds,
    }
    if args.repeat > 1:
        report["median_pages_per_s"] = {
            name: statistics.median(r[name]["pages"] / r[name]["total_s"] for r in rounds)
            for name in names
        }
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"\nwrote {out}")


# --- quality: the lossy backends against fp32 -------------------------------------------------


def scifact_subset(scifact: Path, out: Path, size: int, seed: int = 0) -> Path:
    """A BEIR folder: SciFact's test queries, every judged document, and random others up to
    `size` documents."""
    records = [
        json.loads(line)
        for line in (scifact / "corpus.jsonl").open(encoding="utf-8")
        if line.strip()
    ]
    qrels = [
        line.rstrip("\n").split("\t")
        for line in (scifact / "qrels" / "test.tsv").open(encoding="utf-8")
        if line.strip() and not line.startswith("query-id")
    ]
    judged = {row[1] for row in qrels}
    rng = random.Random(seed)
    others = [r for r in records if str(r["_id"]) not in judged]
    keep = [r for r in records if str(r["_id"]) in judged]
    keep += rng.sample(others, max(0, size - len(keep)))
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for record in keep:
            handle.write(json.dumps(record) + "\n")
    shutil.copy(scifact / "queries.jsonl", out / "queries.jsonl")
    shutil.copy(scifact / "qrels" / "test.tsv", out / "qrels" / "test.tsv")
    return out


def main_quality(args: argparse.Namespace) -> None:
    import numpy as np

    from ingest.beir import BeirDataset
    from ingest.pipeline import IngestJob
    from ingest.sources import document_sources
    from rag.collection import Collection
    from rag.embedding import SentenceTransformerEmbedder
    from rag.evaluation import evaluate_retrieval
    from rag.retrieval import Searcher
    from rag.settings import Settings

    scifact = (ROOT / args.scifact).resolve()
    backends = ["torch", "onnx", "int8"]
    embedders = {b: SentenceTransformerEmbedder(MODEL, device="cpu", backend=b) for b in backends}
    report: dict[str, Any] = {"scifact": str(scifact)}

    # 1. Cosine similarity to fp32 (torch) on abstracts and on queries.
    data = BeirDataset(scifact)
    abstracts = [d.pages[0].text for d in itertools.islice(data.documents(), args.cos_docs)]
    queries = list(data.queries("test").values())
    cosines: dict[str, Any] = {}
    for label, texts in (("abstracts", abstracts), ("queries", queries)):
        reference = embedders["torch"].embed(texts)
        for b in backends[1:]:
            sims = (reference * embedders[b].embed(texts)).sum(axis=1)
            cosines[f"{b} {label}"] = {
                "n": len(texts),
                "min": round(float(sims.min()), 4),
                "p1": round(float(np.percentile(sims, 1)), 4),
                "mean": round(float(sims.mean()), 4),
            }
            print(f"cosine to fp32, {b}, {len(texts)} {label}: {cosines[f'{b} {label}']}")
    report["cosine_to_fp32"] = cosines

    # 2. Dense nDCG@10 through the real ingest and search path, on a SciFact subset.
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        subset = BeirDataset(scifact_subset(scifact, Path(tmp) / "scifact-subset", args.eval_docs))
        settings = Settings.load(index_dir=Path(tmp) / "indexes", progress=False)
        judged_queries, qrels = subset.queries("test"), subset.qrels("test")
        ndcg: dict[str, Any] = {}
        for doc_backend in ("torch", "int8"):
            name = f"scifact-{doc_backend}"
            IngestJob(settings, embedder=embedders[doc_backend]).run(
                name, document_sources(subset.documents())
            )
            collection = Collection.open(settings.index_dir, name)
            try:
                for query_backend in ("torch", "int8"):
                    searcher = Searcher(
                        collection, settings, embedder=embedders[query_backend], reranker=None
                    )
                    scores = evaluate_retrieval(
                        searcher, judged_queries, qrels, subset.doc_id_of, ["dense"], progress=False
                    )["dense"]
                    key = f"documents {doc_backend}, queries {query_backend}"
                    ndcg[key] = scores
                    print(f"dense, {key}: {scores}")
            finally:
                collection.close()
        report["dense_retrieval"] = {
            "dataset": f"SciFact test queries ({len(judged_queries)}), {args.eval_docs} documents "
            "(all judged ones plus random others, seed 0)",
            "results": ndcg,
        }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdfs", default="../shared/data/pdfs/real", help="relative to repo root")
    parser.add_argument("--out", help="JSON results path")
    parser.add_argument("--variants", help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--repeat", type=int, default=1, help="run the whole set this many times")
    parser.add_argument("--quality", action="store_true", help="compare backends to fp32 instead")
    parser.add_argument("--scifact", default="../shared/data/scifact", help="for --quality")
    parser.add_argument("--cos-docs", type=int, default=500, help="abstracts for the cosine check")
    parser.add_argument("--eval-docs", type=int, default=1000, help="documents in the nDCG subset")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    if args.worker:
        worker(args.worker, Path(args.pdfs), Path(args.result))
    elif args.quality:
        args.out = args.out or "benchmarks/results/ingest_quality.json"
        main_quality(args)
    else:
        args.out = args.out or "benchmarks/results/ingest_throughput.json"
        main_benchmark(args)


if __name__ == "__main__":
    main()
