"""Write the SQuAD dev articles as documents (Markdown, every fourth as PDF) and a question file.

    python benchmarks/squad_corpus.py --out .cache/squad-dev          # 48 files, 500 questions
    python benchmarks/squad_corpus.py --out .cache/squad-held-out --split held-out
    rag ingest .cache/squad-dev/docs --collection squad-dev
    rag eval hits .cache/squad-dev/questions.jsonl --collection squad-dev
    rag batch .cache/squad-dev/questions.jsonl -c squad-dev -o answers.jsonl

The same arguments always give the same files and the same question sample (see ingest/squad.py).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ingest.squad import (
    DEFAULT_PDF_EVERY,
    DEFAULT_QUESTIONS,
    DEFAULT_SEED,
    SPLITS,
    build_squad_corpus,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squad", type=Path, default=Path("../shared/data/squad/dev-v1.1.json"))
    parser.add_argument("--out", type=Path, default=Path(".cache/squad-dev"))
    parser.add_argument("--questions", type=int, default=DEFAULT_QUESTIONS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--pdf-every", type=int, default=DEFAULT_PDF_EVERY, help="every n-th article as PDF"
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        help="draw questions from these articles only (held-out: never trained on by the reader)",
    )
    args = parser.parse_args()
    # DejaVu Sans lacks the few CJK characters of some articles; they are left out of the PDFs.
    logging.getLogger("fpdf").setLevel(logging.ERROR)
    built = build_squad_corpus(
        args.squad,
        args.out,
        questions=args.questions,
        seed=args.seed,
        pdf_every=args.pdf_every,
        split=args.split,
    )
    pdfs = len(built.pdf_articles)
    print(
        f"{len(built.documents)} documents ({pdfs} PDF, {len(built.documents) - pdfs} Markdown) "
        f"in {args.out / 'docs'}; {built.questions} questions in {built.questions_file}"
    )


if __name__ == "__main__":
    main()
