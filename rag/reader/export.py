"""The trained reader as ONNX, float32 or int8, with its tokenizer and a description.

    export_reader(Path(".cache/reader-train/torch"), Path("rag/reader/model"), quantize=True)

The export follows the bi-encoder's (rag/embedding.py): torch.onnx with eager attention, opset 17,
ONNX Runtime's BERT fusions, then dynamic int8 quantisation of the weights, one scale per output
channel. The folder then holds `model.onnx`, the tokenizer files and `reader.json`; nothing in it
needs torch to run.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from rag.embedding import fuse_bert_graph, quantize_int8
from rag.errors import ModelError

META_FILE = "reader.json"
# The longest answer the reader proposes, in tokens (SQuAD answers: 95 % within 12 tokens).
MAX_ANSWER_TOKENS = 30
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_reader(
    source: Path, out: Path, quantize: bool, max_length: int = 384, stride: int = 128
) -> Path:
    """Write the model of `source` (a transformers question-answering folder) into `out`."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    try:
        model = AutoModelForQuestionAnswering.from_pretrained(
            str(source), attn_implementation="eager"
        ).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(source), use_fast=True)
    except Exception as e:
        raise ModelError(f"cannot load the reader from {source} for export: {e}") from e
    out.mkdir(parents=True, exist_ok=True)
    sample = tokenizer(["a question?"], ["a passage to read"], return_tensors="pt")

    class Logits(torch.nn.Module):
        """The model with plain tensor outputs, which torch.onnx traces."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
        ) -> tuple[torch.Tensor, torch.Tensor]:
            result = self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return result.start_logits, result.end_logits

    raw = out / "raw.onnx"
    axes: dict[str, dict[int, str]] = {key: {0: "batch", 1: "tokens"} for key in _INPUTS}
    axes.update({name: {0: "batch", 1: "tokens"} for name in ("start_logits", "end_logits")})
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about shape-dependent branches
            torch.onnx.export(
                Logits().eval(),
                tuple(sample[key] for key in _INPUTS),
                str(raw),
                dynamo=False,
                opset_version=17,
                input_names=list(_INPUTS),
                output_names=["start_logits", "end_logits"],
                dynamic_axes=axes,
            )
    except Exception as e:
        raise ModelError(f"cannot export the reader at {source} to ONNX: {e}") from e
    fused = fuse_bert_graph(raw, out / "fused.onnx", model.config) or raw
    final = out / "model.onnx"
    if quantize:
        quantize_int8(fused, final)
    else:
        fused.replace(final)
    for leftover in (raw, out / "fused.onnx"):
        leftover.unlink(missing_ok=True)
    tokenizer.save_pretrained(str(out))
    meta: dict[str, Any] = {
        "base": "sentence-transformers/all-MiniLM-L6-v2",
        "quantized": quantize,
        "max_length": max_length,
        "stride": stride,
        "max_answer_tokens": MAX_ANSWER_TOKENS,
        "inputs": list(_INPUTS),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out
