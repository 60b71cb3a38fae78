"""Card -> 2D training slices at the network's in-plane size, and the one resize both training and
inference use (so what the network sees at inference is what it saw in training)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.transforms import Compose, RandAdjustContrastd, RandAffined, RandFlipd

from medsuite.data.cards import DataCard
from medsuite.data.datasets import SliceDataset, make_dataset
from medsuite.data.transforms import IMAGE, LABEL
from medsuite.segmentation.config import SegmentationPipeline


def resize_images(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, C, H, W) float images to ``size``: bilinear with anti-aliasing (ACDC's 256 px -> 128 px)."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)


def resize_logits(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Network logits back to the input's in-plane grid (interpolate scores, then argmax: smooth edges)."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def resize_labels(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x.float(), size=tuple(size), mode="nearest").long()


class SliceToNetwork:
    """Resize one (C, H, W) slice pair to the network's in-plane size."""

    def __init__(self, size: Sequence[int]):
        self.size = tuple(size)

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        out = dict(item)
        out[IMAGE] = resize_images(torch.as_tensor(item[IMAGE])[None].float(), self.size)[0]
        if LABEL in item:
            out[LABEL] = resize_labels(torch.as_tensor(item[LABEL])[None], self.size)[0]
        return out


def slice_transform(config: SegmentationPipeline, train: bool) -> Compose:
    steps: list = [SliceToNetwork(config.data.image_size)]
    if train and config.train.augment:
        keys = [IMAGE, LABEL]
        steps += [
            RandAffined(keys, prob=0.7, rotate_range=0.26, scale_range=0.15, translate_range=8, mode=("bilinear", "nearest"), padding_mode="zeros"),
            RandAdjustContrastd(IMAGE, prob=0.3, gamma=(0.7, 1.5)),
        ]
        if config.train.flips:
            steps += [RandFlipd(keys, prob=0.5, spatial_axis=0), RandFlipd(keys, prob=0.5, spatial_axis=1)]
    return Compose(steps)


def split_volumes(card: DataCard, config: SegmentationPipeline, split: str):
    """Loaded, normalised (1, H, W, S) volumes of one patient-level split, stack axis kept (no reorientation)."""
    return make_dataset(card, split, root=config.data.root, cache=True, orientation=None, limit=config.data.limit)


def training_slices(card: DataCard, config: SegmentationPipeline) -> SliceDataset:
    return SliceDataset(split_volumes(card, config, "train"), transform=slice_transform(config, train=True))
