"""A chat over one collection: `streamlit run ui/app.py` (or `make run`, which builds the demo).

Until an LLM writes answers, the assistant's reply is the evidence: the top passages, numbered.
Document text is always shown with `st.text`, never as Markdown or HTML. `?collection=NAME` in
the address opens that collection first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, TypeVar

import streamlit as st

from rag.collection import MANIFEST, STORE, Collection, list_collections
from rag.errors import CollectionError, RagError
from rag.retrieval import SEARCH_MODES, Searcher
from rag.settings import Settings
from rag.types import Hit, SearchResult

T = TypeVar("T")

TITLE = "rag — ask your documents"
DEFAULT_COLLECTION = "demo"
INTRO = "Top passages for your question:"
NO_COLLECTIONS = (
    "No collections yet in {index_dir}. Build the demo one with `make run` (or "
    "`python -m ui.demo`), or ingest your own files with `rag ingest PATH -c NAME`, then reload."
)


# -- plain logic (no Streamlit): what tests call directly ---------------------------------------


@dataclass(frozen=True)
class SourceView:
    """One hit as the chat shows it; `text` is document text and must be rendered as text."""

    number: int
    name: str
    path: str
    page: int
    score: float
    stage: str
    text: str

    @property
    def heading(self) -> str:
        place = f"[{self.number}] {self.name} · page {self.page}"
        return f"{place} · {self.stage} score {self.score:.3f}"


def format_hit(number: int, hit: Hit) -> SourceView:
    """The view of the `number`-th hit: file name up front, full path kept for a tooltip."""
    chunk = hit.chunk
    name = PurePath(chunk.source).name or chunk.source
    return SourceView(number, name, chunk.source, chunk.page, hit.score, hit.stage, chunk.text)


def reply_for(result: SearchResult, shown: tuple[str | None, ...] = ()) -> dict[str, Any]:
    """The assistant's message for a result (plain data for session state), minus notices shown."""
    sources = [format_hit(n, hit) for n, hit in enumerate(result.hits, start=1)]
    notices = [notice for notice in result.notices if notice not in shown]
    return {"role": "assistant", "sources": sources, "notices": notices}


def default_collection(names: list[str], requested: str | None = None) -> str | None:
    """The requested collection (CollectionError if unknown), else `demo`, else the first."""
    if requested:
        if requested not in names:
            listing = ", ".join(names) or "none"
            raise CollectionError(f"no collection named {requested!r} (collections: {listing})")
        return requested
    if not names:
        return None
    return DEFAULT_COLLECTION if DEFAULT_COLLECTION in names else names[0]


_MARKDOWN_SPECIALS = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()<>#+-.!|~$:"})


def plain(text: str) -> str:
    """`text` escaped so that Markdown elements (st.error, st.caption) show it literally."""
    return text.translate(_MARKDOWN_SPECIALS)


def no_collections_message(index_dir: Path) -> str:
    return NO_COLLECTIONS.format(index_dir=plain(str(index_dir)))


class Engine:
    """A collection and its Searcher, confined to one worker thread.

    The collection's SQLite connection refuses use from any thread but the one that opened it,
    and Streamlit runs each script rerun on a new thread; so opening and every call happen on
    this engine's own thread, which also serialises the sessions that share it.
    """

    def __init__(self, index_dir: Path, name: str, settings: Settings) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rag-{name}")
        try:
            self.collection, self.searcher = self.call(self._open, index_dir, name, settings)
            self._inode = _inode(self.collection.path)
        except BaseException:
            self._pool.shutdown(wait=False)
            raise

    @staticmethod
    def _open(index_dir: Path, name: str, settings: Settings) -> tuple[Collection, Searcher]:
        collection = Collection.open(index_dir, name)
        return collection, Searcher(collection, settings)

    def current(self) -> bool:
        """False once the collection on disk was re-created or its manifest changed."""
        path = self.collection.path
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            return manifest == self.collection.manifest and self._inode == _inode(path)
        except (OSError, ValueError):
            return False

    def call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `func` on the engine's thread and return (or raise) what it does."""
        return self._pool.submit(func, *args, **kwargs).result()

    def close(self) -> None:
        self._pool.submit(self.collection.close)
        self._pool.shutdown(wait=True)


