"""The `rag` command line: real commands on real files; every user error is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rag.cli import cli
from tests.conftest import write_squad_docs


def run(*args: str, index_dir: Path, env: dict[str, str] | None = None):
    result = CliRunner().invoke(cli, [*args], env={"RAG_INDEX_DIR": str(index_dir), **(env or {})})
    assert "Traceback" not in result.output, result.output
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory, squad_paragraphs, shared_data):
    """A collection built through `rag ingest` from SQuAD Markdown files and a real PDF."""
    root = tmp_path_factory.mktemp("cli")
    docs = write_squad_docs(root / "docs", squad_paragraphs, 12)
    pdf = shared_data / "pdfs" / "real" / "2005.11401.pdf"
    result = run(
        "ingest",
        str(root / "docs"),
        str(pdf),
        "-c",
        "demo",
        "--no-progress",
        index_dir=root / "idx",
    )
    assert result.exit_code == 0, result.output
    return root / "idx", docs


def test_ingest_summary(built) -> None:
    index_dir, _ = built
    info = json.loads(run("collections", "info", "demo", "--json", index_dir=index_dir).output)
    assert info["documents"] == 13 and info["chunks"] > 13
    assert info["embedder"] == {"name": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384}
    assert info["index"]["type"] == "flat"
    assert info["chunking"]["chunk_tokens"] == 240
    listing = json.loads(run("collections", "list", "--json", index_dir=index_dir).output)
    assert listing == {"collections": ["demo"]}


def test_search_json_shape(built) -> None:
    index_dir, _ = built
    result = run(
        "search",
        "retrieval-augmented generation with a dense passage index",
        "-c",
        "demo",
        "--json",
        "-k",
        "3",
        index_dir=index_dir,
    )
    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert list(payload) == ["hits"] and len(payload["hits"]) == 3
    hit = payload["hits"][0]
    assert set(hit) == {"document", "page", "chunk_id", "score", "text"}
    assert hit["document"].endswith("2005.11401.pdf") and hit["page"] >= 1
    assert "reranking is off" in result.stderr


@pytest.mark.parametrize("mode", ["dense", "bm25"])
def test_search_text_output(built, mode: str) -> None:
    index_dir, _ = built
    result = run(
        "search", "Super Bowl", "-c", "demo", "--mode", mode, "--no-rerank", index_dir=index_dir
    )
    assert result.exit_code == 0 and result.stdout.startswith("1. [")
    assert "(page 1)" in result.stdout


def test_glossary_flag(built, tmp_path: Path) -> None:
    """The built-in glossary is on by default and says what it added; --glossary none turns it
    off; a user's file is read; a missing one is one line."""
    index_dir, _ = built
    question = "What was the gross margin of the Super Bowl broadcast?"
    default = run("search", question, "-c", "demo", "--no-rerank", index_dir=index_dir)
    [added] = [line for line in default.stderr.splitlines() if "glossary" in line]
    assert added.startswith("also searched for the glossary's words: ") and "gross profit" in added
    plain = run("search", question, "-c", "demo", "--glossary", "none", index_dir=index_dir)
    assert plain.exit_code == 0 and "glossary" not in plain.stderr
    mine = tmp_path / "sports.toml"
    mine.write_text('[[term]]\nmatch = ["Super Bowl"]\nexpand = "NFL championship game"\n')
    own = run("search", question, "-c", "demo", "--glossary", str(mine), index_dir=index_dir)
    assert "glossary's words: NFL championship game" in own.stderr
    assert "gross profit" not in own.stderr
    missing = run("search", question, "-c", "demo", "--glossary", "nope.toml", index_dir=index_dir)
    assert missing.exit_code == 1
    assert missing.stderr.strip().startswith("Error: no glossary 'nope.toml'")


def test_unknown_collection_names_the_known_ones(built) -> None:
    index_dir, _ = built
    result = run("search", "x", "-c", "nope", index_dir=index_dir)
    assert result.exit_code == 1
    assert (
        result.stderr.strip()
        == f"Error: no collection named 'nope' in {index_dir} (collections: demo)"
    )


