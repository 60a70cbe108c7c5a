"""ingest.loaders on real files: pypdf's hostile and sample PDFs, arXiv papers, SQuAD text."""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import pypdf
import pytest

from ingest.loaders import SUPPORTED_SUFFIXES, load_document, sha256_file
from rag.errors import LoadError
from rag.types import Document, sha256_hex

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PDFS = DATA / "pdfs"

pytestmark = pytest.mark.skipif(
    not PDFS.is_dir(), reason=f"shared test data not found at {DATA} (see shared/data/README.md)"
)

OK = "ok"
# What each file really is, as observed with pypdf 7.1 (see shared/data/pdfs/PROVENANCE.md).
EXPECTED: dict[str, str] = {
    # pdfs/broken
    "Seige_of_Vicksburg_Sample_OCR.pdf": OK,  # scanned pages with an OCR text layer
    "bytes.pdf": OK,  # described as zero pages, but pypdf recovers one page with text
    "crazyones-encrypted-256.pdf": "needs a password",  # AES-256, "password"
    "encrypted-file.pdf": "needs a password",  # RC4, "test"
    "encrypted_doc_no_id.pdf": "no text layer",  # opens with the empty password; 3 blank pages
    "issue-297.pdf": OK,  # broken xref that pypdf recovers
    "missing_info.pdf": OK,
    "outlines-with-invalid-destinations.pdf": OK,
    "r2-empty-password.pdf": OK,  # empty user password: opens without asking
    # User password "asdfzxcv", but the owner password is empty: it opens, as with poppler's tools.
    "r6-user-password.pdf": OK,
    # pdfs/sample-files
    "minimal-document.pdf": OK,
    "002-trivial-libre-office-writer.pdf": OK,
    "pdflatex-image.pdf": OK,
    "pdflatex-4-pages.pdf": OK,
    "libreoffice-writer-password.pdf": "needs a password",  # "openpassword"
    "pdflatex-outline.pdf": OK,
    "imagemagick-ASCII85Decode.pdf": "no text layer",
    "imagemagick-CCITTFaxDecode.pdf": "no text layer",
    "imagemagick-images.pdf": OK,  # pages 4 and 5 are image-only
    "imagemagick-lzw.pdf": "no text layer",
    "inline-image.pdf": OK,
    "GeoTopo-komprimiert.pdf": OK,
    "pdflatex-forms.pdf": OK,
    "google-doc-document.pdf": OK,
    "libreoffice-form.pdf": OK,
    "reportlab-overlay.pdf": OK,
    "mistitled_outlines_example.pdf": OK,
    "habibi-oneline-cmap.pdf": OK,
    "habibi-rotated.pdf": OK,
    "habibi.pdf": OK,
    "libre-office-link.pdf": OK,
    "unreadablemetadata.pdf": "malformed PDF",  # files.json says 4 pages; /Pages is unreadable
    "base64image.pdf": OK,
    "grayscale-image.pdf": "no text layer",
    "output_with_metadata_pymupdf.pdf": OK,
    "crazyones-pdfa.pdf": OK,
    "pdfkit.pdf": OK,
    "cmyk-image.pdf": "no text layer",
    "annotated_pdf.pdf": OK,
    "with-attachment.pdf": OK,
    "multicolumn.pdf": OK,
}
EMPTY_PAGES = {"imagemagick-images.pdf": (4, 5)}
TITLES = {
    "GeoTopo-komprimiert.pdf": "Geometrie und Topologie",  # from /Title
    "google-doc-document.pdf": "PDF Example Document",
    "inline-image.pdf": "inline-image",  # /Title "untitled" is a placeholder
    "bytes.pdf": "bytes",  # /Title "Microsoft Word - ....docx" is a file name
    "imagemagick-images.pdf": "imagemagick-images",  # /Title ends with a NUL
}


def _hostile_pdfs() -> list[Path]:
    files = [*PDFS.glob("broken/*.pdf"), *PDFS.glob("sample-files/**/*.pdf")]
    return sorted(files, key=lambda path: path.name)


HOSTILE = _hostile_pdfs()
BY_NAME = {path.name: path for path in HOSTILE}


def _check_pages(doc: Document) -> None:
    assert doc.pages, "a loaded document has at least one page of text"
    assert all(page.text.strip() for page in doc.pages)
    numbers = [page.number for page in doc.pages]
    assert numbers == sorted(numbers)
    # Text pages and empty pages together number every page of the file, from 1.
    assert sorted([*numbers, *doc.empty_pages]) == list(
        range(1, len(numbers) + len(doc.empty_pages) + 1)
    )


