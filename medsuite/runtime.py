"""One runtime policy for every command: CPU threads, device and seed.

``configure_runtime`` is the only place that sets thread counts: torch's intra-op pool, SimpleITK's global
default (its filters and registration), the OpenMP/BLAS pools numpy and scipy use (through threadpoolctl),
and the OpenMP/MKL environment that subprocesses inherit. The default is every core this process may run
on, as ITK and ANTs do.
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

from medsuite.errors import MedsuiteError

# Read by OpenMP, MKL and OpenBLAS when they start: only child processes still benefit from these.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which a batch scheduler narrows), else all cores;
    under torchrun, this process's share of them (LOCAL_WORLD_SIZE processes share the node's cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        cores = os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' takes CUDA when present, else the CPU; asking for CUDA without one is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise MedsuiteError("--device", "cuda was asked for but no CUDA device is available", "use --device cpu or auto")
    if name not in {"cpu", "cuda"}:
        raise MedsuiteError("--device", f"unknown device {name!r}", "use auto, cpu or cuda")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """One seed for python, numpy and torch; deterministic cuDNN kernels.

    The seeds and flags of ``monai.utils.set_determinism(seed)``, set here so that a command which only seeds
    need not import MONAI (~3 s per process). Where MONAI is loaded (the training and data pipelines), its own
    ``set_determinism`` runs instead: MONAI's ``Compose`` and datasets seed their random transforms from it."""
    if "monai" in sys.modules:
        from monai.utils import set_determinism

        set_determinism(seed=seed)
        return
    seed = int(seed) % (np.iinfo(np.uint32).max + 1)  # MONAI's MAX_SEED: numpy takes 32-bit seeds
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def set_threads(threads: int | None = None) -> int:
    """Use ``threads`` CPU threads (default: every available core) in torch, SimpleITK, OpenMP and BLAS."""
    import SimpleITK as sitk
    from threadpoolctl import threadpool_limits

    count = available_cores() if threads is None else int(threads)
    if count < 1:
        raise MedsuiteError("--threads", f"must be at least 1, got {threads}", "give a positive thread count or leave it out for all cores")
    torch.set_num_threads(count)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(count)
    threadpool_limits(count)  # numpy/scipy's BLAS and OpenMP pools already loaded in this process
    for name in THREAD_ENV:
        os.environ[name] = str(count)
    return count


def runtime_summary() -> dict[str, int]:
    """The thread counts in force, for report.json (what ``--threads`` gave each library)."""
    import SimpleITK as sitk

    return {"torch_threads": torch.get_num_threads(), "simpleitk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()}


def configure_runtime(threads: int | None = None, device: str = "auto", seed: int | None = None) -> torch.device:
    """Apply the thread policy, validate and return the device, and seed everything when ``seed`` is given.

    Every model-running command calls this once, first, with its ``--threads``, ``--device`` and ``--seed``.
    """
    chosen = resolve_device(device)
    set_threads(threads)
    if seed is not None:
        seed_everything(seed)
    return chosen
