"""The transform chains every pipeline reuses: load, channel first, orient, resample, normalise.

Built from MONAI dictionary transforms. Three array-level pieces live here so that every pipeline's
training and inference share one copy: ``normalise_intensity`` (with the ``IntensityRule`` a checkpoint
stores), the anti-aliased in-plane ``resize``, and ``read_h5_volume`` for ACDC's HDF5 volumes (which
carry no geometry, so MONAI has no loader for them).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged, MapTransform, Orientationd, ScaleIntensityRange, Spacingd
from monai.transforms.utils_pytorch_numpy_unification import percentile
from pydantic import BaseModel, ConfigDict, Field

from medsuite.data.cards import DataCard
from medsuite.errors import MedsuiteError

IMAGE, LABEL = "image", "label"
Array = np.ndarray | torch.Tensor


class IntensityRule(BaseModel):
    """How raw intensities become network inputs; stored in each checkpoint's config so inference
    normalises exactly as training did.

    - ``percentile``: ``lower``/``upper`` are percentiles (of the non-zero voxels when ``nonzero``), mapped to 0 and 1;
    - ``window``: ``lower``/``upper`` are intensities (e.g. Hounsfield units), mapped to 0 and 1;
    - ``minmax``: the array's minimum and maximum, mapped to 0 and 1;
    - ``none``: kept as stored (data already scaled to [0, 1], such as ACDC's HDF5 volumes).

    ``clip`` bounds the scaled values (``None``: no bound). A constant image becomes 0.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["percentile", "window", "minmax", "none"] = "percentile"
    lower: float = Field(0.5, description="percentile (kind percentile) or intensity (kind window) mapped to 0")
    upper: float = Field(99.5, description="percentile (kind percentile) or intensity (kind window) mapped to 1")
    nonzero: bool = Field(False, description="percentiles and min/max over non-zero voxels only (skull-stripped or zero-padded images)")
    clip: tuple[float, float] | None = Field((0.0, 1.0), description="clip the scaled values to this range; null keeps overshoot")


# One documented rule per modality; a pipeline may override it in its YAML (``intensity:``).
MODALITY_RULES: dict[str, IntensityRule] = {
    "MR": IntensityRule(kind="percentile", lower=0.5, upper=99.5),  # robust to a few very bright voxels (vessels, fat)
    "CT": IntensityRule(kind="window", lower=-1000.0, upper=1000.0),  # air to dense bone, in Hounsfield units
}
DEFAULT_RULE = IntensityRule(kind="minmax")  # any other modality (US, FA, ICGA, photographs)


def rule_for_modality(modality: str) -> IntensityRule:
    return MODALITY_RULES.get(modality.upper(), DEFAULT_RULE)


def intensity_bounds(array: Array, rule: IntensityRule) -> tuple[Any, Any]:
    """The intensities ``rule`` maps to 0 and 1 in this array (0-d tensors or numpy scalars)."""
    if rule.kind == "window":
        return rule.lower, rule.upper
    values = array
    if rule.nonzero:
        selected = array[array != 0]
        if len(selected):  # an all-zero image falls back to every voxel
            values = selected
    if rule.kind == "minmax":
        return values.min(), values.max()
    # MONAI's percentile (torch.quantile, numpy beyond 1e6 voxels): identical to ScaleIntensityRangePercentiles
    return percentile(values, rule.lower), percentile(values, rule.upper)


def normalise_intensity(array: Array, rule: IntensityRule) -> Array:
    """``array`` scaled by ``rule`` as float32, the same type (numpy or torch) as given."""
    if rule.kind == "none":
        return array.float() if isinstance(array, torch.Tensor) else np.asarray(array, dtype=np.float32)
    low, high = intensity_bounds(array, rule)
    if not float(high) > float(low):
        high = low + 1.0  # a constant image: every voxel becomes 0 instead of a division by zero
    scaled = ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=False, dtype=np.float32)(array)
    if rule.clip is not None:
        scaled = scaled.clamp(*rule.clip) if isinstance(scaled, torch.Tensor) else np.clip(scaled, *rule.clip)
    if isinstance(array, torch.Tensor):
        return scaled if isinstance(scaled, torch.Tensor) else torch.as_tensor(scaled)
    return np.asarray(scaled, dtype=np.float32)


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
