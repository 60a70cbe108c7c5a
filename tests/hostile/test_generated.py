"""Generated hostile input (hypothesis): settings values from flags, the environment and TOML
files, and file names. Each is accepted, or refused with one line; never a traceback."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.chunking import Chunker
from ingest.loaders import SUPPORTED_SUFFIXES
from ingest.pipeline import IngestJob
from rag.collection import Collection
from rag.embedding import HashEmbedder
from rag.errors import ConfigError
from rag.retrieval import Searcher
from rag.settings import Settings
from rag.types import shown
from ui.uploads import safe_name

FIELDS = sorted(name for name in Settings.model_fields if name != "llm_api_key")
ANY_VALUE = st.one_of(
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
# What an environment variable or a file name can hold: no NUL, no lone surrogates.
PLAIN_TEXT = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
GENERATED = settings(max_examples=150, deadline=None)


def refused_in_one_line(error: ConfigError) -> None:
    message = str(error)
    assert message and "\n" not in message, message


@GENERATED
@given(field=st.sampled_from(FIELDS), value=ANY_VALUE)
def test_any_flag_value_is_taken_or_refused_in_one_line(field: str, value: object) -> None:
    try:
        Settings.load(**{field: value})
    except ConfigError as e:
        refused_in_one_line(e)


@GENERATED
@given(field=st.sampled_from(FIELDS), value=st.text(PLAIN_TEXT, max_size=30))
def test_any_environment_value_is_taken_or_refused_in_one_line(field: str, value: str) -> None:
    key = f"RAG_{field.upper()}"
    before = os.environ.get(key)
    os.environ[key] = value
    try:
        Settings.load()
    except ConfigError as e:
        refused_in_one_line(e)
    finally:
        if before is None:
            del os.environ[key]
        else:
            os.environ[key] = before


TOML_LINES = st.one_of(
    st.builds(
        lambda k, v: f"{k} = {v}",
        st.sampled_from(FIELDS),
        st.sampled_from(
            ["1", "-3", "0.5", "true", '"x"', "[1, 2]", "{a = 1}", "", "nan", '"hybrid"', "1e309"]
        ),
    ),
    st.text(PLAIN_TEXT, max_size=40),
)


@GENERATED
@given(lines=st.lists(TOML_LINES, max_size=5), raw=st.binary(max_size=20))
def test_any_config_file_is_taken_or_refused_in_one_line(lines: list[str], raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        for content in ("\n".join(lines).encode(), raw):
            path = Path(folder) / "rag.toml"
            path.write_bytes(content)
            try:
                Settings.load(path)
            except ConfigError as e:
                refused_in_one_line(e)


# A name a Linux file system takes: no '/', no NUL, at most 255 bytes; '.' and '..' are folders.
FILE_NAMES = (
    st.tuples(
        st.text(PLAIN_TEXT.filter(lambda c: c != "/"), min_size=1, max_size=60),
        st.sampled_from([*sorted(SUPPORTED_SUFFIXES), ".MD", ".exe", ""]),
    )
    .map("".join)
    .filter(lambda name: name not in (".", "..", "other.md") and len(name.encode()) <= 255)
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=FILE_NAMES)
def test_any_file_name_is_ingested_or_reported_and_printed_on_one_line(name: str) -> None:
    text = "The Broncos defeated the Panthers to win Super Bowl 50 in Santa Clara.\n"
    with tempfile.TemporaryDirectory() as root:
        folder = Path(root) / "docs"
        folder.mkdir()
        (folder / name).write_text(text)
        (folder / "other.md").write_text("# Other\n\nThe Normans gave their name to Normandy.\n")
        index_dir = Path(root) / "idx"
        run = Settings.load(index_dir=index_dir, progress=False)
        report = IngestJob(run, embedder=HashEmbedder(), chunker=Chunker(80, 10)).run_files(
            "c", [folder]
        )
        assert all("\n" not in shown(source) for source, _ in report.failed)
        collection = Collection.open(index_dir, "c")
        try:
            names = {Path(d.source).name for d in collection.store.documents()}
            searcher = Searcher(collection, run, embedder=HashEmbedder(), reranker=None)
            hits = searcher.search("Super Bowl 50 Broncos", top_k=2).hits
        finally:
            collection.close()
        # Text in a file named .pdf is a broken PDF: reported, like any broken file.
        suffix = Path(name).suffix.lower()
        supported = suffix in SUPPORTED_SUFFIXES and suffix != ".pdf"
        assert [Path(source).name for source, _ in report.failed] == (
            [name] if suffix == ".pdf" else []
        )
        assert names == ({name, "other.md"} if supported else {"other.md"})
        assert ({Path(h.chunk.source).name for h in hits} >= {name}) == supported
        for hit in hits:
            assert "\n" not in shown(hit.chunk.source)
    # An upload of that name is saved under a safe base name.
    safe = safe_name(name)
    assert safe and "/" not in safe and not safe.startswith(".") and ".." not in safe
