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


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A small untrained neU-Net: geometry and batch behaviour do not depend on the weights."""
    import torch

    from medsuite.checkpoints import save_checkpoint
    from medsuite.segmentation.config import SegmentationConfig
    from medsuite.segmentation.models import make_model

    config = SegmentationConfig.model_validate(
        {"data": {"image_size": [32, 32]}, "backbone": {"kind": "cnn", "spatial_dims": 2, "channels": [4, 8, 16], "strides": [2, 2, 2]}}
    )
    torch.manual_seed(0)
    model = make_model(config)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    return save_checkpoint(path, kind="segmentation", state=model.state_dict(), config=config.model_dump(mode="json"), card="acdc_h5")
