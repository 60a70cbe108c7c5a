"""Uploads: names made safe, types and sizes checked, files saved beside the collections, then
ingested by the real ingest job (real MiniLM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.collection import list_collections
from rag.errors import CollectionError
from rag.settings import Settings
from ui.uploads import (
    MAX_UPLOAD_BYTES,
    check_upload,
    ingest_uploads,
    safe_name,
    save_upload,
    uploads_dir,
)


@pytest.mark.parametrize(
    ("given", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("Annual Report 2024.PDF", "Annual_Report_2024.pdf"),
        ("../../etc/passwd.md", "passwd.md"),
        ("C:\\Users\\me\\notes.txt", "notes.txt"),
        (".hidden.md", "hidden.md"),
        ("...md", "md"),
        ("a..b.md", "a.b.md"),
        ("<script>alert(1)</script>.html", "script.html"),  # "/" ends the directory part
        ("<b>a&b<b>|x?.htm", "b_a_b_b_x.htm"),
        ("Résumé — final.md", "Résumé_final.md"),
        ("\x00evil\nname.txt", "evil_name.txt"),
        ("-rf.md", "rf.md"),
        (".pdf", "pdf"),
        ("", "upload"),
        ("/", "upload"),
        ("x" * 300 + ".pdf", "x" * 100 + ".pdf"),
    ],
)
def test_safe_name(given: str, safe: str) -> None:
    assert safe_name(given) == safe


def test_check_upload_refuses_bad_types_and_sizes() -> None:
    assert check_upload("paper.PDF", 1000) is None
    assert check_upload("notes.md", MAX_UPLOAD_BYTES) is None
    assert check_upload("virus.exe", 10) == (
        "unsupported file type '.exe' (supported: .htm, .html, .markdown, .md, .pdf, .txt)"
    )
    assert check_upload("Makefile", 10).startswith("unsupported file type (no extension)")
    assert check_upload(".pdf", 10).startswith("unsupported file type (no extension)")
    assert check_upload("empty.txt", 0) == "the file is empty"
    assert (
        check_upload("big.pdf", MAX_UPLOAD_BYTES + 1) == "50.0 MB is over the 50 MB limit per file"
    )


def test_uploads_live_beside_the_collections(tmp_path: Path) -> None:
    assert uploads_dir(tmp_path, "papers") == tmp_path / ".uploads" / "papers"
    with pytest.raises(CollectionError, match=r"invalid collection name '\.\./x'"):
        uploads_dir(tmp_path, "../x")


def test_name_collisions_get_a_suffix_and_same_content_reuses_the_file(tmp_path: Path) -> None:
    first = save_upload(tmp_path, "a.md", b"one")
    assert first == tmp_path / "a.md" and first.read_bytes() == b"one"
    assert save_upload(tmp_path, "a.md", b"two") == tmp_path / "a-1.md"
    assert save_upload(tmp_path, "a.md", b"three") == tmp_path / "a-2.md"
    assert save_upload(tmp_path, "a.md", b"two") == tmp_path / "a-1.md"  # already there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-1.md", "a-2.md", "a.md"]


def test_ingest_uploads_saves_checks_and_ingests(tmp_path: Path, real_pdfs: Path) -> None:
    settings = Settings.load(index_dir=tmp_path / "indexes", progress=False, device="cpu")
    pdf = (real_pdfs / "KnowledgePackingInLM.pdf").read_bytes()
    steps: list[tuple[int, int]] = []
    outcome = ingest_uploads(
        settings,
        "uploaded",
        [
            ("Knowledge paper.pdf", pdf),
            ("tool.exe", b"MZ"),
            ("notes.md", b"# Notes\n\nQuince marmalade keeps for a year.\n"),
        ],
        progress=lambda done, total: steps.append((done, total)),
    )
    folder = tmp_path / "indexes" / ".uploads" / "uploaded"
    assert outcome.saved == [folder / "Knowledge_paper.pdf", folder / "notes.md"]
    assert outcome.rejected == [("tool.exe", check_upload("tool.exe", 2))]
    assert steps == [(1, 3), (2, 3), (3, 3)]
    report = outcome.report
    assert report is not None and (report.added, report.failed) == (2, [])
    # The uploads folder is not mistaken for a collection.
    assert list_collections(settings.index_dir) == ["uploaded"]
    # The same files again: the same paths, nothing new to ingest.
    again = ingest_uploads(settings, "uploaded", [("Knowledge paper.pdf", pdf)])
    assert again.saved == [folder / "Knowledge_paper.pdf"] and again.report.unchanged == 1


def test_a_file_that_cannot_be_read_is_a_failure_line(tmp_path: Path) -> None:
    settings = Settings.load(index_dir=tmp_path / "indexes", progress=False, device="cpu")
    outcome = ingest_uploads(settings, "broken", [("fake.pdf", b"<html>not a pdf</html>")])
    assert outcome.report is not None and outcome.report.ingested == 0
    ((source, reason),) = outcome.report.failed
    assert source.endswith("fake.pdf") and reason
    assert list_collections(settings.index_dir) == []  # no empty collection left behind
