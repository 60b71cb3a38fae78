"""Shared fixtures: where ../shared/data is (tests using it skip when absent), small generated volumes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from medsuite.data.samples import oblique_affine

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MEDSUITE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, or skip the calling test when it is not on this machine."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present (shared sample data is optional)")
    return path


@pytest.fixture
def oblique_volume() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.normal(100.0, 20.0, size=(12, 10, 6)).astype(np.float32), oblique_affine()
