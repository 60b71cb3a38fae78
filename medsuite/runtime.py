"""Device choice and seeding, shared by every command."""

from __future__ import annotations

import torch
from monai.utils import set_determinism

from medsuite.errors import MedsuiteError


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
    """One seed for python, numpy and torch; deterministic algorithms where torch has them."""
    set_determinism(seed=seed)
