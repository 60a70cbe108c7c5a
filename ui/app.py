"""A chat over one collection: `streamlit run ui/app.py` (or `make run`, which builds the demo).

Each question is answered from the collection's passages by the small reader (quoting its source)
or by the LLM (streamed as it is written, then checked), as the answer mode says: the reply says
who answered and how sure, lists the sources it cites with the sentences that support the answer
highlighted (on a PDF's page image too), and flags the sentences they do not support. Text from
documents or from the LLM is always shown with `st.text` or escaped (HTML, then Markdown), never
as live Markdown or HTML. `?collection=NAME` opens that collection.
With the `accounts` setting on (`RAG_ACCOUNTS=true`), the chat asks for an API key (from
`rag users add`) and shows only the collections its user may read; uploads go only into
collections they own (or new ones, which become theirs), as with `rag serve --accounts`.

Only the Streamlit face is here: the collection is answered by an `Engine` (ui/engine.py, its own
worker thread), and the conversation is kept as typed messages (ui/messages.py) rendered by type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection as Container
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import streamlit as st

from ingest.loaders import SUPPORTED_SUFFIXES
from rag.accounts import ACCOUNTS_FILE, Accounts, User
from rag.collection import Collection, list_collections
from rag.errors import CollectionError, RagError
from rag.filters import glob_escape
from rag.generation import LLM, LLM_BACKENDS, Message, UnavailableLLM
from rag.retrieval import SEARCH_MODES
from rag.settings import ANSWER_MODES, Settings
from rag.types import AnswerDone, AnswerToken, SourcesFound
from ui.engine import Engine, build_llm
from ui.messages import (
    AssistantReply,
    ChatMessage,
    ErrorMessage,
    SourceView,
    UserMessage,
    conversation,
    error_message,
    plain,
    reply_for,
)
from ui.preview import PreviewError, page_png
from ui.uploads import MAX_UPLOAD_MB, UploadOutcome, ingest_uploads

TITLE = "rag — ask your documents"
DEFAULT_COLLECTION = "demo"
NO_COLLECTIONS = (
    "No collections yet in {index_dir}. Upload files in the sidebar, build the demo collection "
    "with `make run` (or `python -m ui.demo`), or ingest your own files with "
    "`rag ingest PATH -c NAME`."
)
EMPTY_QUERY = "the query is empty"
SIGN_IN = "Sign in with your API key (from `rag users add`) in the sidebar."
UNSUPPORTED = "Not supported by the sources it cites:"
# The `answer_mode` setting's values as the sidebar names them.
ANSWER_MODE_LABELS = {"auto": "auto", "extractive": "small reader only", "llm": "LLM only"}
# What the passages a reply does not cite were, by who answered.
OTHERS = {
    "reader": "Other passages the small reader read",
    "llm": "Other passages given to the LLM",
    "refused": "Closest passages",
}
CURSOR = " ▌"
# How often the sidebar rereads a background training's progress, in seconds.
TRAINING_REFRESH_S = 5


# -- plain logic (no Streamlit): what tests call directly ---------------------------------------


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


def no_collections_message(index_dir: Path) -> str:
    return NO_COLLECTIONS.format(index_dir=plain(str(index_dir)))


def progress_line(answer_mode: str, passages: int) -> str:
    """What the chat says while an answer is on its way, once the passages are found."""
    if answer_mode == "llm":
        return f"Writing the answer from {passages} passages…"
    return f"Reading {passages} passages for the answer…"


@dataclass(frozen=True)
class Access:
    """Who uses the chat: with accounts off (no `accounts`), anyone may read and write anything,
    as with the CLI."""

    index_dir: Path
    accounts: Accounts | None = None
    user: User | None = None

    def may_read(self, name: str) -> bool:
        if self.accounts is None or self.user is None:
            return self.accounts is None
        return self.accounts.can_read(self.user, name)

    def may_write(self, name: str) -> bool:
        """Whether uploads may go into `name`: a collection of theirs, or a new one."""
        if self.accounts is None or self.user is None:
            return self.accounts is None
        exists = Collection.exists(self.index_dir, name)
        return not exists or self.accounts.can_write(self.user, name)

    def created(self, name: str) -> None:
        """Make the user the owner of `name`, a collection their upload just made (forgetting
        any owner and shares of an older collection of that name)."""
        if self.accounts is None or self.user is None:
            return
        if Collection.exists(self.index_dir, name):
            self.accounts.forget_collection(name)
            self.accounts.set_owner(name, self.user.name)


# -- Streamlit ----------------------------------------------------------------------------------


def sign_in(settings: Settings) -> Access | None:
    """Who uses the chat: with accounts on, the user whose API key is in the sidebar (None
    until a valid one is); a new user starts a new conversation."""
    if not settings.accounts:
        return Access(settings.index_dir)
    accounts = Accounts(settings.index_dir / ACCOUNTS_FILE)
    with st.sidebar:
        st.header("Sign in")
        key = st.text_input("API key", type="password", key="api_key").strip()
    user = accounts.authenticate(key) if key else None
    if key and user is None:
        st.sidebar.error("That API key is not valid.")
    name = user.name if user else None
    if st.session_state.get("signed_in") != name:
        st.session_state["signed_in"] = name
        for kept in ("history", "notices_shown", "collection", "uploaded"):
            st.session_state.pop(kept, None)
    if user is None:
        return None
    st.sidebar.caption(f"Signed in as {plain(user.name)}" + (" (admin)" if user.admin else ""))
    return Access(settings.index_dir, accounts, user)


@st.cache_resource(
    show_spinner="Opening the collection…", validate=Engine.current, on_release=Engine.close
)
def open_engine(index_dir: str, name: str, _settings: Settings) -> Engine:
    """One engine per (index_dir, collection), shared by every session of this server."""
    return Engine(Path(index_dir), name, _settings)


@st.cache_resource(show_spinner=False)
def open_llm(backend: str, model: str | None, base_url: str | None, _settings: Settings) -> LLM:
    """One LLM client per backend, model and endpoint (the embedded model loads on first use)."""
    return build_llm(_settings)


@dataclass(frozen=True)
class Choices:
    """What the sidebar picked."""

    collection: str
    top_k: int
    mode: str
    rerank: bool
    backend: str
    answer_mode: str


def sidebar(settings: Settings, names: list[str], default: str) -> Choices:
    """The collection picker, who answers (answer mode, LLM backend) and the retrieval settings."""
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
        answer_mode = st.segmented_control(
            "Answer mode",
            ANSWER_MODES,
            default=settings.answer_mode,
            required=True,
            format_func=ANSWER_MODE_LABELS.__getitem__,
            help="auto: the small reader answers when it is sure, quoting its source, the LLM "
            "otherwise; small reader only: never an LLM call; LLM only: the reader does not run",
        )
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
    return Choices(str(name), int(top_k), str(mode), bool(rerank), str(backend), str(answer_mode))


def document_scope(engine: Engine, collection: str) -> tuple[str, ...]:
    """The documents picker: the `where` strings that keep search to the picked documents
    (none picked: the whole collection). Filtering happens before ranking, so a scoped
    question still gets its top k from those documents."""
    sources = engine.documents()
    names = {source: PurePath(source).name for source in sources}
    with st.sidebar:
        picked = st.multiselect(
            "Only these documents",
            sources,
            format_func=names.__getitem__,
            key=f"documents:{collection}",
            placeholder="All documents",
            help="Ask about some documents only; leave empty to search them all.",
        )
    return tuple(f"document={glob_escape(source)}" for source in picked)


def show_status(engine: Engine, rerank: bool) -> str | None:
    """Counts, embedder and reranker state in the sidebar; returns why reranking is off."""
    status = engine.status()
    with st.sidebar:
        show_training(engine)
        st.caption(
            f"{status.documents} documents · {status.chunks} chunks · "
            f"embedder {plain(status.embedder)}"
        )
        if not rerank:
            st.caption("Reranking is off (toggle above).")
        elif status.reranking_off:
            st.caption(plain(status.reranking_off))
        elif status.reranker:
            st.caption(f"Reranker: {plain(status.reranker)}")
    return status.reranking_off


@st.fragment(run_every=TRAINING_REFRESH_S)
def show_training(engine: Engine) -> None:
    """A reranker training in the background (the demo's, on the first `make run`): where it is,
    refreshed on its own; when it ends, the whole app reruns and, once the manifest registers
    the new model, reopens the collection with it."""
    progress = engine.training()
    if progress is None:
        if st.session_state.pop("training_seen", False):
            st.rerun(scope="app")
        return
    st.session_state["training_seen"] = progress.running
    if progress.running and progress.total:
        st.progress(progress.done / progress.total, text=plain(progress.describe()))
    else:
        st.caption(plain(progress.describe()))


def answer_model(settings: Settings) -> tuple[LLM | None, str | None]:
    """The LLM the settings name, shown in the sidebar; (None, why) when it cannot be made."""
    try:
        llm = open_llm(settings.llm_backend, settings.llm_model, settings.llm_base_url, settings)
    except RagError as e:
        st.sidebar.caption(f"LLM unavailable: {plain(str(e))}")
        return None, str(e)
    st.sidebar.caption(f"LLM in use: {plain(llm.name)}")
    return llm, None


def upload_panel(settings: Settings, current: str | None, access: Access) -> None:
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
            if not access.may_write(target):
                raise CollectionError(
                    f"collection {target!r} is not yours to add to; pick another name"
                )
            new = not Collection.exists(settings.index_dir, target)
            with st.spinner(f"Ingesting into {plain(target)}: loading, chunking, embedding…"):
                uploads = [(f.name, f.getvalue()) for f in files or []]
                outcome = ingest_uploads(settings, target, uploads, saved, ingested)
            if new:
                access.created(target)
        except RagError as e:
            outcome = error_message(e)
        st.session_state["uploaded"] = outcome
        st.session_state["uploads"] = st.session_state.get("uploads", 0) + 1
        if isinstance(outcome, UploadOutcome) and outcome.report and outcome.report.ingested:
            st.session_state["switch_to"] = outcome.collection
        st.rerun()


def show_outcome(outcome: UploadOutcome | ErrorMessage) -> None:
    if isinstance(outcome, ErrorMessage):
        st.error(outcome.markdown)
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


def show_message(message: ChatMessage, turn: int) -> None:
    with st.chat_message(message.role):
        show_body(message, turn)


def show_body(message: ChatMessage, turn: int) -> None:
    """One message by its type: the question and the answer as text, an error as one line."""
    match message:
        case UserMessage(text=text):
            st.text(text)
        case AssistantReply():
            show_reply(message, turn)
        case ErrorMessage(markdown=markdown):
            st.error(markdown)


def show_reply(reply: AssistantReply, turn: int) -> None:
    if reply.refused:
        st.info(plain(reply.text))
    else:
        st.text(reply.text)
    st.caption(plain(reply.who))
    if reply.unsupported:
        listed = "\n".join(f"- {plain(sentence)}" for sentence in reply.unsupported)
        st.warning(f"{UNSUPPORTED}\n\n{listed}", icon="⚠️")
    for source in reply.cited:
        show_source(source, turn)
    if reply.others:
        label = OTHERS[reply.answered_by] if not reply.refused else OTHERS["refused"]
        with st.expander(f"{label} ({len(reply.others)})"):
            for source in reply.others:
                show_source(source, turn)
    elif reply.refused:
        st.caption("No passages matched the question.")
    for notice in reply.notices:
        st.caption(plain(notice))


def show_source(source: SourceView, turn: int) -> None:
    """A passage as text, or, when it holds sentences that support the answer, as escaped HTML
    with those marked; for a PDF, its page on request, the passage and sentences drawn on it."""
    with st.container(border=True):
        st.text(source.heading, help=plain(source.tooltip))
        if source.highlights:
            st.markdown(source.markup, unsafe_allow_html=True)  # escaped: see SourceView.markup
        else:
            st.text(source.text)
        if source.pdf and st.toggle(f"Show page {source.page}", key=f"page-{turn}-{source.number}"):
            try:
                png = page_png(source.path, source.page, passage=source.text, quotes=source.quotes)
                st.image(png, output_format="PNG")
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
) -> AssistantReply | ErrorMessage:
    """Stream the answer into the chat as it is written; any expected failure is one error."""
    with st.chat_message("assistant"):
        placeholder = st.empty()
        placeholder.caption("Searching…")
        reply: AssistantReply | ErrorMessage
        try:
            reply = stream_answer(engine, llm, settings, question, history, shown, placeholder)
        except RagError as e:
            reply = error_message(e)
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
) -> AssistantReply:
    """Answer on the engine's thread and show the tokens here as they arrive."""
    parts: list[str] = []
    with contextlib.closing(engine.answer(llm, settings, question, history)) as stream:
        for event in stream:
            if isinstance(event, SourcesFound):
                placeholder.caption(progress_line(settings.answer_mode, len(event.sources)))
            elif isinstance(event, AnswerToken):
                parts.append(event.text)
                placeholder.text("".join(parts) + CURSOR)
            elif isinstance(event, AnswerDone):
                return reply_for(event.answer, shown)
    raise RagError("the answer stream ended without an answer")


def main() -> None:
    st.set_page_config(page_title=TITLE, page_icon="🔎")
    st.title(TITLE)
    failed: RagError | None = None
    try:
        settings = Settings.load()
        access = sign_in(settings)  # before the history: a new user starts a new one
    except RagError as e:
        failed = e
    history: list[ChatMessage] = st.session_state.setdefault("history", [])
    shown: set[str] = st.session_state.setdefault("notices_shown", set())
    for turn, message in enumerate(history):
        show_message(message, turn)
    if failed is not None:
        show_message(error_message(failed), len(history))
        return
    if access is None:
        show_message(ErrorMessage(SIGN_IN), len(history))
        st.chat_input("Ask a question about your documents", disabled=True)
        return
    try:
        names = [name for name in list_collections(settings.index_dir) if access.may_read(name)]
        if not names:
            empty = ErrorMessage(no_collections_message(settings.index_dir))
            show_message(empty, len(history))
            upload_panel(settings, None, access)
            st.chat_input("Ask a question about your documents", disabled=True)
            return
        try:
            default = default_collection(names, st.query_params.get("collection"))
        except CollectionError as e:
            show_message(error_message(e), len(history))
            default = default_collection(names)
        choice = sidebar(settings, names, default or names[0])
        engine = open_engine(str(settings.index_dir.resolve()), choice.collection, settings)
        off_reason = show_status(engine, choice.rerank)
        where = document_scope(engine, choice.collection)
        tuned = settings.model_copy(
            update={
                "context_chunks": choice.top_k,
                "search_mode": choice.mode,
                "rerank": choice.rerank,
                "llm_backend": choice.backend,
                "answer_mode": choice.answer_mode,
                "where": where,
            }
        )
        llm, llm_error = answer_model(tuned)
        upload_panel(settings, choice.collection, access)
    except RagError as e:
        show_message(error_message(e), len(history))
        return
    # The browser stops typing at the limit; the answerer refuses anything longer anyway.
    query = st.chat_input(
        f"Ask a question about {choice.collection}", max_chars=settings.max_question_chars
    )
    if query is None:
        return
    question = UserMessage(query)
    show_message(question, len(history))
    reply: AssistantReply | ErrorMessage
    if llm is None and tuned.answer_mode == "llm":
        reply = error_message(llm_error or "no LLM")
        show_message(reply, len(history) + 1)
    elif not query.strip():
        reply = error_message(EMPTY_QUERY)
        show_message(reply, len(history) + 1)
    else:
        if off_reason:
            shown.add(off_reason)
        # Without an LLM the small reader still answers what it is sure of.
        model = llm if llm is not None else UnavailableLLM(llm_error or "no LLM")
        reply = ask(engine, model, tuned, query, conversation(history), shown, len(history) + 1)
        if isinstance(reply, AssistantReply):
            shown.update(reply.notices)
    history.extend([question, reply])


if __name__ == "__main__":
    main()
