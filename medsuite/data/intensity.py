"""Intensity normalisation: the ``IntensityRule`` a checkpoint stores, and ``normalise_intensity``.

Kept free of MONAI so commands that only normalise (``medsuite register`` without a model) need not import
it: MONAI's import costs ~3 s per process. The torch branch repeats MONAI's ``percentile`` and
``ScaleIntensityRange`` arithmetic step for step, so the MONAI load chains (``NormaliseIntensityd`` in
``medsuite.data.transforms`` calls this module) give the same bits as ``ScaleIntensityRangePercentilesd``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

Array = np.ndarray | torch.Tensor

# Above this many values MONAI's ``percentile`` hands tensors to numpy (torch.quantile fails on large inputs, pytorch#64947).
_QUANTILE_LIMIT = 1_000_000


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


def _tensor_percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """MONAI's ``percentile`` on a tensor (a 0-d tensor of its dtype): what ScaleIntensityRangePercentiles computes."""
    if values.numel() > _QUANTILE_LIMIT:
        result = np.percentile(values.detach().cpu().numpy(), np.asarray(q, dtype=np.float64))
        return torch.as_tensor(result, dtype=values.dtype, device=values.device)
    return torch.quantile(values, torch.as_tensor(q / 100.0, dtype=values.dtype, device=values.device))


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
    if isinstance(values, torch.Tensor):
        return _tensor_percentile(values, rule.lower), _tensor_percentile(values, rule.upper)
    low, high = np.percentile(values, [rule.lower, rule.upper])  # float64 bounds, as numpy code computes them
    return low, high


def normalise_intensity(array: Array, rule: IntensityRule) -> Array:
    """``array`` scaled by ``rule`` as float32, the same type (numpy or torch) as given."""
    if rule.kind == "none":
        return array.float() if isinstance(array, torch.Tensor) else np.asarray(array, dtype=np.float32)
    low, high = intensity_bounds(array, rule)
    if not float(high) > float(low):
        high = low + 1.0  # a constant image: every voxel becomes 0 instead of a division by zero
    if isinstance(array, torch.Tensor):
        # ScaleIntensityRange(b_min=0, b_max=1)'s steps: its "* 1 + 0" onto [0, 1] turns -0.0 into 0.0, kept for the same bits.
        scaled = (((array - low) / (high - low)) * 1.0 + 0.0).to(torch.float32)
        return scaled.clamp(*rule.clip) if rule.clip is not None else scaled
    scaled = (np.asarray(array) - low) / (high - low)  # numpy's float64 arithmetic, as numpy pipelines computed it
    if rule.clip is not None:
        scaled = np.clip(scaled, *rule.clip)
    return scaled.astype(np.float32)
