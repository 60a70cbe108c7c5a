"""Time the load step alone (PDF to page texts) over a folder: the part of ingest that OCR,
tables and layout change. Embedding, the bulk of ingest, is untouched by them.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/load_step.py ../shared/data/pdfs/real --ocr auto
    PYTHONPATH=<older checkout> .venv/bin/python benchmarks/load_step.py ../shared/data/pdfs/real

Prints one JSON line: files, pages, seconds, pages/s, and the OCR mode (None before it existed).
OCR speed, one tesseract at a time against the default (one per core, at most 4), side by side:

    for n in 1 0 1 0; do PYTHONPATH=$PWD .venv/bin/python benchmarks/load_step.py \
        ../shared/data/pdfs/broken/Seige_of_Vicksburg_Sample_OCR.pdf \
        ../shared/data/pdfs/real/1706.03762.pdf --ocr force --ocr-workers $n; done
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path

from ingest.loaders import load_document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("paths", type=Path, nargs="+", help="PDF files or folders of them")
    parser.add_argument("--ocr", choices=["auto", "off", "force"], default=None)
    parser.add_argument(
        "--ocr-workers", type=int, default=0, help="tesseracts at once, at most (0: the default)"
    )
    args = parser.parse_args()
    if args.ocr_workers:
        from ingest import ocr

        ocr.MAX_WORKERS = args.ocr_workers
    takes_ocr = "ocr" in inspect.signature(load_document).parameters
    files = [f for p in args.paths for f in (sorted(p.glob("*.pdf")) if p.is_dir() else [p])]
    pages = 0
    started = time.perf_counter()
    for path in files:
        doc = load_document(path, ocr=args.ocr) if takes_ocr and args.ocr else load_document(path)
        pages += len(doc.pages)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "paths": [str(p) for p in args.paths],
                "ocr": args.ocr if takes_ocr else None,
                "ocr_workers": args.ocr_workers or "default",
                "files": len(files),
                "pages": pages,
                "seconds": round(seconds, 1),
                "pages_per_s": round(pages / seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
