"""Card -> 2D training slices at the network's in-plane size, and the one resize both training and
inference use (so what the network sees at inference is what it saw in training)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.data import CacheDataset
from monai.transforms import (
    Compose,
    Rand2DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleIntensityd,
    RandScaleIntensityFixedMeand,
    RandSimulateLowResolutiond,
    RandZoomd,
    SpatialPadd,
    ToTensord,
)
from sklearn.model_selection import KFold

from medsuite.data.cards import DataCard
from medsuite.data.datasets import (
    SliceDataset,
    discover_records,
    make_dataset,
    split_records,
)
from medsuite.data.transforms import (
    IMAGE,
    LABEL,
    IntensityRule,
    load_transforms,
    resize,
    rule_for_modality,
)
from medsuite.errors import MedsuiteError
from medsuite.segmentation.config import SegmentationConfig


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

    def __call__(self, data, lazy=None):
        with warnings.catch_warnings():  # slices above and below the heart have no label: a random patch is right there
            warnings.filterwarnings("ignore", message="Num foregrounds 0")
            return super().__call__(data, lazy=lazy)[0]


def slice_transform(config: SegmentationConfig, train: bool) -> Compose:
    """Resize mode: the whole slice to image_size, then augment. Native mode: augment the whole slice on its own
    grid (so rotations never cut the heart), pad, then take one training patch."""
    keys = [IMAGE, LABEL]
    native = config.data.inplane == "native"
    # A slice cut from a volume carries the volume's 3D affine, which means nothing to 2D transforms: plain tensors.
    steps: list = [ToTensord(keys, track_meta=False, allow_missing_keys=True)]
    if not native:
        steps.append(SliceToNetwork(config.data.image_size))
    if train and config.train.augment:
        steps += nnunet_augmentation(native) if config.train.augmentation == "nnunet" else basic_augmentation(native)
        low, high = config.train.zoom_range
        if (low, high) != (1.0, 1.0):  # pixel spacings differ between scanners: the same heart at other pixel sizes
            steps.append(RandZoomd(keys, prob=config.train.zoom_prob, min_zoom=low, max_zoom=high, mode=("bilinear", "nearest"), keep_size=True))
        if config.train.flips:
            steps += [RandFlipd(keys, prob=0.5, spatial_axis=0), RandFlipd(keys, prob=0.5, spatial_axis=1)]
    if native and train:
        steps += [SpatialPadd(keys, spatial_size=config.data.image_size), RandPatchd(config.data.image_size)]
    return Compose(steps)


def basic_augmentation(native: bool) -> list:
    keys = [IMAGE, LABEL]
    return [
        RandAffined(keys, prob=0.7, rotate_range=0.26, scale_range=0.15, translate_range=0 if native else 8, mode=("bilinear", "nearest"), padding_mode="zeros"),
        RandAdjustContrastd(IMAGE, prob=0.3, gamma=(0.7, 1.5)),
    ]


def nnunet_augmentation(native: bool) -> list:
    """nnU-Net v2's default 2D augmentation, with its probabilities, in MONAI transforms on [0, 1] images:
    spatial first (on the whole slice, so nothing is cut before the patch is taken), then intensity."""
    keys, modes = [IMAGE, LABEL], ("bilinear", "nearest")
    return [
        RandAffined(keys, prob=0.3, rotate_range=math.pi, scale_range=((-0.3, 0.4), (-0.3, 0.4)), translate_range=0 if native else 8, mode=modes, padding_mode="zeros"),
        Rand2DElasticd(keys, prob=0.2, spacing=(24, 24), magnitude_range=(0.5, 2.0), mode=modes, padding_mode="zeros"),
        RandGaussianNoised(IMAGE, prob=0.1, std=0.03),  # 0-0.1 variance of z-scored data: ~0.03 on [0, 1]
        RandGaussianSmoothd(IMAGE, prob=0.2, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0)),
        RandScaleIntensityd(IMAGE, prob=0.15, factors=0.25),  # brightness: x 0.75-1.25
        RandScaleIntensityFixedMeand(IMAGE, prob=0.15, factors=0.25, preserve_range=True),  # contrast
        RandSimulateLowResolutiond(IMAGE, prob=0.25, zoom_range=(0.5, 1.0), downsample_mode="nearest", upsample_mode="bilinear"),
        RandAdjustContrastd(IMAGE, prob=0.1, gamma=(0.7, 1.5), invert_image=True, retain_stats=True),
        RandAdjustContrastd(IMAGE, prob=0.3, gamma=(0.7, 1.5), retain_stats=True),
        RandBiasFieldd(IMAGE, prob=0.15, coeff_range=(0.0, 0.1)),
    ]


def fold_patients(card: DataCard, records: list[dict], folds: int, fold: int) -> dict[str, list[str]]:
    """Patient-level K-fold over the card's train split (its val and test patients stay out): the fold's
    train and val patients, shuffled by the card's split seed."""
    patients = sorted({r["patient"] for r in split_records(card, records)["train"]})
    if len(patients) < folds:
        raise MedsuiteError(card.id, f"{len(patients)} train patients cannot make {folds} folds", "lower data.folds")
    train_index, val_index = list(KFold(n_splits=folds, shuffle=True, random_state=card.split.seed).split(patients))[fold]
    return {"train": [patients[i] for i in train_index], "val": [patients[i] for i in val_index]}


def intensity_rule(config: SegmentationConfig, card: DataCard) -> IntensityRule:
    """The normalisation a model trains and predicts with: its config's, else the card's modality rule."""
    return config.data.intensity or rule_for_modality(card.acquisition.modalities[0])


def split_volumes(card: DataCard, config: SegmentationConfig, split: str):
    """Loaded, normalised (1, H, W, S) volumes of one patient-level split, stack axis kept (no reorientation);
    with ``data.fold`` set, train and val are that fold's."""
    patients = config.data.train_patients if split == "train" else None
    transform = load_transforms(card, orientation=None, rule=intensity_rule(config, card))
    if config.data.fold is None or split == "test":
        return make_dataset(card, split, root=config.data.root, transform=transform, cache=True, limit=config.data.limit, patients=patients)
    records = discover_records(card, config.data.root)
    chosen = set(fold_patients(card, records, config.data.folds, config.data.fold)[split])
    kept = [r for r in records if r["patient"] in chosen]
    if patients is not None:
        kept = [r for r in kept if r["patient"] in list(dict.fromkeys(r["patient"] for r in kept))[:patients]]
    return CacheDataset(kept[: config.data.limit], transform=transform, num_workers=0, progress=False)


def training_slices(card: DataCard, config: SegmentationConfig) -> SliceDataset:
    return SliceDataset(split_volumes(card, config, "train"), transform=slice_transform(config, train=True))
