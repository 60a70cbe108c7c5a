"""Ingest throughput and peak memory: the project's job against the LangChain equivalent.

    .venv/bin/python benchmarks/ingest_throughput.py                      # all variants
    .venv/bin/python benchmarks/ingest_throughput.py --variants langchain,rag-int8 --repeat 2
    .venv/bin/python benchmarks/ingest_throughput.py --quality            # int8/onnx vs fp32

Each variant runs in its own subprocess, so its peak RSS is its own (`os.wait4`) and its model
load is counted the same way for all. A variant reports `setup` (imports and model load) and
`work` (parse, chunk, embed, index) separately; the table's rates are end to end (setup + work).
ONNX exports are built once before any timing (their one-off cost is reported on its own).
Results go to a JSON file (default benchmarks/results/ingest_throughput.json).
"""

from __future__ import annotations

import argparse
import functools
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

ROOT = Path(__file__).resolve().parent.parent
# The commit before the throughput work, for the "rag-before" variant.
BASELINE_REV = "37ebf25"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CHUNK_TOKENS = 240
CHUNK_OVERLAP = 32


# --- variants (each runs inside a worker subprocess) ------------------------------------------


def run_langchain(pdfs: list[Path], workdir: Path) -> dict[str, Any]:
    """PyPDFLoader per file + RecursiveCharacterTextSplitter in MiniLM tokens +
    HuggingFaceEmbeddings (default settings) + FAISS.from_documents."""
    started = time.perf_counter()
    from langchain_community.document_loaders import PyPDFLoader
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter
    from transformers import AutoTokenizer

    from rag.models import packaged_path

    folder = str(packaged_path(MODEL))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    embeddings = HuggingFaceEmbeddings(model_name=folder)
    ready = time.perf_counter()

    pages = []
    for path in pdfs:  # one broken file would end the whole loop; the benchmark set is clean
        pages.extend(PyPDFLoader(str(path)).load())
    loaded = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokenizer, chunk_size=CHUNK_TOKENS, chunk_overlap=CHUNK_OVERLAP
    )
    chunks = splitter.split_documents(pages)
    split = time.perf_counter()
    store = FAISS.from_documents(chunks, embeddings)
    store.save_local(str(workdir / "faiss"))
    done = time.perf_counter()
    return {
        "files": len(pdfs),
        "pages": len(pages),
        "chunks": len(chunks),
        "setup_s": ready - started,
        "work_s": done - ready,
        "stages_s": {"load": loaded - ready, "chunk": split - loaded, "embed+index": done - split},
    }


class _TimedEmbedder:
    """Forwards to an embedder and adds up the seconds spent in `embed`."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.seconds = 0.0

    @property
    def dimension(self) -> int:
        return int(self.inner.dimension)

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    def embed(self, texts: list[str]) -> Any:
        started = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self.seconds += time.perf_counter() - started


def run_rag(
    pdfs: list[Path],
    workdir: Path,
    backend: str = "torch",
    job_class: Any = None,
    embedder_factory: Callable[[], Any] | None = None,
    loader: Callable[[Path], Any] | None = None,
) -> dict[str, Any]:
    """The project's ingest job with default settings, a fresh index folder, and `backend`."""
    started = time.perf_counter()
    from ingest.loaders import sha256_file
    from ingest.pipeline import IngestJob
    from ingest.sources import Source
    from rag.embedding import SentenceTransformerEmbedder
    from rag.settings import DEFAULT_EMBEDDER, Settings

    settings = Settings.load(index_dir=workdir / "indexes", progress=False)
    # Built as the job builds its own, plus the backend; loaded here so setup is timed apart.
    embedder = (
        embedder_factory()
        if embedder_factory is not None
        else SentenceTransformerEmbedder(
            DEFAULT_EMBEDDER, settings.device, settings.embed_batch_size, backend=backend
        )
    )
    _ = embedder.dimension, embedder.tokenizer
    timed = _TimedEmbedder(embedder)
    job = (job_class or IngestJob)(settings, embedder=timed)
    ready = time.perf_counter()
    if loader is None:
        report = job.run_files("bench", pdfs)
    else:
        sources = [
            Source(str(p), "file", sha256_file(p), functools.partial(loader, p)) for p in pdfs
        ]
        report = job.run("bench", sources)
    done = time.perf_counter()
    if report.failed:
        raise SystemExit(f"ingest failed for {report.failed}")
    return {
        "files": report.ingested,
        "pages": report.pages,
        "chunks": report.chunks,
        "setup_s": ready - started,
        "work_s": done - ready,
        "stages_s": {"embed (inside the job)": timed.seconds},
    }


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


# --- experimental: OpenVINO static int8 (not in the product; needs openvino and nncf) --------

OV_CACHE = Path.home() / ".cache" / "rag" / "bench-openvino"
OV_CALIBRATION = 64  # SciFact abstracts, from record 3000 on: not the PDFs being measured


