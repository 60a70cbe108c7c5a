"""The torch thread setting (applied once, process-wide, seen by threads started later) and the
device choice."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from rag.errors import ModelError
from rag.generation import EmbeddedLLM, TransformersLLM
from rag.models import pick_device, set_torch_threads
from rag.settings import Settings
from tests.conftest import REPO


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


def test_a_machine_without_an_nvidia_driver_is_cpu_without_importing_torch(tmp_path) -> None:
    # Importing torch takes seconds; `rag ingest` and `rag ask` on a CPU machine (int8 ONNX
    # embedder and reader) should not pay them just to learn there is no GPU.
    if any(Path(p).exists() for p in ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/dxg")):
        pytest.skip("this machine may have a GPU (an NVIDIA driver or WSL's): torch is asked")
    code = (
        "import sys; from rag.models import pick_device; "
        "print(pick_device('auto'), 'torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert out.stdout.split() == ["cpu", "False"]
    # Asking for CUDA outright still asks torch, and says no in one line.
    with pytest.raises(ModelError, match="no CUDA GPU is available"):
        pick_device("cuda")
