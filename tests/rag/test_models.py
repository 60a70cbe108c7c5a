"""The torch thread setting: applied once, process-wide, seen by threads started later."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from rag.generation import EmbeddedLLM, TransformersLLM
from rag.models import set_torch_threads
from rag.settings import Settings


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_set_torch_threads_reaches_later_worker_threads(restore_threads: int) -> None:
    set_torch_threads(None)
    assert torch.get_num_threads() == restore_threads
    set_torch_threads(1)
    assert torch.get_num_threads() == 1
    # The batch runs generation in worker threads: they must use the same count.
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(torch.get_num_threads).result() == 1


def test_local_llm_backends_apply_the_setting(restore_threads: int, tmp_path) -> None:
    settings = Settings.load(torch_threads=1, llm_model=str(tmp_path))
    EmbeddedLLM.from_settings(settings)  # cheap: nothing is loaded yet
    assert torch.get_num_threads() == 1
    torch.set_num_threads(restore_threads)
    TransformersLLM.from_settings(settings)
    assert torch.get_num_threads() == 1
