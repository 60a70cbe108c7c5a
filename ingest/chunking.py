"""Split documents into chunks sized in the embedder's tokens, never across a page boundary.

chunker = Chunker(chunk_tokens=240, overlap=32, tokenizer=embedder.tokenizer)
chunks = chunker.split(document)
"""

from __future__ import annotations

import copy
from typing import Any

from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag.errors import ConfigError
from rag.manifest import Chunking
from rag.types import Chunk, Document

# Paragraphs, then lines, then sentences, then words: split at the largest unit that fits.
SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


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
        if tokenizer is not None:
            # A fast tokenizer keeps padding/truncation state in its Rust backend and each call
            # resets it: sharing one with the embedder across threads corrupts its batches.
            tokenizer = copy.deepcopy(tokenizer)
            self._splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
                tokenizer, **options
            )
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
            for piece in self._splitter.create_documents([page.text]):
                text = piece.page_content
                start = int(piece.metadata["start_index"])
                if start < 0:  # the splitter could not locate the piece; find it ourselves
                    start = max(page.text.find(text), 0)
                chunks.append(
                    Chunk(
                        id=Chunk.make_id(document.id, page.number, start, text),
                        document_id=document.id,
                        source=document.source,
                        page=page.number,
                        start=start,
                        end=start + len(text),
                        text=text,
                    )
                )
        return chunks
