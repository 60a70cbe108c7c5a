"""SQuAD articles as documents a user would ingest, and a question file with gold labels.

    built = build_squad_corpus(Path("../shared/data/squad/dev-v1.1.json"), Path("squad-docs"))
    # squad-docs/docs/*.md and *.pdf, squad-docs/questions.jsonl

Each article becomes one file: a title heading, then its paragraphs. Every `pdf_every`-th article
(in file order) is rendered to PDF instead of Markdown, so that the PDF path (pypdf, pages) is
exercised too. A paragraph is never split across PDF pages when it fits on one, so each question's
gold page is the page that holds its whole paragraph.

The question file holds a fixed random sample (`seed`) in the format `rag batch` reads, plus what
`rag eval hits` needs to find the gold paragraph: `id`, `question`, `answer` (all gold answers),
`document` (file name), `page` and `paragraph` (its text).
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from rag.errors import ConfigError

# The loader and the article split live on the ground floor (the reader's trainer needs them too).
from rag.squad import DEFAULT_PDF_EVERY as DEFAULT_PDF_EVERY
from rag.squad import DEMO_ARTICLES as DEMO_ARTICLES
from rag.squad import SPLITS as SPLITS
from rag.squad import ArticleSplit as ArticleSplit
from rag.squad import article_split as article_split
from rag.squad import load_squad as load_squad

logger = logging.getLogger(__name__)

DEFAULT_SEED = 13
DEFAULT_QUESTIONS = 500
# Fixed metadata dates make the same input give byte-identical PDFs (so re-ingesting is a no-op).
_PDF_DATE = datetime(2016, 6, 16, tzinfo=UTC)
_UNSAFE_NAME = re.compile(r"[^\w.,()'&+-]+")


@dataclass(frozen=True)
class Paragraph:
    """One SQuAD paragraph and where it landed: the file, and its page (1 for Markdown)."""

    article: int
    index: int
    text: str
    document: str
    page: int


@dataclass(frozen=True)
class SquadCorpus:
    """What `build_squad_corpus` wrote."""

    documents: tuple[Path, ...]
    questions_file: Path
    questions: int
    pdf_articles: tuple[str, ...]


def file_stem(title: str) -> str:
    """A portable file name for an article title ("Sky_(United_Kingdom)" stays readable)."""
    return _UNSAFE_NAME.sub("_", title).strip("._") or "article"


def heading(title: str) -> str:
    """The article's title as a person reads it (SQuAD titles use underscores for spaces)."""
    return title.replace("_", " ")


def write_markdown(title: str, paragraphs: Sequence[str], path: Path) -> list[int]:
    """One Markdown file: `# title`, then the paragraphs. Returns each paragraph's page (1)."""
    body = "\n\n".join(" ".join(p.split()) for p in paragraphs)
    path.write_text(f"# {heading(title)}\n\n{body}\n", encoding="utf-8")
    return [1] * len(paragraphs)


def default_font() -> Path:
    """DejaVu Sans as matplotlib ships it: a Unicode TrueType font found on every install."""
    from matplotlib import font_manager

    return Path(font_manager.findfont("DejaVu Sans", fallback_to_default=True))


def write_pdf(
    title: str, paragraphs: Sequence[str], path: Path, font: Path | None = None
) -> list[int]:
    """An A4 PDF with a text layer: title, then paragraphs. Returns each paragraph's page."""
    try:
        from fpdf import FPDF
    except ImportError as e:
        raise ConfigError(
            'writing PDFs needs fpdf2: pip install fpdf2 (or pip install -e ".[dev]")'
        ) from e

    pdf = FPDF(format="A4")
    pdf.set_title(heading(title))
    pdf.set_creator("rag ingest.squad")
    pdf.set_creation_date(_PDF_DATE)
    pdf.set_auto_page_break(True, margin=18)
    pdf.add_font("body", fname=str(font or default_font()))
    pdf.add_page()
    pdf.set_font("body", size=16)
    pdf.multi_cell(0, 9, heading(title), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("body", size=10.5)
    pages = []
    for paragraph in paragraphs:
        text = " ".join(paragraph.split())
        height = cast(float, pdf.multi_cell(0, 5.5, text, align="L", dry_run=True, output="HEIGHT"))
        # Keep a paragraph on one page when it fits on one, so its page is well defined.
        if pdf.will_page_break(height) and height < pdf.eph:
            pdf.add_page()
        pages.append(pdf.page_no())
        pdf.multi_cell(0, 5.5, text, align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2.5)
    # Glyphs the font lacks (a few CJK characters) are left out of the page, as a real producer
    # without the font would; fpdf2 logs a warning naming them.
    pdf.output(str(path))
    return pages


def build_squad_corpus(
    squad: Path,
    out: Path,
    *,
    questions: int = DEFAULT_QUESTIONS,
    seed: int = DEFAULT_SEED,
    pdf_every: int = DEFAULT_PDF_EVERY,
    articles: int | None = None,
    split: str | None = None,
) -> SquadCorpus:
    """Write the articles under `out/docs/` and a question sample to `out/questions.jsonl`.

    `pdf_every=4` renders articles 4, 8, 12, ... (counted from 1) to PDF; 0 writes no PDF.
    `articles` keeps only the first that many (for quick runs). `split` (one of SPLITS) draws the
    questions from that split's articles only; every article is still written. Same arguments,
    same files.
    """
    if questions < 1:
        raise ConfigError(f"questions must be at least 1 (got {questions})")
    if pdf_every < 0:
        raise ConfigError(f"pdf_every must be 0 (no PDFs) or more (got {pdf_every})")
    data = load_squad(squad)[:articles] if articles else load_squad(squad)
    titles = [str(article["title"]) for article in data]
    asked = set(article_split(titles, pdf_every).of(split)) if split else set(titles)
    folder = out / "docs"
    folder.mkdir(parents=True, exist_ok=True)
    documents: list[Path] = []
    pdf_titles: list[str] = []
    pool: list[dict[str, Any]] = []
    for number, article in enumerate(data, start=1):
        title = str(article["title"])
        texts = [str(p["context"]) for p in article["paragraphs"]]
        as_pdf = pdf_every > 0 and number % pdf_every == 0
        path = folder / f"{file_stem(title)}.{'pdf' if as_pdf else 'md'}"
        pages = write_pdf(title, texts, path) if as_pdf else write_markdown(title, texts, path)
        documents.append(path)
        if as_pdf:
            pdf_titles.append(title)
        for index, (raw, page) in enumerate(zip(article["paragraphs"], pages, strict=True)):
            paragraph = " ".join(str(raw["context"]).split())
            for qa in raw["qas"] if title in asked else ():
                answers = list(dict.fromkeys(str(a["text"]) for a in qa["answers"]))
                pool.append(
                    {
                        "id": str(qa["id"]),
                        "question": str(qa["question"]).strip(),
                        "answer": answers,
                        "document": path.name,
                        "page": page,
                        "paragraph": paragraph,
                        "article": title,
                        "paragraph_index": index,
                    }
                )
    if questions > len(pool):
        raise ConfigError(f"asked for {questions} questions but the articles hold {len(pool)}")
    sample = random.Random(seed).sample(pool, questions)
    questions_file = out / "questions.jsonl"
    with questions_file.open("w", encoding="utf-8") as handle:
        for record in sample:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    logger.info("wrote %d documents and %d questions under %s", len(documents), questions, out)
    return SquadCorpus(tuple(documents), questions_file, questions, tuple(pdf_titles))
