"""Card -> 2D training slices at the network's in-plane size, and the one resize both training and
inference use (so what the network sees at inference is what it saw in training)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.transforms import Compose, RandAdjustContrastd, RandAffined, RandCropByPosNegLabeld, RandFlipd, RandZoomd, SpatialPadd, ToTensord

from medsuite.data.cards import DataCard
from medsuite.data.datasets import SliceDataset, make_dataset
from medsuite.data.transforms import IMAGE, LABEL, resize
from medsuite.segmentation.config import SegmentationPipeline


def resize_images(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(B, C, H, W) float images to ``size``: the data layer's anti-aliased resize (ACDC's 256 px -> 128 px)."""
    return resize(x, size)


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


class RandPatchd(RandCropByPosNegLabeld):
    """One ``size`` patch of a (C, H, W) slice pair, centred on a labelled pixel half the time (native in-plane
    mode); MONAI's crop returns a list of samples, a slice dataset wants the one dict."""

    def __init__(self, size: Sequence[int]):
        super().__init__([IMAGE, LABEL], label_key=LABEL, spatial_size=tuple(size), pos=1, neg=1, num_samples=1, allow_smaller=True)

    def __call__(self, data, lazy=None):  # noqa: ANN001 - MONAI's signature
        with warnings.catch_warnings():  # slices above and below the heart have no label: a random patch is right there
            warnings.filterwarnings("ignore", message="Num foregrounds 0")
            return super().__call__(data, lazy=lazy)[0]


def slice_transform(config: SegmentationPipeline, train: bool) -> Compose:
    """Resize mode: the whole slice to image_size, then augment. Native mode: augment the whole slice on its own
    grid (so rotations never cut the heart), pad, then take one training patch."""
    keys = [IMAGE, LABEL]
    native = config.data.inplane == "native"
    # A slice cut from a volume carries the volume's 3D affine, which means nothing to 2D transforms: plain tensors.
    steps: list = [ToTensord(keys, track_meta=False, allow_missing_keys=True)]
    if not native:
        steps.append(SliceToNetwork(config.data.image_size))
    if train and config.train.augment:
        steps += [
            RandAffined(keys, prob=0.7, rotate_range=0.26, scale_range=0.15, translate_range=0 if native else 8, mode=("bilinear", "nearest"), padding_mode="zeros"),
            RandAdjustContrastd(IMAGE, prob=0.3, gamma=(0.7, 1.5)),
        ]
        low, high = config.train.zoom_range
        if (low, high) != (1.0, 1.0):  # pixel spacings differ between scanners: the same heart at other pixel sizes
            steps.append(RandZoomd(keys, prob=config.train.zoom_prob, min_zoom=low, max_zoom=high, mode=("bilinear", "nearest"), keep_size=True))
        if config.train.flips:
            steps += [RandFlipd(keys, prob=0.5, spatial_axis=0), RandFlipd(keys, prob=0.5, spatial_axis=1)]
    if native and train:
        steps += [SpatialPadd(keys, spatial_size=config.data.image_size), RandPatchd(config.data.image_size)]
    return Compose(steps)


def split_volumes(card: DataCard, config: SegmentationPipeline, split: str):
    """Loaded, normalised (1, H, W, S) volumes of one patient-level split, stack axis kept (no reorientation)."""
    patients = config.data.train_patients if split == "train" else None
    return make_dataset(card, split, root=config.data.root, cache=True, orientation=None, limit=config.data.limit, patients=patients)


def training_slices(card: DataCard, config: SegmentationPipeline) -> SliceDataset:
    return SliceDataset(split_volumes(card, config, "train"), transform=slice_transform(config, train=True))
