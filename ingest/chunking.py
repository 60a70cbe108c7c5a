"""Split documents into chunks sized in the embedder's tokens, never across a page boundary.

Markdown tables (ingest/tables.py) are split by rows, never mid-row; every piece after the first
carries the table's header row as its `context` (indexed with it, not part of its text), so every
chunk of a table says what its columns are and still quotes the page exactly.

chunker = Chunker(chunk_tokens=240, overlap=32, tokenizer=embedder.tokenizer)
chunks = chunker.split(document)
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from typing import Any

from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag.errors import ConfigError
from rag.manifest import Chunking
from rag.types import Chunk, Document

# Paragraphs, then lines, then sentences, then words: split at the largest unit that fits.
SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]
# A Markdown table: a header row, its |---| rule, then rows, each a line that starts with '|'.
_TABLE = re.compile(r"^\|.*\n\|[ :|-]*---[ :|-]*\n(?:\|.*(?:\n|$))*", re.MULTILINE)


_UNLIMITED = 10**30


class Chunker:
    """LangChain's recursive splitter measuring length with a Hugging Face tokenizer.

    With no tokenizer (tests with a fake embedder), length is counted in whitespace words.
    """

    def __init__(
        self, chunk_tokens: int, overlap: int, tokenizer: Any | None = None, context: bool = False
    ) -> None:
        """`context`: each chunk is indexed with its document's label and heading
        (ingest/context.py; applied where the chunks are prepared)."""
        if overlap >= chunk_tokens:
            raise ConfigError(
                f"chunk overlap ({overlap}) must be smaller than size ({chunk_tokens})"
            )
        self.chunk_tokens = chunk_tokens
        self.overlap = overlap
        self.context = context
        options: dict[str, Any] = {
            "chunk_size": chunk_tokens,
            "chunk_overlap": overlap,
            "separators": SEPARATORS,
            "keep_separator": "end",
            "add_start_index": True,
            "strip_whitespace": True,
        }
        self._length: Callable[[str], int] = lambda text: len(text.split())
        if tokenizer is not None:
            # A fast tokenizer keeps padding/truncation state in its Rust backend and each call
            # resets it: sharing one with the embedder across threads corrupts its batches.
            tokenizer = copy.deepcopy(tokenizer)
            # This copy only counts tokens, of texts of any length: without a model's limit it
            # does not warn that a page is "longer than the maximum sequence length".
            tokenizer.model_max_length = _UNLIMITED
            self._splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
                tokenizer, **options
            )
            self._length = lambda text: len(tokenizer.tokenize(text))
        else:
            self._splitter = RecursiveCharacterTextSplitter(
                length_function=lambda text: len(text.split()), **options
            )

    def describe(self) -> Chunking:
        """What goes in the manifest."""
        return Chunking(
            chunk_tokens=self.chunk_tokens,
            chunk_overlap=self.overlap,
            splitter="langchain RecursiveCharacterTextSplitter",
            unit="tokens",
            context=self.context,
        )

    def split(self, document: Document) -> list[Chunk]:
        """Chunks of every page, in reading order, with offsets into that page's text."""
        chunks: list[Chunk] = []
        for page in document.pages:
            for start, text, context in self._pieces(page.text):
                chunks.append(
                    Chunk(
                        id=Chunk.make_id(document.id, page.number, start, text),
                        document_id=document.id,
                        source=document.source,
                        page=page.number,
                        start=start,
                        end=start + len(text),
                        text=text,
                        context=context,
                    )
                )
        return chunks

    def _pieces(self, text: str) -> Iterator[tuple[int, str, str]]:
        """(offset, text, context) of each piece of a page: prose by the splitter, tables by
        rows."""
        at = 0
        for table in _TABLE.finditer(text):
            yield from self._prose(text[at : table.start()], at)
            yield from self._table_rows(table.group(0), table.start())
            at = table.end()
        yield from self._prose(text[at:], at)

    def _prose(self, text: str, offset: int) -> Iterator[tuple[int, str, str]]:
        if not text.strip():
            return
        for piece in self._splitter.create_documents([text]):
            start = int(piece.metadata["start_index"])
            if start < 0:  # the splitter could not locate the piece; find it ourselves
                start = max(text.find(piece.page_content), 0)
            yield offset + start, piece.page_content, ""

    def _table_rows(self, table: str, offset: int) -> Iterator[tuple[int, str, str]]:
        """Pieces of whole rows within the size: the first starts with the table's header and
        rule, the others have them as their context. Each piece is a slice of the page."""
        lines = table.rstrip("\n").split("\n")
        header = "\n".join(lines[:2])
        budget = self.chunk_tokens - self._length(header)
        rows: list[str] = []
        used = 0
        start = offset
        position = offset + len(header) + 1
        for row in lines[2:]:
            cost = self._length(row)
            if rows and used + cost > budget:
                yield self._table_piece(header, rows, start, offset)
                rows, used, start = [], 0, position
            rows.append(row)
            used += cost
            position += len(row) + 1
        if rows or start == offset:
            yield self._table_piece(header, rows, start, offset)

    @staticmethod
    def _table_piece(header: str, rows: list[str], start: int, offset: int) -> tuple[int, str, str]:
        if start == offset:
            return start, "\n".join([header, *rows]), ""
        return start, "\n".join(rows), header
