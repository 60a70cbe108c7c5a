"""PDF text as the loader gives it, read by PDFium (the default) and by pypdf alone, side by side.

    .venv/bin/python benchmarks/pdf_text_quality.py ../shared/data/pdfs/real \
        ../shared/data/financebench-dev/pdfs --out benchmarks/results/pdf_text_quality.json

For each folder: the CPU seconds of loading (OCR off, so that only the text layer is read), the
words each reader finds and the share of them the other reader finds too (as multisets of
lower-cased words), and two counts of run-together words: tokens of 20 letters or more, and a
short word glued to a capitalised one ("theCompany", "toEmployee"). A reader that splits or glues
words shows up in all three.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from ingest.loaders import load_document
from rag.settings import PdfText

_WORD = re.compile(r"[^\W\d_]+")
_GLUED = re.compile(r"\b(?:the|of|to|and|in|for)[A-Z][a-z]{3,}\b")
LONG = 20


READERS: tuple[PdfText, ...] = ("pdfium", "pypdf")


def read(path: Path, reader: PdfText) -> tuple[str, float]:
    started = time.process_time()
    doc = load_document(path, ocr="off", pdf_text=reader)
    seconds = time.process_time() - started
    return "\n".join(page.text for page in doc.pages), seconds


def compare(folder: Path) -> dict[str, Any]:
    totals: Counter[str] = Counter()
    seconds = dict.fromkeys(READERS, 0.0)
    files = sorted(folder.glob("*.pdf"))
    for number, path in enumerate(files, start=1):
        texts = {}
        for reader in READERS:
            texts[reader], took = read(path, reader)
            seconds[reader] += took
        words = {r: Counter(w.lower() for w in _WORD.findall(t)) for r, t in texts.items()}
        totals["shared"] += sum((words["pdfium"] & words["pypdf"]).values())
        for reader, text in texts.items():
            totals[f"{reader}_words"] += sum(words[reader].values())
            totals[f"{reader}_long"] += sum(n for w, n in words[reader].items() if len(w) >= LONG)
            totals[f"{reader}_glued"] += len(_GLUED.findall(text))
        print(f"  {number}/{len(files)} {path.name}", flush=True)
    result: dict[str, Any] = {"folder": str(folder), "files": len(files)}
    for reader in READERS:
        result[reader] = {
            "load_cpu_s": round(seconds[reader], 1),
            "words": totals[f"{reader}_words"],
            "also_read_by_the_other": round(totals["shared"] / totals[f"{reader}_words"], 4),
            f"words_of_{LONG}_letters_or_more": totals[f"{reader}_long"],
            "glued_words": totals[f"{reader}_glued"],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, help="Write the results here as JSON.")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    results = []
    for folder in args.folders:
        print(folder, flush=True)
        results.append(compare(folder))
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
