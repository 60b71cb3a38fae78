"""GIRNet's loss terms: masked local NCC, smoothness, inpainting reconstruction, and mask generation.

Local NCC is written here with box means from cumulative sums (the same statistic as MONAI's
``LocalNormalizedCrossCorrelationLoss`` with a rectangular kernel, several times faster on CPU) because
the registration loss needs the per-voxel map to exclude the lesion.
"""

from __future__ import annotations

import torch

from medsuite.registration.fields import diffusion


def box_mean(t: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over ``window``^3 boxes (shrunk at the borders), one axis at a time from cumulative sums: the cost
    does not grow with the window (2.3x faster than ``avg_pool3d`` passes at window 9, backward included).
    The box ends are shifted slices of the sums, the last (first) sum repeated past the border: gathering
    them with ``index_select`` gives the same values but cost ~1/6 of a default ``medsuite register``."""
    radius = window // 2
    for dim in range(2, t.dim()):
        n = t.shape[dim]
        r = min(radius, n - 1)  # a wider box covers the whole axis either way
        edge = [1 if i == dim else size for i, size in enumerate(t.shape)]
        sums = torch.cat([t.new_zeros(edge), torch.cumsum(t, dim)], dim)
        border = [r if i == dim else size for i, size in enumerate(sums.shape)]
        high = torch.cat([sums.narrow(dim, r + 1, n - r), sums.narrow(dim, n, 1).expand(border)], dim)
        low = torch.cat([sums.narrow(dim, 0, 1).expand(border), sums.narrow(dim, 0, n - r)], dim)
        index = torch.arange(n, device=t.device)
        count = [1] * t.dim()
        count[dim] = n
        t = (high - low) / ((index + radius + 1).clamp_max(n) - (index - radius).clamp_min(0)).to(t.dtype).view(count)
    return t


def stable_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of every element, the same bits for any torch thread count.

    A full reduction to one number splits the tensor into one chunk per thread, so its rounding depends on
    the thread count (measured: 1 and 2 threads give different sums, and instance optimisation amplifies the
    last bit into different fields). Reducing one axis at a time leaves many outputs per pass, each summed
    whole by one thread, and the last pass is short enough to run on one."""
    while t.dim() > 1:
        t = t.sum(dim=-1)
    return t.sum()


def stable_mean(t: torch.Tensor) -> torch.Tensor:
    return stable_sum(t) / t.numel()


def lncc_map(a: torch.Tensor, b: torch.Tensor, window: int, eps: float = 1e-5) -> torch.Tensor:
    """Per-voxel squared local correlation in [0, 1] over ``window``^3 boxes (B, 1, X, Y, Z).

    ``eps`` is VoxelMorph's 1e-5 for [0, 1] images. A larger one swamps the small variances of white
    matter and deep grey matter, where the correlation then stops pulling (measured with 1e-3: mean
    error 0.65 mm, Dice 0.951; with 1e-5: 0.46 mm, 0.960).
    """
    mean_a, mean_b, mean_aa, mean_bb, mean_ab = box_mean(torch.cat([a, b, a * a, b * b, a * b], dim=1), window).split(1, dim=1)
    cross = mean_ab - mean_a * mean_b
    var_a = (mean_aa - mean_a**2).clamp_min(0)
    var_b = (mean_bb - mean_b**2).clamp_min(0)
    return cross**2 / (var_a * var_b + eps)


def masked_lncc_loss(a: torch.Tensor, b: torch.Tensor, window: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """1 - mean local NCC^2, voxels weighted (e.g. by 1 - lesion mask)."""
    ncc = lncc_map(a, b, window)
    if weight is None:
        return 1.0 - stable_mean(ncc)
    return 1.0 - stable_sum(ncc * weight) / stable_sum(weight).clamp_min(1.0)


def smoothness_loss(field: torch.Tensor) -> torch.Tensor:
    """Diffusion regulariser (mean squared gradient), voxelmorph's ``Grad('l2')``: MONAI's ``DiffusionLoss`` terms."""
    return stable_mean(diffusion(field))


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
        total = stable_sum(weight).clamp_min(1.0)
        mean_s, mean_t = stable_sum(weight * source) / total, stable_sum(weight * target) / total
        var_s = stable_sum(weight * (source - mean_s) ** 2) / total
        slope = stable_sum(weight * (source - mean_s) * (target - mean_t)) / total / var_s.clamp_min(1e-6)
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
    tv = sum(stable_mean(mask.diff(dim=d).abs()) for d in (2, 3, 4))
    if not balanced:
        return -stable_mean(mask * excess) + tv_weight * tv
    fore, back = excess.clamp_min(0), (-excess).clamp_min(0)
    return -stable_sum(mask * fore) / stable_sum(fore).clamp_min(1e-6) + stable_sum(mask * back) / stable_sum(back).clamp_min(1e-6) + tv_weight * tv


def inpainting_loss(inpainted: torch.Tensor, target: torch.Tensor, hole: torch.Tensor, fore_weight: float, back_weight: float) -> torch.Tensor:
    """L1 reconstruction of a hidden region (foreground) and of the rest (background), weighted."""
    error = (inpainted - target).abs()
    fore = stable_sum(error * hole) / stable_sum(hole).clamp_min(1.0)
    back = stable_sum(error * (1 - hole)) / stable_sum(1 - hole).clamp_min(1.0)
    return fore_weight * fore + back_weight * back