@pytest.fixture(scope="module")
def squad_paragraph() -> tuple[str, str]:
    """The first SQuAD dev article's title and first paragraph: real text to write into files."""
    squad = json.loads((DATA / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    article = squad["data"][0]
    return article["title"].replace("_", " "), article["paragraphs"][0]["context"]


def test_every_hostile_pdf_is_pinned() -> None:
    assert sorted(BY_NAME) == sorted(EXPECTED)
    assert len(BY_NAME) == len(HOSTILE), "file names must be unique to pin them"


@pytest.mark.parametrize("name", sorted(BY_NAME))
def test_hostile_pdf_loads_or_raises_load_error(name: str) -> None:
    path = BY_NAME[name]
    expected = EXPECTED[name]
    if expected == OK:
        doc = load_document(path)
        _check_pages(doc)
        assert doc.media_type == "application/pdf"
        assert doc.source == str(path)
        assert doc.id == sha256_file(path)
        assert doc.empty_pages == EMPTY_PAGES.get(name, ())
    else:
        with pytest.raises(LoadError, match=re.escape(expected)) as caught:
            load_document(path)
        assert caught.value.reason.startswith(expected)
        assert caught.value.source == str(path)
        assert "\n" not in caught.value.reason and len(caught.value.reason) < 200


@pytest.mark.parametrize(("name", "title"), sorted(TITLES.items()))
def test_pdf_title_from_sane_metadata_else_stem(name: str, title: str) -> None:
    assert load_document(BY_NAME[name]).title == title


def test_empty_user_password_opens_without_asking() -> None:
    doc = load_document(BY_NAME["r2-empty-password.pdf"])
    assert "pdf encryption test" in doc.pages[0].text


def test_scanned_book_with_ocr_layer_has_text_on_every_page() -> None:
    doc = load_document(BY_NAME["Seige_of_Vicksburg_Sample_OCR.pdf"])
    assert [page.number for page in doc.pages] == [1, 2, 3, 4, 5, 6]
    assert "VICKSBURG" in doc.pages[0].text


def test_image_only_pdf_says_to_run_ocr() -> None:
    with pytest.raises(LoadError, match=r"no text layer .*run OCR first"):
        load_document(BY_NAME["grayscale-image.pdf"])


def test_real_password_is_asked_for() -> None:
    with pytest.raises(LoadError, match=r"needs a password"):
        load_document(BY_NAME["libreoffice-writer-password.pdf"])


def test_ligatures_are_expanded() -> None:
    text = load_document(BY_NAME["multicolumn.pdf"]).pages[0].text
    assert "filled" in text and "\ufb01" not in text


def test_pypdf_stays_quiet_and_its_logger_is_restored(caplog: pytest.LogCaptureFixture) -> None:
    path = BY_NAME["unreadablemetadata.pdf"]
    caplog.set_level(logging.DEBUG, logger="pypdf")
    pypdf.PdfReader(path)  # without the loader, this file makes pypdf log a warning
    assert any(record.name.startswith("pypdf") for record in caplog.records)
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(LoadError, match="malformed PDF: "):
            load_document(path)
    assert not [record for record in caplog.records if record.name.startswith("pypdf")]
    assert not caught
    assert logging.getLogger("pypdf").level == logging.DEBUG


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        ("1706.03762.pdf", "Attention Is All You Need"),
        ("2005.11401.pdf", "Retrieval-Augmented Generation"),
        ("BERT.pdf", "Pre-training of Deep Bidirectional Transformers"),
    ],
)
def test_real_paper(name: str, phrase: str) -> None:
    path = PDFS / "real" / name
    doc = load_document(path)
    _check_pages(doc)
    assert len(doc.pages) == len(pypdf.PdfReader(path).pages) - len(doc.empty_pages)
    assert doc.pages[0].number == 1
    assert phrase in doc.pages[0].text
    assert doc.id == sha256_file(path) == sha256_hex(path.read_bytes())


def test_pdf_with_zero_pages(tmp_path: Path) -> None:
    path = tmp_path / "zero.pdf"
    pypdf.PdfWriter().write(path)
    with pytest.raises(LoadError, match=r"no pages$"):
        load_document(path)


def test_text_named_pdf_is_malformed(tmp_path: Path, squad_paragraph: tuple[str, str]) -> None:
    path = tmp_path / "paragraph.pdf"
    path.write_text(squad_paragraph[1], encoding="utf-8")
    with pytest.raises(LoadError, match=r"malformed PDF: not a PDF file"):
        load_document(path)


def test_truncated_paper_is_malformed(tmp_path: Path) -> None:
    raw = (PDFS / "real" / "1706.03762.pdf").read_bytes()
    path = tmp_path / "truncated.pdf"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(LoadError, match=r"malformed PDF: \S") as caught:
        load_document(path)
    assert isinstance(caught.value.__cause__, pypdf.errors.PyPdfError)
    assert len(caught.value.reason) <= len("malformed PDF: ") + 120


