"""A chat over one collection: `streamlit run ui/app.py` (or `make run`, which builds the demo).

Each question is answered by the LLM from the collection's passages, streamed as it is written,
then checked: the reply lists the sources it cites (a PDF's page can be shown as an image) and
flags the sentences they do not support. Text from documents or from the LLM is always shown
with `st.text` or escaped, never as Markdown or HTML. `?collection=NAME` opens that collection.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Collection as Container
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, TypeVar

import streamlit as st

from ingest.loaders import SUPPORTED_SUFFIXES
from rag.collection import MANIFEST, STORE, Collection, list_collections
from rag.errors import CollectionError, RagError
from rag.generation import LLM, LLM_BACKENDS, Message, make_llm
from rag.pipeline import Answerer
from rag.retrieval import SEARCH_MODES, Searcher
from rag.settings import Settings
from rag.types import Answer, AnswerDone, AnswerEvent, AnswerToken, Citation, SourcesFound
from ui.preview import PreviewError, is_pdf, page_png
from ui.uploads import MAX_UPLOAD_MB, UploadOutcome, ingest_uploads

T = TypeVar("T")

TITLE = "rag — ask your documents"
DEFAULT_COLLECTION = "demo"
NO_COLLECTIONS = (
    "No collections yet in {index_dir}. Upload files in the sidebar, build the demo collection "
    "with `make run` (or `python -m ui.demo`), or ingest your own files with "
    "`rag ingest PATH -c NAME`."
)
EMPTY_QUERY = "the query is empty"
UNSUPPORTED = "Not supported by the sources it cites:"
# The sidebar always shows whether reranking is on, and why not: replies need not repeat it.
RERANK_OFF = "reranking is off"
CURSOR = " ▌"


# -- plain logic (no Streamlit): what tests call directly ---------------------------------------


@dataclass(frozen=True)
class SourceView:
    """One source as the chat shows it; `text` is document text and must be rendered as text."""

    number: int
    name: str
    path: str
    page: int
    score: float
    text: str

    @property
    def heading(self) -> str:
        return f"[{self.number}] {self.name} · page {self.page} · score {self.score:.3f}"

    @property
    def pdf(self) -> bool:
        return is_pdf(self.path)


@dataclass(frozen=True)
class ReplyView:
    """An answer as the chat shows it: text, cited and other sources, unsupported sentences."""

    text: str
    refused: bool
    cited: tuple[SourceView, ...]
    others: tuple[SourceView, ...]
    unsupported: tuple[str, ...]
    notices: tuple[str, ...]


def format_citation(citation: Citation) -> SourceView:
    """The view of source [n]: file name up front, full path kept for a tooltip and the preview."""
    chunk = citation.chunk
    name = PurePath(chunk.source).name or chunk.source
    return SourceView(citation.n, name, chunk.source, chunk.page, citation.score, chunk.text)


def reply_for(answer: Answer, shown: Container[str] = ()) -> dict[str, Any]:
    """The assistant's message for an answer (plain data for session state), minus notices shown."""
    cited = {c.n for c in answer.citations}
    return {
        "role": "assistant",
        "reply": ReplyView(
            text=answer.text,
            refused=answer.refused,
            cited=tuple(format_citation(c) for c in answer.citations),
            others=tuple(format_citation(c) for c in answer.sources if c.n not in cited),
            unsupported=tuple(_one_line(s.text) for s in answer.sentences if not s.supported),
            notices=tuple(
                n for n in answer.notices if n not in shown and not n.startswith(RERANK_OFF)
            ),
        ),
    }


def _one_line(text: str) -> str:
    return " ".join(text.split())


def error_reply(error: RagError | str) -> dict[str, Any]:
    return {"role": "assistant", "error": plain(str(error))}


def conversation(history: Sequence[dict[str, Any]]) -> list[Message]:
    """The earlier questions and answers as LLM messages, so that a follow-up can be rewritten;
    a question that got an error instead of an answer is left out with it."""
    messages = []
    for question, reply in zip(history[::2], history[1::2], strict=False):
        if "reply" in reply:
            messages += [
                Message("user", question["text"]),
                Message("assistant", reply["reply"].text),
            ]
    return messages


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


