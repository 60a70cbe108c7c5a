"""OCR of PDF pages without usable text, with the real tesseract binary on real scans."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import pypdfium2
import pytest

from ingest import ocr
from ingest.loaders import load_document
from ingest.ocr import INSTALL_HINT, garbled, needs_ocr
from rag.errors import LoadError

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PDFS = DATA / "pdfs"
VICKSBURG = PDFS / "broken" / "Seige_of_Vicksburg_Sample_OCR.pdf"
GARBLED = PDFS / "real" / "1908.10084.pdf"  # a font without a usable Unicode map
SAMPLES = PDFS / "sample-files"
# Image-only files in sample-files (files.json: images, and pypdf finds no text).
IMAGE_ONLY = [
    SAMPLES / "019-grayscale-image" / "grayscale-image.pdf",
    SAMPLES / "023-cmyk-image" / "cmyk-image.pdf",
    SAMPLES / "007-imagemagick-images" / "imagemagick-lzw.pdf",
]

pytestmark = pytest.mark.skipif(not PDFS.is_dir(), reason=f"shared test data not found at {DATA}")
needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="no tesseract (apt-get install tesseract-ocr)"
)


def words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]{4,}", text)}


@pytest.fixture
def scanned_pdf(tmp_path: Path) -> Path:
    """Vicksburg's first two scanned pages as an image-only PDF (its OCR layer left behind)."""
    source = pypdfium2.PdfDocument(VICKSBURG)
    images = [source[i].render(scale=200 / 72, grayscale=True).to_pil() for i in range(2)]
    path = tmp_path / "scan.pdf"
    images[0].save(path, save_all=True, append_images=images[1:], resolution=200.0)
    return path


def test_the_scan_has_no_text_layer_without_ocr(scanned_pdf: Path) -> None:
    with pytest.raises(LoadError, match=r"no text layer .*run OCR first"):
        load_document(scanned_pdf, ocr="off")


@needs_tesseract
def test_image_only_pages_get_their_text_from_tesseract(scanned_pdf: Path) -> None:
    doc = load_document(scanned_pdf, ocr="auto")
    assert [page.number for page in doc.pages] == [1, 2]
    layer = load_document(VICKSBURG)  # the scan's own OCR layer: what the words should be
    for ours, theirs in zip(doc.pages, layer.pages, strict=False):
        assert "VICKSBURG" in ours.text
        found, expected = words(ours.text), words(theirs.text)
        assert len(found & expected) >= 0.8 * len(expected)
        assert garbled(ours.text) is None


@needs_tesseract
def test_force_ocrs_pages_that_have_a_text_layer() -> None:
    layer = load_document(VICKSBURG, ocr="off")
    forced = load_document(VICKSBURG, ocr="force")
    assert [p.number for p in forced.pages] == [p.number for p in layer.pages]
    assert forced.pages[0].text != layer.pages[0].text
    assert len(words(forced.pages[0].text) & words(layer.pages[0].text)) >= 0.8 * len(
        words(layer.pages[0].text)
    )


@needs_tesseract
def test_garbled_font_encoding_is_replaced_by_ocr_text() -> None:
    before = load_document(GARBLED, ocr="off")
    assert garbled(before.pages[0].text) is not None
    assert "Sentence" not in before.pages[0].text
    after = load_document(GARBLED, ocr="auto")
    assert [p.number for p in after.pages] == [1, 2]
    assert "Sentence-BERT" in after.pages[0].text
    assert {"siamese", "embeddings", "semantic"} <= words(after.pages[0].text)


@needs_tesseract
@pytest.mark.parametrize("path", IMAGE_ONLY, ids=lambda p: p.name)
def test_pictures_without_text_stay_without_text(path: Path) -> None:
    with pytest.raises(LoadError, match=r"no text layer, and OCR found no text"):
        load_document(path, ocr="auto")


def test_without_tesseract_ingest_says_once_how_to_install_it(
    scanned_pdf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-binaries-here"))
    caplog.set_level(logging.WARNING, logger="ingest.ocr")
    for _ in range(2):
        with pytest.raises(LoadError, match=r"no text layer .*run OCR first"):
            load_document(scanned_pdf, ocr="auto")
    doc = load_document(GARBLED, ocr="auto")  # goes on as without OCR: the text layer stays
    assert doc.pages[0].text == load_document(GARBLED, ocr="off").pages[0].text
    hints = [r.getMessage() for r in caplog.records if "tesseract is not installed" in r.message]
    assert hints == [INSTALL_HINT]
    assert "\n" not in INSTALL_HINT and "apt-get install tesseract-ocr" in INSTALL_HINT


@needs_tesseract
def test_pages_are_read_by_several_tesseracts_at_once_and_kept_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each tesseract run goes through a wrapper that logs when it starts and ends: with two
    workers some runs overlap, and every page gets the text a one-at-a-time run gives it."""
    real = shutil.which("tesseract")
    log = tmp_path / "runs.log"
    wrapper = tmp_path / "bin" / "tesseract"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--list-langs" ]; then exec {real} "$@"; fi\n'
        f"echo start >> {log}\n"
        f'{real} "$@"; status=$?\n'
        f"echo end >> {log}\n"
        "exit $status\n"
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(ocr, "MAX_WORKERS", 1)
    one_at_a_time = load_document(VICKSBURG, ocr="force")
    assert log.read_text().split() == ["start", "end"] * len(one_at_a_time.pages)
    log.unlink()
    monkeypatch.setattr(ocr, "MAX_WORKERS", 2)
    monkeypatch.setattr(ocr.os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    together = load_document(VICKSBURG, ocr="force")
    runs = log.read_text().split()
    assert runs.count("start") == len(together.pages) == 6
    # Some run started before the one before it ended.
    assert any(runs[i : i + 2] == ["start", "start"] for i in range(len(runs) - 1))
    assert [(p.number, p.text) for p in together.pages] == [
        (p.number, p.text) for p in one_at_a_time.pages
    ]


@needs_tesseract
def test_a_huge_page_is_rendered_at_a_capped_size(tmp_path: Path) -> None:
    pdf = pypdfium2.PdfDocument.new()
    pdf.new_page(14_400, 14_400)  # 200 x 200 inches: 3.6 billion pixels at 300 dpi
    image = ocr.render(pdf[0])
    assert image.width * image.height <= ocr.MAX_PIXELS


def test_text_pages_are_left_alone_in_auto_mode() -> None:
    text = load_document(PDFS / "real" / "1706.03762.pdf").pages[0].text
    assert needs_ocr(text, "auto") is None
    assert needs_ocr("", "auto") == "no text layer"
    assert needs_ocr(text, "force") and needs_ocr("", "off") is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "folder", [PDFS / "real", DATA / "financebench-dev" / "pdfs"], ids=["real", "financebench"]
)
def test_no_good_page_is_called_garbled(folder: Path) -> None:
    flagged = []
    for path in sorted(folder.glob("*.pdf")):
        if path == GARBLED:
            continue
        for page in load_document(path, ocr="off").pages:
            if reason := garbled(page.text):
                flagged.append((path.name, page.number, reason))
    assert flagged == []
