"""GIRNet's loss terms: masked local NCC, smoothness, inpainting reconstruction, and mask generation.

Local NCC uses separable box means by ``avg_pool3d`` (the same statistic as MONAI's
``LocalNormalizedCrossCorrelationLoss`` with a rectangular kernel, ~4x faster on CPU) because the
registration loss needs the per-voxel map to exclude the lesion.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from monai.losses import DiffusionLoss


def box_mean(t: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over ``window``^3 boxes as three 1D passes (3w instead of w^3 operations per voxel)."""
    for axis in range(3):
        kernel = [1, 1, 1]
        kernel[axis] = window
        padding = [k // 2 for k in kernel]
        t = F.avg_pool3d(t, tuple(kernel), stride=1, padding=tuple(padding), count_include_pad=False)
    return t


def lncc_map(a: torch.Tensor, b: torch.Tensor, window: int, eps: float = 1e-3) -> torch.Tensor:
    """Per-voxel squared local correlation in [0, 1] over ``window``^3 boxes (B, 1, X, Y, Z)."""
    pool = lambda t: box_mean(t, window)  # noqa: E731
    mean_a, mean_b = pool(a), pool(b)
    cross = pool(a * b) - mean_a * mean_b
    var_a = (pool(a * a) - mean_a**2).clamp_min(0)
    var_b = (pool(b * b) - mean_b**2).clamp_min(0)
    return cross**2 / (var_a * var_b + eps)


def masked_lncc_loss(a: torch.Tensor, b: torch.Tensor, window: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """1 - mean local NCC^2, voxels weighted (e.g. by 1 - lesion mask)."""
    ncc = lncc_map(a, b, window)
    if weight is None:
        return 1.0 - ncc.mean()
    return 1.0 - (ncc * weight).sum() / weight.sum().clamp_min(1.0)


_DIFFUSION = DiffusionLoss(normalize=False)


def smoothness_loss(field: torch.Tensor) -> torch.Tensor:
    """Diffusion regulariser (mean squared gradient), voxelmorph's ``Grad('l2')``, via MONAI."""
    with warnings.catch_warnings():  # MONAI's list-indexing deprecation notice, once per step otherwise
        warnings.simplefilter("ignore", UserWarning)
        return _DIFFUSION(field)


def dissimilarity_map(image: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Where the atlas guide cannot explain the image: the gap of locally averaged intensities.

    (Local NCC is no use here: it is low in flat healthy white matter as well as in a lesion.)
    """
    return (box_mean(image, 3) - box_mean(guide, 3)).abs()


def intensity_match(source: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``a * source + b`` fitted to ``target`` by weighted least squares (no gradient).

    The atlas and the patient differ in contrast after robust scaling (fitted slopes ~0.65 on the
    generated pairs), so an uncalibrated guide shows an intensity gap all over healthy tissue; GIRNet's
    public code offers histogram matching for the same reason. Voxels already in the lesion get weight 0.
    """
    with torch.no_grad():
        total = weight.sum().clamp_min(1.0)
        mean_s, mean_t = (weight * source).sum() / total, (weight * target).sum() / total
        var_s = (weight * (source - mean_s) ** 2).sum() / total
        slope = (weight * (source - mean_s) * (target - mean_t)).sum() / total / var_s.clamp_min(1e-6)
        return slope * (source - mean_s) + mean_t


def generation_loss(mask: torch.Tensor, dissimilarity: torch.Tensor, threshold: float, tv_weight: float, *, balanced: bool = False) -> torch.Tensor:
    """The mask covers voxels the guide cannot reproduce (dissimilarity above ``threshold``), smoothly.

    The linear term rewards foreground where the inpainting fails and background where it succeeds
    (GIRNet's foreground/background objective); total variation keeps the mask compact. ``balanced``
    normalises each side by its own total, as GIRNet normalises each term by its region's size: a network
    shares its weights over a volume where a lesion is ~0.1 % of the voxels, and unbalanced it learns the
    majority's "no lesion" everywhere (measured: collapse within 20 iterations). Logits optimised per
    voxel (instance optimisation) need no balance: each voxel's gradient sign is the same either way.
    """
    excess = dissimilarity - threshold
    tv = sum((mask.diff(dim=d).abs()).mean() for d in (2, 3, 4))
    if not balanced:
        return -(mask * excess).mean() + tv_weight * tv
    fore, back = excess.clamp_min(0), (-excess).clamp_min(0)
    return -(mask * fore).sum() / fore.sum().clamp_min(1e-6) + (mask * back).sum() / back.sum().clamp_min(1e-6) + tv_weight * tv


def inpainting_loss(inpainted: torch.Tensor, target: torch.Tensor, hole: torch.Tensor, fore_weight: float, back_weight: float) -> torch.Tensor:
    """L1 reconstruction of a hidden region (foreground) and of the rest (background), weighted."""
    error = (inpainted - target).abs()
    fore = (error * hole).sum() / hole.sum().clamp_min(1.0)
    back = (error * (1 - hole)).sum() / (1 - hole).sum().clamp_min(1.0)
    return fore_weight * fore + back_weight * back