_MARKDOWN_SPECIALS = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()<>#+-.!|~$:="})


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
        self._searchers: dict[tuple[str, bool], Searcher] = {}
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

    def stream(self, make: Callable[[], Iterator[T]]) -> Iterator[T]:
        """Iterate `make()` on the engine's thread, yielding its items here as they come.

        Closing this iterator early (the user asked something else) stops the producer at its
        next item, so an abandoned answer does not hold the engine's thread to its end.
        """
        items: queue.Queue[tuple[str, Any]] = queue.Queue()
        stop = threading.Event()

        def pump() -> None:
            last: tuple[str, Any] = ("end", None)
            try:
                with contextlib.closing(make()) as produced:  # type: ignore[type-var]
                    for item in produced:
                        items.put(("item", item))
                        if stop.is_set():
                            break
            except Exception as e:  # noqa: BLE001 (raised again by the reading thread)
                last = ("error", e)
            finally:
                items.put(last)  # always: the reading thread must never wait forever

        self._pool.submit(pump)
        try:
            while True:
                kind, value = items.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()

    def searcher_for(self, mode: str, rerank: bool) -> Searcher:
        """A searcher with these retrieval settings, sharing the embedder (engine thread only)."""
        if (mode, rerank) not in self._searchers:
            base = self.searcher
            tuned = base.settings.model_copy(update={"search_mode": mode, "rerank": rerank})
            choice = base.reranker()
            reranker = choice.reranker if rerank and choice.reranker is not None else "auto"
            self._searchers[mode, rerank] = Searcher(
                self.collection, tuned, embedder=base.embedder, reranker=reranker
            )
        return self._searchers[mode, rerank]

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


@st.cache_resource(show_spinner=False)
def open_llm(backend: str, model: str | None, base_url: str | None, _settings: Settings) -> LLM:
    """One LLM client per backend, model and endpoint (the embedded model loads on first use)."""
    return make_llm(_settings)


@dataclass(frozen=True)
class Choices:
    """What the sidebar picked."""

    collection: str
    top_k: int
    mode: str
    rerank: bool
    backend: str


def sidebar(settings: Settings, names: list[str], default: str) -> Choices:
    """The collection picker, the LLM backend and the retrieval settings."""
    if (switch := st.session_state.pop("switch_to", None)) in names:
        st.session_state["collection"] = switch  # a collection just made by an upload
    if st.session_state.get("collection") not in names:
        st.session_state.pop("collection", None)
    with st.sidebar:
        st.header("Collection")
        picked = "collection" in st.session_state
        index = 0 if picked else names.index(default)  # a picked value lives in session state
        name = st.selectbox("Collection", names, index=index, key="collection")
        st.header("Answers")
        backends = list(LLM_BACKENDS)
        backend = st.selectbox(
            "LLM backend",
            backends,
            index=backends.index(settings.llm_backend),
            help="embedded: the packaged SmolLM2-135M (offline, weak); openai: any "
            "OpenAI-compatible endpoint (RAG_LLM_BASE_URL); transformers: a model folder",
        )
        st.header("Retrieval")
        top_k = st.slider("Passages for the LLM (top-k)", 1, 20, min(settings.context_chunks, 20))
        mode = st.radio(
            "Search mode",
            SEARCH_MODES,
            index=SEARCH_MODES.index(settings.search_mode),
            horizontal=True,
            help="dense: embeddings; bm25: keywords; hybrid: both, fused by rank",
        )
        rerank = st.toggle("Rerank the top passages", value=settings.rerank)
    return Choices(str(name), int(top_k), str(mode), bool(rerank), str(backend))


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


