"""Training pairs for ``medsuite train registration``: generated on the embedded brain, or from a data card.

A pair is three (1, 1, X, Y, Z) tensors on the fixed image's grid at the training resolution: the fixed
image, the moving image brought onto it (by the known world affines for generated pairs, by medsuite's
affine pre-alignment for real ones: training teaches the deformable part), and the moving image's
lesion/label map (zeros when the card has none). Labels are for evaluation only; training never sees them.

A card of layout kind ``nifti_folders`` lists real pairs. Its ``layout.keys``: ``images_dir`` (the moving
scans, default ``images``), ``labels_dir`` (their lesion maps, optional, paired by file name, default
``labels``), and either ``fixed`` (one fixed image, e.g. an atlas, for every scan) or ``fixed_dir`` (one fixed
image per scan, paired by file name). Paths are relative to the card's data root.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from medsuite.data.cards import DataCard, load_card
from medsuite.data.datasets import discover_records
from medsuite.data.samples import target_grid
from medsuite.data.intensity import normalise_intensity
from medsuite.data.transforms import IMAGE, LABEL
from medsuite.errors import MedsuiteError
from medsuite.io import Volume, read_3d
from medsuite.registration.config import RegistrationConfig
from medsuite.registration.prealign import affine_prealign
from medsuite.registration.spatial import resample_moving

Pair = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
GENERATED_LAYOUTS = ("embedded_mni152", "synthetic")


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]


def regrid(volume: Volume, resolution_mm: float) -> Volume:
    """An empty volume over the same field of view and axes with ``resolution_mm`` voxels (a resampling target)."""
    shape, affine, _ = target_grid(volume.spatial_shape, volume.affine, resolution_mm)
    return Volume(np.zeros(shape, np.float32), affine)


def generated_pairs(config: RegistrationConfig) -> list[Pair]:
    """``config.train.pairs`` MNI152 pathological pairs (seeds 1000 + 1000 * seed + i) at the training resolution."""
    from medsuite.data.samples import make_pathological_pair
    pairs = []
    identity = sitk.AffineTransform(3)  # the pair's own affines undo its world rotation
    for index in range(config.train.pairs):
        pair = make_pathological_pair(1000 + config.train.seed * 1000 + index, resolution_mm=config.train.resolution_mm)
        moving = resample_moving(pair.moving, pair.fixed, identity)
        lesion = resample_moving(pair.lesion_mask, pair.fixed, identity, nearest=True)
        pairs.append((_tensor(normalise_intensity(pair.fixed.array, config.intensity)), _tensor(normalise_intensity(moving, config.intensity)), _tensor(lesion)))
    return pairs


def card_pairs(card: DataCard, root: str | Path | None, config: RegistrationConfig) -> list[Pair]:
    """The card's (fixed, moving, labels) files, pre-aligned and resampled, at most ``config.train.pairs``."""
    data_root = card.data_root(root)
    keys = card.layout.keys
    if ("fixed" in keys) == ("fixed_dir" in keys):
        raise MedsuiteError(card.id, "a registration card needs exactly one of layout.keys fixed / fixed_dir", "name one fixed image for all scans, or a folder of fixed images paired by name")
    records = discover_records(card, data_root)[: config.train.pairs]
    identity = sitk.AffineTransform(3)
    pairs = []
    for record in records:
        moving_path = Path(record[IMAGE])
        fixed_path = data_root / keys["fixed"] if "fixed" in keys else data_root / keys["fixed_dir"] / moving_path.name
        fixed, moving = read_3d(fixed_path), read_3d(moving_path)
        grid = regrid(fixed, config.train.resolution_mm)
        prealign = affine_prealign(fixed, moving, iterations=config.prealign_iterations, seed=config.train.seed)
        moved = resample_moving(moving, grid, prealign)
        labels = np.zeros(grid.spatial_shape, np.float32)
        if LABEL in record:
            labels = resample_moving(read_3d(record[LABEL]), grid, prealign, nearest=True)
        fixed_array = resample_moving(fixed, grid, identity)
        pairs.append((_tensor(normalise_intensity(fixed_array, config.intensity)), _tensor(normalise_intensity(moved, config.intensity)), _tensor(labels > 0)))
    return pairs


def training_pairs(config: RegistrationConfig, root: str | Path | None = None) -> list[Pair]:
    """Pairs of the pipeline's data card: generated for the embedded/synthetic cards, else read from disk."""
    card = load_card(config.data_card)
    if card.layout.kind in GENERATED_LAYOUTS:
        return generated_pairs(config)
    return card_pairs(card, root, config)
