"""The transform chains every pipeline reuses: load, channel first, orient, resample, normalise.

Built from MONAI dictionary transforms. Two array-level pieces live here so that every pipeline's
training and inference share one copy: the anti-aliased in-plane ``resize``, and ``read_h5_volume`` for
ACDC's HDF5 volumes (which carry no geometry, so MONAI has no loader for them). The intensity rule and
``normalise_intensity`` live in the MONAI-free ``medsuite.data.intensity``; ``NormaliseIntensityd`` wraps it.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, MapTransform, Orientationd, Spacingd

from medsuite.data.cards import DataCard
from medsuite.data.checks import CheckLoadedd
from medsuite.data.intensity import Array, IntensityRule, normalise_intensity, rule_for_modality
from medsuite.errors import MedsuiteError

IMAGE, LABEL = "image", "label"


class NormaliseIntensityd(MapTransform):
    """Dictionary form of ``normalise_intensity`` for the load chains (keeps MetaTensor metadata)."""

    def __init__(self, keys: Sequence[str], rule: IntensityRule):
        super().__init__(keys)
        self.rule = rule

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = normalise_intensity(d[key], self.rule)
        return d


def resize(x: Array, size: Sequence[int], *, labels: bool = False) -> Array:
    """2D in-plane resize of (..., H, W) images: bilinear with anti-aliasing (so 256 px -> 128 px does not
    alias), or nearest for label maps. Numpy in, numpy out; torch in, torch out."""
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    tensor = torch.as_tensor(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    lead = tensor.shape[:-2]
    flat = tensor.reshape(1, -1, *tensor.shape[-2:])
    if labels:
        out = F.interpolate(flat.float(), size=size, mode="nearest").to(tensor.dtype)
    else:
        out = F.interpolate(flat.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    out = out.reshape(*lead, *size)
    return out.numpy() if isinstance(x, np.ndarray) else out


def read_h5_volume(path: str, key: str) -> np.ndarray:
    """One array of an ACDC-style HDF5 file, in the (x, y, z) index order nibabel and ITK give the same scan.

    ACDC's HDF5 volumes were written from SimpleITK arrays, whose axes are (z, y, x); reversing them means
    a model trained on these files sees a NIfTI's slices the same way up (not transposed).
    """
    try:
        with h5py.File(path, "r") as handle:
            array = np.asarray(handle[key])
    except (OSError, KeyError) as exc:
        raise MedsuiteError(path, f"cannot read HDF5 volume {key!r} ({exc})", "check the file is an ACDC-style HDF5 with the card's keys") from exc
    if array.ndim != 3:
        raise MedsuiteError(path, f"HDF5 volume {key!r} is {array.ndim}D, not 3D", "store one (slices, rows, cols) volume per key")
    return np.transpose(array, (2, 1, 0))


class LoadH5Volumed(MapTransform):
    """Read ``image``/``label`` arrays stored (slices, rows, cols) in HDF5 into (1, cols, rows, slices).

    ACDC's HDF5 volumes were written from SimpleITK arrays, whose axes are (z, y, x); reversing them gives
    the (x, y, z) index order that nibabel and ITK use for the same scan as NIfTI, so a model trained on
    these files sees a NIfTI's slices the same way up (not transposed).

    No geometry is stored in these files, so the affine is the card's nominal spacing (or identity)
    and ``meta['index_space_only']`` says so; nothing downstream may treat it as scanner space.
    """

    def __init__(self, keys: Sequence[str], h5_keys: Mapping[str, str], spacing_mm: Sequence[float] | None = None):
        super().__init__(keys)
        self.h5_keys = dict(h5_keys)
        self.affine = np.diag([*(spacing_mm or (1.0, 1.0, 1.0)), 1.0])

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        path = d[IMAGE]
        for key in self.key_iterator(d):
            volume = read_h5_volume(path, self.h5_keys.get(str(key), str(key)))[None]  # (1, x, y, z)
            dtype = torch.float32 if key == IMAGE else torch.int64
            meta = {"filename_or_obj": str(path), "index_space_only": True}
            d[key] = MetaTensor(torch.as_tensor(volume, dtype=dtype), affine=torch.as_tensor(self.affine), meta=meta)
        return d


def intensity_transform(modality: str, keys: Sequence[str] = (IMAGE,), rule: IntensityRule | None = None) -> MapTransform:
    """The load chains' normalisation step: ``rule``, or the modality's documented rule."""
    return NormaliseIntensityd(keys, rule or rule_for_modality(modality))


def load_transforms(
    card: DataCard,
    *,
    with_label: bool = True,
    pixdim: Sequence[float] | None = None,
    normalise: bool = True,
    orientation: str | None = "RAS",
    rule: IntensityRule | None = None,
) -> Compose:
    """Load -> channel first -> orientation -> optional resampling -> intensity normalisation (``rule``, default
    the card's first modality's rule).

    ``orientation=None`` keeps the acquisition's axes: a short-axis stack must stay a stack of slices
    along its last axis for 2D work, which reorienting an oblique stack to RAS would scramble.
    """
    keys = [IMAGE, LABEL] if with_label and card.label_map else [IMAGE]
    steps: list[MapTransform] = []
    if card.layout.kind == "acdc_h5":
        steps.append(LoadH5Volumed(keys, card.layout.keys, card.geometry.nominal_spacing_mm))
    else:
        steps += [LoadImaged(keys, image_only=True), EnsureChannelFirstd(keys)]
    steps.append(CheckLoadedd(IMAGE, LABEL if LABEL in keys else None))
    if not card.geometry.index_space_only:
        if orientation is not None:
            steps.append(Orientationd(keys, axcodes=orientation, labels=None))
        if pixdim is not None:
            modes = ["bilinear", "nearest"][: len(keys)]
            steps.append(Spacingd(keys, pixdim=pixdim, mode=modes))
    if normalise:
        steps.append(intensity_transform(card.acquisition.modalities[0], rule=rule))
    steps.append(EnsureTyped(keys, dtype=[torch.float32, torch.int64][: len(keys)], track_meta=True))
    return Compose(steps)
