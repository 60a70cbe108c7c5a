"""On a machine with a GPU: the FAISS index and the embeddings there give the CPU's results.

Skipped, saying why, where there is no GPU (CI has none); run on a GPU machine with
`pytest tests/rag/test_gpu.py`.
"""

from __future__ import annotations

import numpy as np
import pytest

from rag.embedding import SentenceTransformerEmbedder
from rag.index import DenseIndex, IndexParams, gpu_count


@pytest.mark.skipif(gpu_count() == 0, reason="FAISS sees no GPU (faiss-cpu, or no CUDA device)")
def test_gpu_index_matches_cpu(squad_paragraphs, minilm) -> None:
    texts = [str(p["context"]) for p in squad_paragraphs[:500]]
    vectors = minilm.embed(texts)
    keys = np.arange(len(vectors), dtype=np.int64)
    cpu = DenseIndex.build(keys, vectors, IndexParams(kind="flat", use_gpu=False), 384)
    gpu = DenseIndex.build(keys, vectors, IndexParams(kind="flat", use_gpu=True), 384)
    assert gpu.on_gpu and not cpu.on_gpu
    cpu_scores, cpu_keys = cpu.search(vectors[:50], 10)
    gpu_scores, gpu_keys = gpu.search(vectors[:50], 10)
    np.testing.assert_array_equal(cpu_keys[:, 0], gpu_keys[:, 0])
    np.testing.assert_allclose(cpu_scores, gpu_scores, atol=1e-4)


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.skipif(not _cuda(), reason="no CUDA device")
def test_cuda_embeddings_match_cpu(squad_paragraphs, minilm) -> None:
    texts = [str(p["context"]) for p in squad_paragraphs[:64]]
    on_gpu = SentenceTransformerEmbedder(minilm.name, device="cuda").embed(texts)
    np.testing.assert_allclose(on_gpu, minilm.embed(texts), atol=1e-3)