def test_other_embedder_is_refused(built) -> None:
    index_dir, _ = built
    result = run(
        "search", "x", "-c", "demo", "--embedder", "BAAI/bge-small-en-v1.5", index_dir=index_dir
    )
    assert result.exit_code == 1
    assert (
        "built with embedder 'sentence-transformers/all-MiniLM-L6-v2', not 'BAAI/bge-small-en-v1.5'"
        in result.stderr
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["ingest", "{tmp}/missing", "-c", "x"], {}, "Error: path not found: {tmp}/missing"),
        (
            ["ingest", "{tmp}/empty", "-c", "x"],
            {},
            "Error: no supported documents in folder {tmp}/empty",
        ),
        (
            ["ingest", "{tmp}/empty", "-c", "bad/name"],
            {},
            "Error: invalid collection name 'bad/name'",
        ),
        (["search", "q", "-c", "x", "-k", "many"], {}, "'many' is not a valid integer"),
        (
            ["search", "q", "-c", "x", "--mode", "fuzzy"],
            {},
            "'fuzzy' is not one of 'dense', 'bm25', 'hybrid'",
        ),
        (
            ["search", "q", "-c", "x", "-k", "0"],
            {},
            "Error: invalid settings: top_k: Input should be greater than or equal to 1",
        ),
        (
            ["search", "q", "-c", "x"],
            {"RAG_SEARCH_MODE": "fuzzy"},
            "Error: invalid settings: search_mode",
        ),
        (["collections", "delete", "ghost", "--yes"], {}, "Error: no collection named 'ghost'"),
        (["eval", "retrieval", "{tmp}"], {}, "is not a BEIR dataset: missing corpus.jsonl"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args, env, message) -> None:
    (tmp_path / "empty").mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = run(*args, index_dir=tmp_path / "idx", env=env)
    assert result.exit_code in (1, 2)
    assert message.replace("{tmp}", str(tmp_path)) in result.stderr
    # One error line (click adds its usage hint above a bad flag).
    assert sum(line.startswith("Error:") for line in result.stderr.splitlines()) == 1


def test_failed_files_make_a_nonzero_exit(
    tmp_path: Path, shared_data: Path, squad_paragraphs
) -> None:
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 2)
    broken = shared_data / "pdfs" / "broken" / "encrypted-file.pdf"
    result = run(
        "ingest",
        *map(str, docs),
        str(broken),
        "-c",
        "mixed",
        "--no-progress",
        index_dir=tmp_path / "idx",
    )
    assert result.exit_code == 1
    assert f"failed: {broken}: needs a password" in result.stderr
    assert "2 ingested (2 new, 0 changed, 0 resumed), 0 unchanged, 1 failed" in result.stdout


def test_delete(tmp_path: Path, squad_paragraphs) -> None:
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 1)
    run("ingest", str(docs[0]), "-c", "gone", "--no-progress", index_dir=tmp_path / "idx")
    assert run("collections", "delete", "gone", "--yes", index_dir=tmp_path / "idx").exit_code == 0
    assert not (tmp_path / "idx" / "gone").exists()


def test_approximate_index_reports_its_tuning(tmp_path, squad_paragraphs) -> None:
    """`--index-type hnsw`: the build tunes efSearch, and `collections info` shows it."""
    docs = write_squad_docs(tmp_path / "docs", squad_paragraphs, 40)
    index_dir = tmp_path / "idx"
    result = run(
        "ingest",
        str(tmp_path / "docs"),
        "-c",
        "ann",
        "--index-type",
        "hnsw",
        "--no-progress",
        index_dir=index_dir,
    )
    assert result.exit_code == 0, result.output
    run("search", "Super Bowl", "-c", "ann", "--mode", "dense", index_dir=index_dir)
    info = json.loads(run("collections", "info", "ann", "--json", index_dir=index_dir).output)
    assert info["index"]["type"] == "hnsw"
    assert info["index"]["tuning"]["recall@10"] >= 0.95
    assert "ef_search" in info["index"]["tuning"]
    text = run("collections", "info", "ann", index_dir=index_dir).output
    assert "index:     hnsw (tuned: ef_search" in text
    assert len(docs) == 40
