"""BEIR datasets (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) as documents and judgments."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.errors import RagError
from rag.types import Document, Page, sha256_hex


@dataclass(frozen=True)
class BeirDataset:
    """A BEIR folder; `name` (the folder's name) is also the collection it is ingested into."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.resolve().name

    def check(self, split: str = "test") -> None:
        """Fail with one line naming the first file the folder lacks."""
        for part in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
            if not (self.path / part).is_file():
                raise RagError(f"{self.path} is not a BEIR dataset: missing {part}")

    def source_of(self, doc_id: str) -> str:
        """The source name a corpus record is stored under."""
        return f"{self.name}:{doc_id}"

    def doc_id_of(self, source: str) -> str:
        """Inverse of source_of."""
        return source.split(":", 1)[1]

    def documents(self) -> Iterator[Document]:
        """Each corpus record as a one-page document: title, blank line, text."""
        with (self.path / "corpus.jsonl").open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    doc_id, title, text = (
                        str(record["_id"]),
                        record.get("title") or "",
                        record["text"],
                    )
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise RagError(f"corpus.jsonl line {number}: not a BEIR record ({e})") from e
                body = f"{title}\n\n{text}" if title else text
                yield Document(
                    id=sha256_hex(body),
                    source=self.source_of(doc_id),
                    title=title or doc_id,
                    media_type="text/plain",
                    pages=(Page(1, body),),
                )

    def queries(self, split: str = "test") -> dict[str, str]:
        """The queries that have judgments in `split`, by query id."""
        judged = self.qrels(split)
        found: dict[str, str] = {}
        with (self.path / "queries.jsonl").open(encoding="utf-8") as lines:
            for line in lines:
                if line.strip():
                    record = json.loads(line)
                    if str(record["_id"]) in judged:
                        found[str(record["_id"])] = record["text"]
        return found

    def qrels(self, split: str = "test") -> dict[str, dict[str, int]]:
        """Relevance judgments: query id -> {doc id: grade}."""
        judgments: dict[str, dict[str, int]] = {}
        with (self.path / "qrels" / f"{split}.tsv").open(encoding="utf-8", newline="") as handle:
            rows = csv.reader(handle, delimiter="\t")
            for row in rows:
                if len(row) < 3 or row[0] == "query-id":
                    continue
                judgments.setdefault(row[0], {})[row[1]] = int(row[2])
        return judgments
