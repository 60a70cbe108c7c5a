"""The span reader: answers read out of retrieved passages by a small model, with no LLM.

    from rag.reader import SpanReader
    spans = SpanReader.packaged().read(question, [(1, passage)])

See rag/reader/model.py for how it reads and rag/reader/model/README.md for the model itself.
"""

from rag.reader.model import Span, SpanReader

__all__ = ["Span", "SpanReader"]
