"""An experimental ingest variant for benchmarks/ingest_throughput.py, not in the product.

OpenVINO static int8 (NNCF post-training quantisation; needs `pip install openvino nncf`) as the
embedder. (PDFium for page text, the other experiment here once, is the product's default now:
ingest/pdf.py.) Heavy imports are inside the functions, so importing this module costs nothing
until a variant runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ingest_runners import MODEL, ROOT, run_rag

# --- experimental: OpenVINO static int8 (not in the product; needs openvino and nncf) --------

OV_CACHE = Path.home() / ".cache" / "rag" / "bench-openvino"
OV_CALIBRATION = 64  # SciFact abstracts, from record 3000 on: not the PDFs being measured


def openvino_int8_model() -> Path:
    """An OpenVINO IR of MiniLM (pooling and normalisation included), int8 by NNCF's static
    post-training quantisation; built once into OV_CACHE."""
    target = OV_CACHE / f"minilm-int8-cal{OV_CALIBRATION}.xml"
    if target.is_file():
        return target
    import logging

    import nncf
    import openvino as ov
    import torch
    from sentence_transformers import SentenceTransformer

    from rag.models import packaged_path

    nncf.set_log_level(logging.ERROR)
    folder = str(packaged_path(MODEL))
    model = SentenceTransformer(
        folder, device="cpu", model_kwargs={"attn_implementation": "eager"}
    ).eval()
    names = ("input_ids", "attention_mask", "token_type_ids")

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.model(dict(zip(names, tensors, strict=True)))["sentence_embedding"]

    sample = model.tokenizer(["an example sentence", "two"], padding=True, return_tensors="pt")
    converted = ov.convert_model(Pipeline().eval(), example_input=tuple(sample[n] for n in names))
    for port, name in zip(converted.inputs, names, strict=True):
        port.get_tensor().set_names({name})
    records = (
        (ROOT / "../shared/data/scifact/corpus.jsonl").read_text(encoding="utf-8").splitlines()
    )
    texts = [
        f"{r['title']}\n\n{r['text']}"
        for r in map(json.loads, records[3000 : 3000 + OV_CALIBRATION])
    ]
    batches = []
    for start in range(0, len(texts), 8):
        encoded = model.tokenizer(
            texts[start : start + 8],
            padding=True,
            truncation=True,
            max_length=256,
            return_tensors="np",
        )
        batches.append({n: encoded[n].astype("int64") for n in names})
    quantized = nncf.quantize(
        converted,
        nncf.Dataset(batches),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(batches),
    )
    OV_CACHE.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(target))
    model.tokenizer.save_pretrained(str(OV_CACHE))
    return target


class OpenVinoEmbedder:
    """The Embedder protocol over an OpenVINO IR; batches cut by token length, as in the product's
    ONNX backends."""

    def __init__(self, xml: Path, batch_size: int = 64) -> None:
        import openvino as ov
        from transformers import AutoTokenizer

        self.name = MODEL
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(str(xml.parent))
        compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self.request = compiled.create_infer_request()

    @property
    def dimension(self) -> int:
        return 384

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        ids = self.tokenizer(texts, truncation=True, max_length=256)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        out = np.empty((len(ids), 384), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = len(ids[rows[0]])
            input_ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                input_ids[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = 1
            feeds = {
                "input_ids": input_ids,
                "attention_mask": mask,
                "token_type_ids": np.zeros_like(mask),
            }
            out[rows] = next(iter(self.request.infer(feeds).values()))
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def run_openvino_int8(pdfs: list[Path], workdir: Path) -> dict[str, Any]:
    """The project's job with the experimental OpenVINO int8 embedder passed in."""
    return run_rag(pdfs, workdir, embedder_factory=lambda: OpenVinoEmbedder(openvino_int8_model()))
