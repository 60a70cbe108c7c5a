"""`rag eval retrieval` on a real SciFact subset, through the project's own ingest and search."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ingest.beir import BeirDataset
from rag.cli import cli


@pytest.fixture(scope="module")
def scifact_subset(tmp_path_factory, shared_data: Path) -> Path:
    """30 test queries, their relevant abstracts and 270 others drawn with a fixed seed."""
    source = BeirDataset(shared_data / "scifact")
    qrels = source.qrels("test")
    chosen = sorted(qrels)[:30]
    relevant = {doc for qid in chosen for doc in qrels[qid]}
    lines = (shared_data / "scifact" / "corpus.jsonl").read_text().splitlines()
    ids = [json.loads(line)["_id"] for line in lines]
    others = [i for i in range(len(lines)) if ids[i] not in relevant]
    keep = {i for i in range(len(lines)) if ids[i] in relevant}
    keep |= set(random.Random(7).sample(others, 300 - len(keep)))
    folder = tmp_path_factory.mktemp("beir") / "scifact-mini"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("\n".join(lines[i] for i in sorted(keep)) + "\n")
    shutil.copy(shared_data / "scifact" / "queries.jsonl", folder / "queries.jsonl")
    rows = [f"{q}\t{d}\t{s}" for q in chosen for d, s in qrels[q].items()]
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n"
    )
    return folder


@pytest.mark.slow
def test_eval_retrieval_json(scifact_subset: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["eval", "retrieval", str(scifact_subset), "--json", "--no-progress"]
    env = {"RAG_INDEX_DIR": str(tmp_path / "idx")}
    result = runner.invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["dataset"] == "scifact-mini" and payload["queries"] == 30
    # No reranker on this machine: only the first-stage configs are reported.
    assert set(payload["results"]) == {"dense", "bm25", "hybrid"}
    for config, scores in payload["results"].items():
        assert set(scores) == {"ndcg@10", "recall@10", "recall@100", "mrr@10"}
        # 300 abstracts is an easy haystack: every config finds most relevant ones.
        assert scores["ndcg@10"] > 0.6, (config, scores)
        assert scores["recall@100"] >= scores["recall@10"]
    # The collection is named after the dataset and reused when unchanged.
    again = runner.invoke(cli, [*args, "--config-name", "bm25"], env=env)
    assert again.exit_code == 0
    assert "0 ingested (0 new, 0 changed, 0 resumed), 300 unchanged" in again.stderr
    assert json.loads(again.stdout)["results"]["bm25"] == payload["results"]["bm25"]


@pytest.fixture(scope="module")
def squad_collection(tmp_path_factory, shared_data: Path, minilm):
    """SQuAD dev's first article as Markdown, ingested, and 15 of its questions."""
    from ingest.pipeline import IngestJob
    from ingest.squad import build_squad_corpus
    from rag.settings import Settings

    root = tmp_path_factory.mktemp("squad-hits")
    corpus = build_squad_corpus(
        shared_data / "squad" / "dev-v1.1.json", root, articles=1, pdf_every=0, questions=15
    )
    settings = Settings.load(index_dir=root / "idx", progress=False, device="cpu", rerank=False)
    IngestJob(settings, embedder=minilm).run_files("sb50", list(corpus.documents))
    return settings.index_dir, corpus.questions_file


def test_eval_hits_json_and_details(squad_collection, tmp_path: Path) -> None:
    index_dir, questions = squad_collection
    details = tmp_path / "ranks.jsonl"
    args = ["eval", "hits", str(questions), "-c", "sb50", "--no-rerank", "--json"]
    result = CliRunner().invoke(
        cli,
        [*args, "-k", "1", "-k", "3", "--no-progress", "--details", str(details)],
        env={"RAG_INDEX_DIR": str(index_dir)},
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert scores["collection"] == "sb50" and scores["questions"] == 15
    assert set(scores) == {
        "collection",
        "questions",
        "hit@1",
        "hit@3",
        "document_hit@1",
        "document_hit@3",
        "mrr@3",
    }
    # One document: every question finds it first; the paragraph itself mostly in the top 3.
    assert scores["document_hit@1"] == 1.0
    assert scores["hit@3"] >= 0.6
    rows = [json.loads(line) for line in details.read_text().splitlines()]
    assert len(rows) == 15 and set(rows[0]) == {"id", "rank", "document_rank"}


def test_eval_hits_text_and_errors(squad_collection, tmp_path: Path) -> None:
    index_dir, questions = squad_collection
    env = {"RAG_INDEX_DIR": str(index_dir)}
    result = CliRunner().invoke(
        cli,
        ["eval", "hits", str(questions), "-c", "sb50", "--mode", "bm25", "--no-progress"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "sb50: 15 questions (bm25)" in result.stdout and "hit@10" in result.stdout
    unlabelled = tmp_path / "q.jsonl"
    unlabelled.write_text('{"id": "a", "question": "Who won Super Bowl 50?"}\n')
    result = CliRunner().invoke(
        cli, ["eval", "hits", str(unlabelled), "-c", "sb50", "--no-progress"], env=env
    )
    assert result.exit_code == 1
    assert "Error: 1 question(s) have no gold 'document' (first: 'a')" in result.stderr