def openvino_int8_model() -> Path:
    """An OpenVINO IR of MiniLM (pooling and normalisation included), int8 by NNCF's static
    post-training quantisation; built once into OV_CACHE."""
    target = OV_CACHE / f"minilm-int8-cal{OV_CALIBRATION}.xml"
    if target.is_file():
        return target
    import logging

    import nncf
    import openvino as ov
    import torch
    from sentence_transformers import SentenceTransformer

    from rag.models import packaged_path

    nncf.set_log_level(logging.ERROR)
    folder = str(packaged_path(MODEL))
    model = SentenceTransformer(
        folder, device="cpu", model_kwargs={"attn_implementation": "eager"}
    ).eval()
    names = ("input_ids", "attention_mask", "token_type_ids")

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, tensors, strict=True)))["sentence_embedding"]

    sample = model.tokenizer(["an example sentence", "two"], padding=True, return_tensors="pt")
    converted = ov.convert_model(Pipeline().eval(), example_input=tuple(sample[n] for n in names))
    for port, name in zip(converted.inputs, names, strict=True):
        port.get_tensor().set_names({name})
    records = (
        (ROOT / "../shared/data/scifact/corpus.jsonl").read_text(encoding="utf-8").splitlines()
    )
    texts = [
        f"{r['title']}\n\n{r['text']}"
        for r in map(json.loads, records[3000 : 3000 + OV_CALIBRATION])
    ]
    batches = []
    for start in range(0, len(texts), 8):
        encoded = model.tokenizer(
            texts[start : start + 8],
            padding=True,
            truncation=True,
            max_length=256,
            return_tensors="np",
        )
        batches.append({n: encoded[n].astype("int64") for n in names})
    quantized = nncf.quantize(
        converted,
        nncf.Dataset(batches),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(batches),
    )
    OV_CACHE.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(target))
    model.tokenizer.save_pretrained(str(OV_CACHE))
    return target


class OpenVinoEmbedder:
    """The Embedder protocol over an OpenVINO IR; batches cut by token length, as in the product's
    ONNX backends."""

    def __init__(self, xml: Path, batch_size: int = 64) -> None:
        import openvino as ov
        from transformers import AutoTokenizer

        self.name = MODEL
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(str(xml.parent))
        compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self.request = compiled.create_infer_request()

    @property
    def dimension(self) -> int:
        return 384

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        ids = self.tokenizer(texts, truncation=True, max_length=256)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        out = np.empty((len(ids), 384), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = len(ids[rows[0]])
            input_ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                input_ids[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = 1
            feeds = {
                "input_ids": input_ids,
                "attention_mask": mask,
                "token_type_ids": np.zeros_like(mask),
            }
            out[rows] = next(iter(self.request.infer(feeds).values()))
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def run_openvino_int8(pdfs: list[Path], workdir: Path) -> dict[str, Any]:
    """The project's job with the experimental OpenVINO int8 embedder passed in."""
    return run_rag(pdfs, workdir, embedder_factory=lambda: OpenVinoEmbedder(openvino_int8_model()))


def pdfium_document(path: Path) -> Any:
    """Experimental: a PDF's pages read with pypdfium2 (PDFium, C) instead of pypdf."""
    import pypdfium2

    from rag.types import Document, Page, sha256_hex

    raw = path.read_bytes()
    pages: list[Page] = []
    empty: list[int] = []
    for number, page in enumerate(pypdfium2.PdfDocument(raw), start=1):
        text = page.get_textpage().get_text_range().replace("\r\n", "\n").replace("\r", "\n")
        text = "\n".join(line.rstrip() for line in text.split("\n")).strip()
        if text:
            pages.append(Page(number, text))
        else:
            empty.append(number)
    return Document(
        id=sha256_hex(raw),
        source=str(path),
        title=path.stem,
        media_type="application/pdf",
        pages=tuple(pages),
        empty_pages=tuple(empty),
    )


def run_int8_pdfium(pdfs: list[Path], workdir: Path) -> dict[str, Any]:
    """As rag-int8 (the product's int8 backend), with PDFs read by pypdfium2."""
    return run_rag(pdfs, workdir, backend="int8", loader=pdfium_document)


def run_openvino_int8_pdfium(pdfs: list[Path], workdir: Path) -> dict[str, Any]:
    """As rag-ov-int8, with PDFs read by pypdfium2."""
    return run_rag(
        pdfs,
        workdir,
        embedder_factory=lambda: OpenVinoEmbedder(openvino_int8_model()),
        loader=pdfium_document,
    )


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
    "rag-int8-pdfium": (
        "experimental, not in the product: rag-int8 with PDFs read by pypdfium2, not pypdf",
        run_int8_pdfium,
        {},
    ),
    "rag-ov-int8": (
        "experimental, not in the product: OpenVINO static int8 (NNCF, 64 SciFact abstracts)",
        run_openvino_int8,
        {},
    ),
    "rag-ov-int8-pdfium": (
        "experimental, not in the product: rag-ov-int8 with PDFs read by pypdfium2, not pypdf",
        run_openvino_int8_pdfium,
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
        "rag-before-int8": "int8",
        "rag-int8-pdfium": "int8",
        "rag-ov-int8": "openvino-int8",
        "rag-ov-int8-pdfium": "openvino-int8",
    }
    for backend in sorted({wanted[name] for name in names if name in wanted}):
        build = (
            "__import__('benchmarks.ingest_throughput').ingest_throughput.openvino_int8_model()"
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
