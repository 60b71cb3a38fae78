"""The one runtime policy: --threads reaches torch, SimpleITK and the BLAS/OpenMP pools; default all cores."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import SimpleITK as sitk
import torch

from medsuite.errors import MedsuiteError
from medsuite.runtime import available_cores, configure_runtime


@pytest.fixture(autouse=True)
def _restore_threads():
    torch_threads, itk_threads = torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    saved_env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    yield
    torch.set_num_threads(torch_threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(itk_threads)
    for key, value in saved_env.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def test_two_threads_reach_torch_simpleitk_and_the_environment():
    device = configure_runtime(2, "cpu")
    assert device == torch.device("cpu")
    assert torch.get_num_threads() == 2
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 2
    assert os.environ["OMP_NUM_THREADS"] == "2"


def test_default_is_every_available_core():
    configure_runtime()
    assert torch.get_num_threads() == available_cores()
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == available_cores()


def test_bad_thread_count_and_device_are_one_line_errors():
    with pytest.raises(MedsuiteError, match="--threads"):
        configure_runtime(0)
    with pytest.raises(MedsuiteError, match="unknown device"):
        configure_runtime(1, "tpu")


def test_register_threads_option_is_honoured_by_simpleitk_and_torch(tmp_path):
    """The CLI path: `--threads 2` before any work (probed through the command's runtime call)."""
    probe = (
        "import SimpleITK as sitk, torch, medsuite.runtime as r\n"
        "r.configure_runtime(2, 'cpu')\n"
        "print(torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads())\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.split() == ["2", "2"]