def test_plain_text(tmp_path: Path, squad_paragraph: tuple[str, str]) -> None:
    path = tmp_path / "super_bowl.txt"
    path.write_text(squad_paragraph[1], encoding="utf-8")
    doc = load_document(path)
    assert (doc.title, doc.media_type, doc.empty_pages) == ("super_bowl", "text/plain", ())
    assert [(page.number, page.text) for page in doc.pages] == [(1, squad_paragraph[1])]
    assert doc.id == sha256_file(path)


def test_text_is_normalised(tmp_path: Path, squad_paragraph: tuple[str, str]) -> None:
    first, second = squad_paragraph[1].split(". ", 1)
    path = tmp_path / "crlf.txt"
    path.write_bytes(("\ufeff" + first + ".\r\n\r\n\r\n\r\n" + second + "\x00\r\n").encode("utf-8"))
    assert load_document(path).pages[0].text == f"{first}.\n\n{second}"


def test_markdown_title_is_first_heading(tmp_path: Path, squad_paragraph: tuple[str, str]) -> None:
    title, text = squad_paragraph
    path = tmp_path / "notes.md"
    path.write_text(f"```sh\n# not a title\n```\n\n# {title}\n\n{text}\n", encoding="utf-8")
    doc = load_document(path)
    assert (doc.title, doc.media_type, len(doc.pages)) == (title, "text/markdown", 1)
    assert text in doc.pages[0].text and f"# {title}" in doc.pages[0].text


def test_markdown_without_heading_uses_stem(
    tmp_path: Path, squad_paragraph: tuple[str, str]
) -> None:
    path = tmp_path / "notes.markdown"
    path.write_text(squad_paragraph[1], encoding="utf-8")
    assert load_document(path).title == "notes"


def test_html_drops_scripts_and_styles(tmp_path: Path, squad_paragraph: tuple[str, str]) -> None:
    title, text = squad_paragraph
    html = (
        f"<html><head><title>{title}</title><style>p {{ color: red }}</style>\n"
        "<script>alert('head')</script></head>\n<body>\n  <h1>Heading</h1>\n\n\n\n"
        f"  <script>alert('x')</script>\n  <p>\n    {text}\n  </p>\n"
        "<noscript>enable javascript</noscript><template>template text</template>\n</body></html>"
    )
    path = tmp_path / "page.HTM"
    path.write_text(html, encoding="utf-8")
    doc = load_document(path)
    assert (doc.title, doc.media_type, len(doc.pages)) == (title, "text/html", 1)
    page = doc.pages[0].text
    assert page == f"Heading\n\n{text}"
    for hidden in ("alert", "color", "enable javascript", "template text"):
        assert hidden not in page


def test_html_title_falls_back_to_h1(tmp_path: Path, squad_paragraph: tuple[str, str]) -> None:
    path = tmp_path / "page.html"
    path.write_text(f"<h1>Super <em>Bowl</em> 50</h1><p>{squad_paragraph[1]}</p>", encoding="utf-8")
    assert load_document(path).title == "Super Bowl 50"


def test_html_with_no_visible_text(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<html><head><title>t</title></head><script>alert('x')</script></html>")
    with pytest.raises(LoadError, match="empty file"):
        load_document(path)


def test_unsupported_suffix_lists_the_valid_ones(tmp_path: Path) -> None:
    assert {".pdf", ".txt", ".md", ".markdown", ".html", ".htm"} == SUPPORTED_SUFFIXES
    path = tmp_path / "data.xyz"
    path.write_text("text")
    supported = r"\(supported: \.htm, \.html, \.markdown, \.md, \.pdf, \.txt\)"
    with pytest.raises(LoadError, match=rf"unsupported file type '\.xyz' {supported}$"):
        load_document(path)
    with pytest.raises(LoadError, match=rf"unsupported file type \(no extension\) {supported}$"):
        load_document(tmp_path / "README")


@pytest.mark.parametrize("name", ["blank.txt", "blank.md", "blank.pdf"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("  \n\t\r\n  ")
    with pytest.raises(LoadError, match=r"empty file$"):
        load_document(path)


def test_latin1_file_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("Größe Übermaß Ärger àéèêç ñ ÿ öäü ß".encode("latin-1"))
    with pytest.raises(LoadError, match=r"not UTF-8 text$"):
        load_document(path)


def test_one_stray_byte_is_replaced(tmp_path: Path, squad_paragraph: tuple[str, str]) -> None:
    path = tmp_path / "stray.txt"
    path.write_bytes(squad_paragraph[1].encode("utf-8") + b" caf\xe9")
    text = load_document(path).pages[0].text
    assert text.endswith(" caf\ufffd") and text.count("\ufffd") == 1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="cannot read file"):
        load_document(tmp_path / "gone.txt")