def _inode(collection_path: Path) -> int:
    return (collection_path / STORE).stat().st_ino


# -- Streamlit ----------------------------------------------------------------------------------


@st.cache_resource(
    show_spinner="Opening the collection…", validate=Engine.current, on_release=Engine.close
)
def open_engine(index_dir: str, name: str, _settings: Settings) -> Engine:
    """One engine per (index_dir, collection), shared by every session of this server."""
    return Engine(Path(index_dir), name, _settings)


def sidebar(settings: Settings, names: list[str], default: str) -> tuple[str, int, str, bool]:
    """The collection picker and retrieval settings; returns (collection, top_k, mode, rerank)."""
    with st.sidebar:
        st.header("Collection")
        name = st.selectbox("Collection", names, index=names.index(default))
        st.header("Retrieval")
        top_k = st.slider("Passages (top-k)", 1, 20, min(settings.top_k, 20))
        mode = st.radio(
            "Search mode",
            SEARCH_MODES,
            index=SEARCH_MODES.index(settings.search_mode),
            horizontal=True,
            help="dense: embeddings; bm25: keywords; hybrid: both, fused by rank",
        )
        rerank = st.toggle("Rerank with the cross-encoder", value=settings.rerank)
    return str(name), int(top_k), str(mode), bool(rerank)


def show_status(engine: Engine, rerank: bool) -> str | None:
    """Counts, embedder and reranker state in the sidebar; returns why reranking is off."""
    documents, chunks = engine.call(engine.collection.store.counts)
    off_reason = engine.call(engine.searcher.reranker).reason  # resolved (and loaded) once
    embedder = engine.collection.embedder.name
    with st.sidebar:
        st.caption(f"{documents} documents · {chunks} chunks · embedder {plain(embedder)}")
        if not rerank:
            st.caption("Reranking is off (toggle above).")
        elif off_reason:
            st.caption(plain(off_reason))
    return off_reason


def show_message(message: dict[str, Any]) -> None:
    with st.chat_message(message["role"]):
        if message.get("error"):
            st.error(message["error"])
        elif message["role"] == "user":
            st.text(message["text"])
        else:
            show_sources(message["sources"], message["notices"])


def show_sources(sources: list[SourceView], notices: list[str]) -> None:
    st.write(INTRO if sources else "No passages found.")
    for source in sources:
        with st.container(border=True):
            st.text(source.heading, help=source.path)
            st.text(source.text)
    for notice in notices:
        st.caption(plain(notice))


def answer(
    engine: Engine, query: str, top_k: int, mode: str, rerank: bool, shown: str | None
) -> dict[str, Any]:
    """Search, turning any expected failure into a one-line error message."""
    try:
        with st.spinner("Searching…"):
            result = engine.call(engine.searcher.search, query, top_k, mode, rerank)
        return reply_for(result, shown=(shown,))
    except RagError as e:
        return {"role": "assistant", "error": plain(str(e))}


def main() -> None:
    st.set_page_config(page_title=TITLE, page_icon="🔎")
    st.title(TITLE)
    history: list[dict[str, Any]] = st.session_state.setdefault("history", [])
    for message in history:
        show_message(message)
    try:
        settings = Settings.load()
        names = list_collections(settings.index_dir)
        if not names:
            show_message({"role": "assistant", "error": no_collections_message(settings.index_dir)})
            st.chat_input("Ask a question about your documents", disabled=True)
            return
        try:
            default = default_collection(names, st.query_params.get("collection"))
        except CollectionError as e:
            show_message({"role": "assistant", "error": plain(str(e))})
            default = default_collection(names)
        name, top_k, mode, rerank = sidebar(settings, names, default or names[0])
        engine = open_engine(str(settings.index_dir.resolve()), name, settings)
        off_reason = show_status(engine, rerank)
    except RagError as e:
        show_message({"role": "assistant", "error": plain(str(e))})
        return
    query = st.chat_input(f"Ask a question about {name}")
    if query is None:
        return
    question = {"role": "user", "text": query}
    show_message(question)
    reply = answer(engine, query, top_k, mode, rerank, off_reason)
    show_message(reply)
    history.extend([question, reply])


if __name__ == "__main__":
    main()
