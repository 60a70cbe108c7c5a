"""`rag ingest --meta` and `--where` on search, ask and eval: real files, real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.collection import Collection
from tests.conftest import write_squad_docs
from tests.test_cli import run


@pytest.fixture(scope="module")
def tagged(tmp_path_factory, squad_paragraphs):
    """20 SQuAD paragraphs in one collection: the first ten ingested with topic=a, the rest b."""
    root = tmp_path_factory.mktemp("scoped-cli")
    docs = write_squad_docs(root / "docs", squad_paragraphs, 20)
    index_dir = root / "idx"
    for files, topic in ((docs[:10], "a"), (docs[10:], "b")):
        result = run(
            "ingest", *map(str, files), "-c", "c", "--meta", f"topic={topic}", "--no-progress",
            index_dir=index_dir,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    return index_dir, docs


def hit_names(output: str) -> list[str]:
    return [Path(hit["document"]).name for hit in json.loads(output)["hits"]]


def test_where_metadata_and_document_glob(tagged, squad_paragraphs) -> None:
    index_dir, docs = tagged
    question = str(squad_paragraphs[0]["questions"][0])
    everywhere = hit_names(run("search", question, "-c", "c", "--json", index_dir=index_dir).stdout)
    assert everywhere[0] == "p000.md"
    scoped = run("search", question, "-c", "c", "--where", "topic=b", "--json", index_dir=index_dir)
    names = hit_names(scoped.stdout)
    assert len(names) == 5 and all(name in {d.name for d in docs[10:]} for name in names)
    globbed = run(
        "search", question, "-c", "c", "--where", "document=p01[2-3].md", "--json",
        index_dir=index_dir,
    )  # fmt: skip
    assert set(hit_names(globbed.stdout)) <= {"p012.md", "p013.md"}


def test_a_filter_that_matches_nothing_says_so(tagged) -> None:
    index_dir, _ = tagged
    result = run("search", "football", "-c", "c", "--where", "topic=zzz", index_dir=index_dir)
    assert result.exit_code == 0
    assert "no chunk matches --where topic=zzz" in result.output
    assert "No matching passages." in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "x", "-c", "c", "--where", "topic"], "is not key=value"),
        (["search", "x", "-c", "c", "--where", "page=0"], "pages count from 1"),
        (["ingest", "nowhere", "-c", "c", "--meta", "=x"], "is not key=value"),
    ],
)
def test_bad_where_and_meta_are_one_line(tagged, args, message) -> None:
    index_dir, _ = tagged
    result = run(*args, index_dir=index_dir)
    assert result.exit_code != 0
    assert message in result.output and len(result.output.strip().splitlines()) == 1


def test_changed_metadata_indexes_the_documents_again(tagged) -> None:
    index_dir, docs = tagged
    result = run(
        "ingest", *map(str, docs[:3]), "-c", "c", "--meta", "topic=c", "--no-progress",
        index_dir=index_dir,
    )  # fmt: skip
    assert "3 ingested (0 new, 3 changed" in result.output
    with Collection.open(index_dir, "c") as collection:
        stored = {Path(d.source).name: d for d in collection.store.documents()}
        assert stored["p000.md"].metadata == {"topic": "c"}
        assert stored["p005.md"].metadata == {"topic": "a"}
        # Each chunk is indexed with its document's label: file name, title, metadata.
        keys, texts = collection.store.live_texts()
        first = collection.store.chunks([int(keys[0])])[int(keys[0])]
        assert first.context.startswith("p")
        assert texts[0] == f"{first.context}\n{first.text}"
    scoped = ["--where", "topic=c", "--json"]
    result = run("search", "stadium", "-c", "c", *scoped, index_dir=index_dir)
    assert set(hit_names(result.stdout)) <= {"p000.md", "p001.md", "p002.md"}
