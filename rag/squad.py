"""SQuAD v1.1 files: reading them, and the fixed split of their articles for models trained on them.

    articles = load_squad(Path("../shared/data/squad/dev-v1.1.json"))
    split = article_split([a["title"] for a in articles])   # train, calibration, held_out titles

The split lives here, on the ground floor, because both the corpus builder (`ingest/squad.py`) and
the answer reader's trainer (`rag/reader/`) need it, and `rag/` never imports `ingest/`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

# The articles of `python -m ui.demo` (ui/demo_corpus): never trained on, so the demo shows what a
# user's own documents would get.
DEMO_ARTICLES = (
    "Super_Bowl_50",
    "Warsaw",
    "Normans",
    "Nikola_Tesla",
    "Computational_complexity_theory",
    "Steam_engine",
    "Oxygen",
    "Amazon_rainforest",
)
SPLITS = ("train", "calibration", "held-out")
# Every `DEFAULT_PDF_EVERY`-th article is rendered to PDF by the corpus builder, and held out.
DEFAULT_PDF_EVERY = 4


def load_squad(path: Path) -> list[dict[str, Any]]:
    """The articles of a SQuAD v1.1 JSON file (`data`), or a one-line error."""
    if not path.is_file():
        raise ConfigError(f"SQuAD file not found: {path}")
    try:
        articles = json.loads(path.read_text(encoding="utf-8"))["data"]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not a SQuAD v1.1 file ({type(e).__name__}: {e})") from e
    if not isinstance(articles, list) or not articles:
        raise ConfigError(f"{path} holds no articles")
    return articles


@dataclass(frozen=True)
class ArticleSplit:
    """SQuAD dev split by article, for models trained on it (the answer reader).

    `held_out` (never trained or calibrated on, the figures reported): the demo articles and the
    other articles rendered to PDF. `calibration`: every eighth remaining article, for fitting
    confidence and choosing among training runs. `train`: the rest.
    """

    train: tuple[str, ...]
    calibration: tuple[str, ...]
    held_out: tuple[str, ...]

    def of(self, name: str) -> tuple[str, ...]:
        """The titles of split `name` (one of SPLITS)."""
        if name not in SPLITS:
            raise ConfigError(f"unknown split {name!r}: choose one of {', '.join(SPLITS)}")
        return {"train": self.train, "calibration": self.calibration}.get(name, self.held_out)


def article_split(titles: Sequence[str], pdf_every: int = DEFAULT_PDF_EVERY) -> ArticleSplit:
    """The fixed split of `titles` (in file order): the same titles always give the same split."""
    held_out = [
        title
        for number, title in enumerate(titles, start=1)
        if title in DEMO_ARTICLES or (pdf_every > 0 and number % pdf_every == 0)
    ]
    rest = [title for title in titles if title not in held_out]
    calibration = rest[::8]
    train = [title for title in rest if title not in calibration]
    return ArticleSplit(tuple(train), tuple(calibration), tuple(held_out))