def answer_model(settings: Settings) -> tuple[LLM | None, str | None]:
    """The LLM the settings name, shown in the sidebar; (None, why) when it cannot be made."""
    try:
        llm = open_llm(settings.llm_backend, settings.llm_model, settings.llm_base_url, settings)
    except RagError as e:
        st.sidebar.caption(f"LLM unavailable: {plain(str(e))}")
        return None, str(e)
    st.sidebar.caption(f"LLM in use: {plain(llm.name)}")
    return llm, None


def upload_panel(settings: Settings, current: str | None) -> None:
    """Upload files into this or a new collection, ingest them, and show what happened."""
    with st.sidebar:
        st.header("Add documents")
        if (outcome := st.session_state.get("uploaded")) is not None:
            show_outcome(outcome)
        target = st.text_input(
            "Into collection",
            value=current or "",
            help="A new name creates a new collection.",
        ).strip()
        files = st.file_uploader(
            "Files",
            type=sorted(suffix.lstrip(".") for suffix in SUPPORTED_SUFFIXES),
            accept_multiple_files=True,
            max_upload_size=MAX_UPLOAD_MB,
            key=f"uploader-{st.session_state.get('uploads', 0)}",  # a new key empties it
            help=f"PDF, text, Markdown or HTML, up to {MAX_UPLOAD_MB} MB each.",
        )
        if not st.button("Ingest", disabled=not files or not target):
            return
        bar = st.progress(0.0, text="Saving the files…")

        def saved(done: int, total: int) -> None:
            bar.progress(done / total, text=f"Saved {done} of {total} files")

        def ingested(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"Ingested {done} of {total} files")

        try:
            with st.spinner(f"Ingesting into {plain(target)}: loading, chunking, embedding…"):
                uploads = [(f.name, f.getvalue()) for f in files or []]
                outcome = ingest_uploads(settings, target, uploads, saved, ingested)
        except RagError as e:
            outcome = error_reply(e)
        st.session_state["uploaded"] = outcome
        st.session_state["uploads"] = st.session_state.get("uploads", 0) + 1
        if isinstance(outcome, UploadOutcome) and outcome.report and outcome.report.ingested:
            st.session_state["switch_to"] = outcome.collection
        st.rerun()


def show_outcome(outcome: UploadOutcome | dict[str, Any]) -> None:
    if isinstance(outcome, dict):
        st.error(outcome["error"])
        return
    if outcome.report is not None:
        show = st.success if outcome.report.ingested else st.info
        show(plain(outcome.report.summary()))
        for source, reason in outcome.report.failed:
            st.error(plain(f"failed: {PurePath(source).name}: {reason}"))
        for warning in outcome.report.warnings:
            st.caption(plain(warning))
    for name, reason in outcome.rejected:
        st.warning(plain(f"refused: {name}: {reason}"))


def show_message(message: dict[str, Any], turn: int) -> None:
    with st.chat_message(message["role"]):
        show_body(message, turn)


def show_body(message: dict[str, Any], turn: int) -> None:
    if message.get("error"):
        st.error(message["error"])
    elif message["role"] == "user":
        st.text(message["text"])
    else:
        show_reply(message["reply"], turn)


def show_reply(reply: ReplyView, turn: int) -> None:
    if reply.refused:
        st.info(plain(reply.text))
    else:
        st.text(reply.text)
    if reply.unsupported:
        listed = "\n".join(f"- {plain(sentence)}" for sentence in reply.unsupported)
        st.warning(f"{UNSUPPORTED}\n\n{listed}", icon="⚠️")
    for source in reply.cited:
        show_source(source, turn)
    if reply.others:
        label = "Closest passages" if reply.refused else "Other passages given to the LLM"
        with st.expander(f"{label} ({len(reply.others)})"):
            for source in reply.others:
                show_source(source, turn)
    elif reply.refused:
        st.caption("No passages matched the question.")
    for notice in reply.notices:
        st.caption(plain(notice))


def show_source(source: SourceView, turn: int) -> None:
    with st.container(border=True):
        st.text(source.heading, help=plain(source.path))
        st.text(source.text)
        if source.pdf and st.toggle(f"Show page {source.page}", key=f"page-{turn}-{source.number}"):
            try:
                st.image(page_png(source.path, source.page), output_format="PNG")
            except PreviewError as e:
                st.error(plain(str(e)))


