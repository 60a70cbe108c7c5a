"""Write `ui/demo_questions.jsonl`: SQuAD questions about the demo articles, with their gold
passage, for training the demo collection's reranker (`python -m ui.demo`); and render the demo's
PDF articles (`PDF_ARTICLES`) into ui/demo_corpus.

    python -m ui.demo_questions ../shared/data/squad/dev-v1.1.json

One question per SQuAD paragraph (the first), in the question-file format `rag batch`, `rag eval
hits` and `rag tune --questions` read: `id`, `question`, `answer`, `document` (the article file),
`page` for a PDF article, and `paragraph`, here the sentence that holds the answer: a chunk holding
that sentence is the gold passage, the article's other chunks are not. The PDFs are rendered by
`ingest.squad.write_pdf`, as the SQuAD benchmark renders its PDF articles.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ingest.squad import file_stem, load_squad, write_pdf
from ui.demo import DEMO_CORPUS, DEMO_QUESTIONS, PDF_ARTICLES, demo_files

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"(])")
# A sentence this short ("It was.") is joined with the next, so the passage says something.
MIN_WORDS = 8


def answer_sentence(context: str, start: int) -> str:
    """The sentence of `context` holding the character at `start` (joined with the next one when
    it is very short)."""
    spans, begin = [], 0
    for match in _SENTENCE_END.finditer(context):
        spans.append((begin, match.start()))
        begin = match.end()
    spans.append((begin, len(context)))
    for n, (first, last) in enumerate(spans):
        if first <= start < last or n == len(spans) - 1:
            text = context[first:last]
            if len(text.split()) < MIN_WORDS and n + 1 < len(spans):
                text = context[first : spans[n + 1][1]]
            return " ".join(text.split())
    return " ".join(context.split())


def render_pdfs(squad_file: Path, folder: Path) -> dict[str, list[int]]:
    """Write the PDF_ARTICLES as PDFs into `folder`; for each file name, each paragraph's page."""
    pages = {}
    for article in load_squad(squad_file):
        stem = file_stem(article["title"])
        if stem in PDF_ARTICLES:
            contexts = [paragraph["context"] for paragraph in article["paragraphs"]]
            pages[stem + ".pdf"] = write_pdf(article["title"], contexts, folder / f"{stem}.pdf")
    return pages


def demo_questions(
    squad_file: Path, pages: Mapping[str, list[int]] | None = None
) -> list[dict[str, Any]]:
    """The first question of every paragraph of the demo articles, with its gold sentence (and,
    in a PDF article, its page: from `pages`, or found by rendering the PDFs aside)."""
    if pages is None:
        with tempfile.TemporaryDirectory() as folder:
            pages = render_pdfs(squad_file, Path(folder))
    names = {path.name for path in demo_files()}
    records = []
    for article in load_squad(squad_file):
        stem = file_stem(article["title"])
        document = stem + (".pdf" if stem in PDF_ARTICLES else ".md")
        if document not in names:
            continue
        for index, paragraph in enumerate(article["paragraphs"]):
            if not paragraph["qas"]:
                continue
            qa = paragraph["qas"][0]
            answer = qa["answers"][0]
            record = {
                "id": qa["id"],
                "question": qa["question"],
                "answer": sorted({a["text"] for a in qa["answers"]}),
                "document": document,
                "paragraph": answer_sentence(paragraph["context"], answer["answer_start"]),
            }
            if document in pages:
                record["page"] = pages[document][index]
            records.append(record)
    return records


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        usage = next(line for line in __doc__.splitlines() if "python -m" in line)
        print(f"usage: {usage.strip()}", file=sys.stderr)
        return 2
    pages = render_pdfs(Path(argv[0]), DEMO_CORPUS)
    for name in pages:  # the PDF replaces the article's Markdown
        (DEMO_CORPUS / name).with_suffix(".md").unlink(missing_ok=True)
    records = demo_questions(Path(argv[0]), pages)
    with DEMO_QUESTIONS.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} questions to {DEMO_QUESTIONS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
