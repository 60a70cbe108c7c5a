"""Time the load step alone (PDF to page texts) over a folder: the part of ingest that OCR,
tables and layout change. Embedding, the bulk of ingest, is untouched by them.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/load_step.py ../shared/data/pdfs/real --ocr auto
    PYTHONPATH=<older checkout> .venv/bin/python benchmarks/load_step.py ../shared/data/pdfs/real

Prints one JSON line: files, pages, seconds, pages/s, and the OCR mode (None before it existed).
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
    parser.add_argument("folder", type=Path)
    parser.add_argument("--ocr", choices=["auto", "off", "force"], default=None)
    args = parser.parse_args()
    takes_ocr = "ocr" in inspect.signature(load_document).parameters
    files = sorted(args.folder.glob("*.pdf"))
    pages = 0
    started = time.perf_counter()
    for path in files:
        doc = load_document(path, ocr=args.ocr) if takes_ocr and args.ocr else load_document(path)
        pages += len(doc.pages)
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "folder": str(args.folder),
                "ocr": args.ocr if takes_ocr else None,
                "files": len(files),
                "pages": pages,
                "seconds": round(seconds, 1),
                "pages_per_s": round(pages / seconds, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