def ask(
    engine: Engine,
    llm: LLM,
    settings: Settings,
    question: str,
    history: list[Message],
    shown: Container[str],
    turn: int,
) -> dict[str, Any]:
    """Stream the answer into the chat as it is written; any expected failure is one error."""
    with st.chat_message("assistant"):
        placeholder = st.empty()
        placeholder.caption("Searching…")
        try:
            reply = stream_answer(engine, llm, settings, question, history, shown, placeholder)
        except RagError as e:
            reply = error_reply(e)
        with placeholder.container():
            show_body(reply, turn)
    return reply


def stream_answer(
    engine: Engine,
    llm: LLM,
    settings: Settings,
    question: str,
    history: list[Message],
    shown: Container[str],
    placeholder: Any,
) -> dict[str, Any]:
    """Run the Answerer on the engine's thread and show its tokens here as they arrive."""

    def events() -> Iterator[AnswerEvent]:  # on the engine's thread: the searcher uses SQLite
        searcher = engine.searcher_for(settings.search_mode, settings.rerank)
        return Answerer(searcher, llm, settings).stream(question, history)

    parts: list[str] = []
    with contextlib.closing(engine.stream(events)) as stream:
        for event in stream:
            if isinstance(event, SourcesFound):
                placeholder.caption(f"Writing the answer from {len(event.sources)} passages…")
            elif isinstance(event, AnswerToken):
                parts.append(event.text)
                placeholder.text("".join(parts) + CURSOR)
            elif isinstance(event, AnswerDone):
                return reply_for(event.answer, shown)
    raise RagError("the answer stream ended without an answer")


def main() -> None:
    st.set_page_config(page_title=TITLE, page_icon="🔎")
    st.title(TITLE)
    history: list[dict[str, Any]] = st.session_state.setdefault("history", [])
    shown: set[str] = st.session_state.setdefault("notices_shown", set())
    for turn, message in enumerate(history):
        show_message(message, turn)
    try:
        settings = Settings.load()
        names = list_collections(settings.index_dir)
        if not names:
            empty = {"role": "assistant", "error": no_collections_message(settings.index_dir)}
            show_message(empty, len(history))
            upload_panel(settings, None)
            st.chat_input("Ask a question about your documents", disabled=True)
            return
        try:
            default = default_collection(names, st.query_params.get("collection"))
        except CollectionError as e:
            show_message(error_reply(e), len(history))
            default = default_collection(names)
        choice = sidebar(settings, names, default or names[0])
        engine = open_engine(str(settings.index_dir.resolve()), choice.collection, settings)
        off_reason = show_status(engine, choice.rerank)
        tuned = settings.model_copy(
            update={
                "context_chunks": choice.top_k,
                "search_mode": choice.mode,
                "rerank": choice.rerank,
                "llm_backend": choice.backend,
            }
        )
        llm, llm_error = answer_model(tuned)
        upload_panel(settings, choice.collection)
    except RagError as e:
        show_message(error_reply(e), len(history))
        return
    # The browser stops typing at the limit; the answerer refuses anything longer anyway.
    query = st.chat_input(
        f"Ask a question about {choice.collection}", max_chars=settings.max_question_chars
    )
    if query is None:
        return
    question = {"role": "user", "text": query}
    show_message(question, len(history))
    if llm is None:
        reply = error_reply(llm_error or "no LLM")
        show_message(reply, len(history) + 1)
    elif not query.strip():
        reply = error_reply(EMPTY_QUERY)
        show_message(reply, len(history) + 1)
    else:
        if off_reason:
            shown.add(off_reason)
        reply = ask(engine, llm, tuned, query, conversation(history), shown, len(history) + 1)
        shown.update(reply["reply"].notices if "reply" in reply else ())
    history.extend([question, reply])


if __name__ == "__main__":
    main()
