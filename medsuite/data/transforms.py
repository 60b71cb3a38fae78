"""The transform chains every pipeline reuses: load, channel first, orient, resample, normalise.

Built from MONAI dictionary transforms; the one loader MONAI lacks (ACDC's HDF5 volumes, which carry
no geometry) is written here.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import h5py
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Orientationd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    ScaleIntensityd,
    Spacingd,
)

from medsuite.data.cards import DataCard
from medsuite.data.checks import CheckLoadedd
from medsuite.errors import MedsuiteError

IMAGE, LABEL = "image", "label"


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
        try:
            with h5py.File(path, "r") as handle:
                for key in self.key_iterator(d):
                    array = np.asarray(handle[self.h5_keys.get(str(key), str(key))])
                    volume = np.transpose(array, (2, 1, 0))[None]  # (z,y,x) -> (1,x,y,z)
                    dtype = torch.float32 if key == IMAGE else torch.int64
                    meta = {"filename_or_obj": str(path), "index_space_only": True}
                    d[key] = MetaTensor(torch.as_tensor(volume, dtype=dtype), affine=torch.as_tensor(self.affine), meta=meta)
        except (OSError, KeyError) as exc:
            raise MedsuiteError(path, f"cannot read HDF5 volume ({exc})", "check the file is an ACDC-style HDF5 with the card's keys") from exc
        return d


def intensity_transform(modality: str, keys: Sequence[str] = (IMAGE,)) -> MapTransform:
    """Normalisation chosen by modality: CT in Hounsfield window, MR by robust percentiles, else min-max."""
    modality = modality.upper()
    if modality == "CT":
        return ScaleIntensityRanged(keys, a_min=-1000, a_max=1000, b_min=0.0, b_max=1.0, clip=True)
    if modality == "MR":
        return ScaleIntensityRangePercentilesd(keys, lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)
    return ScaleIntensityd(keys, minv=0.0, maxv=1.0)


def load_transforms(
    card: DataCard,
    *,
    with_label: bool = True,
    pixdim: Sequence[float] | None = None,
    normalise: bool = True,
    orientation: str | None = "RAS",
) -> Compose:
    """Load -> channel first -> orientation -> optional resampling -> intensity normalisation.

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
        steps.append(intensity_transform(card.acquisition.modalities[0]))
    steps.append(EnsureTyped(keys, dtype=[torch.float32, torch.int64][: len(keys)], track_meta=True))
    return Compose(steps)
