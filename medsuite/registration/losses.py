"""GIRNet's loss terms: masked local NCC, smoothness, inpainting reconstruction, and mask generation.

Local NCC is written here with box means from cumulative sums (the same statistic as MONAI's
``LocalNormalizedCrossCorrelationLoss`` with a rectangular kernel, several times faster on CPU) because
the registration loss needs the per-voxel map to exclude the lesion.
"""

from __future__ import annotations

import torch

from medsuite.registration.fields import diffusion

LNCC_EPS = 1e-5  # VoxelMorph's, for [0, 1] images (lncc_map)


def box_sum(t: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over ``window``^3 boxes clipped at the borders, one axis at a time from cumulative sums: the cost does
    not grow with the window. The sum up to the box's high end is a shifted slice of the cumulative sums (the
    last repeated past the border), and the sum before its low end is subtracted in place (``index_select``
    gave the same values at ~1/6 of a default ``medsuite register``; a stacked copy of both ends was the peak
    memory of a 1 mm run). Channels go one at a time for the same reason. The clipped box sum is symmetric
    (voxel x is in y's box exactly when y is in x's), which the NCC gradient below uses."""
    if t.shape[1] > 1:
        return torch.cat([box_sum(channel, window) for channel in t.split(1, dim=1)], dim=1)
    radius = window // 2
    for dim in range(2, t.dim()):
        n = t.shape[dim]
        r = min(radius, n - 1)  # a wider box covers the whole axis either way
        sums = torch.cumsum(t, dim)
        border = [r if i == dim else size for i, size in enumerate(sums.shape)]
        t = torch.cat([sums.narrow(dim, r, n - r), sums.narrow(dim, n - 1, 1).expand(border)], dim)
        if n - r - 1 > 0:
            t.narrow(dim, r + 1, n - r - 1).sub_(sums.narrow(dim, 0, n - r - 1))
    return t


def box_count(t: torch.Tensor, window: int) -> torch.Tensor:
    """The number of voxels in each clipped box of ``t``'s grid, broadcastable to ``t`` (1, 1, X, Y, Z)."""
    radius, count = window // 2, None
    for dim in range(2, t.dim()):
        n = t.shape[dim]
        index = torch.arange(n, device=t.device)
        shape = [1] * t.dim()
        shape[dim] = n
        axis = ((index + radius + 1).clamp_max(n) - (index - radius).clamp_min(0)).to(t.dtype).view(shape)
        count = axis if count is None else count * axis
    return count


def box_mean(t: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over ``window``^3 boxes, shrunk at the borders (2.3x faster than ``avg_pool3d`` passes at window 9)."""
    return box_sum(t, window) / box_count(t, window)


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


def local_moments(a: torch.Tensor, b: torch.Tensor, window: int) -> tuple[torch.Tensor, ...]:
    """Box means of a, b, a^2, b^2, ab over ``window``^3 boxes, one map at a time (no five-map stack)."""
    count = box_count(a, window)
    return tuple(box_sum(t, window) / count for t in (a, b, a * a, b * b, a * b))


def ncc_terms(a: torch.Tensor, b: torch.Tensor, window: int, eps: float = LNCC_EPS) -> tuple[torch.Tensor, ...]:
    """(mean_a, mean_b, cross, var_a, var_b, ncc) over ``window``^3 boxes: the local covariance, the variances
    before clamping at 0 (their sign is clamp's gradient) and the squared correlation ``lncc_map`` returns."""
    mean_a, mean_b, mean_aa, mean_bb, mean_ab = local_moments(a, b, window)
    cross = mean_ab - mean_a * mean_b
    var_a, var_b = mean_aa - mean_a**2, mean_bb - mean_b**2
    return mean_a, mean_b, cross, var_a, var_b, cross**2 / (var_a.clamp_min(0) * var_b.clamp_min(0) + eps)


def lncc_map(a: torch.Tensor, b: torch.Tensor, window: int, eps: float = LNCC_EPS) -> torch.Tensor:
    """Per-voxel squared local correlation in [0, 1] over ``window``^3 boxes (B, 1, X, Y, Z).

    ``eps`` is VoxelMorph's 1e-5 for [0, 1] images. A larger one swamps the small variances of white
    matter and deep grey matter, where the correlation then stops pulling (measured with 1e-3: mean
    error 0.65 mm, Dice 0.951; with 1e-5: 0.46 mm, 0.960).
    """
    return ncc_terms(a, b, window, eps)[-1]


class _MaskedLNCC(torch.autograd.Function):
    """1 - weighted mean local NCC^2 with its gradient written out (as ANTs' CC metric does), not traced.

    Autograd through the box means keeps every cumulative sum, slice and concatenation of the five moment
    maps for the backward pass, and replays them one by one: most of a registration's memory and a third of
    its backward time. The loss is a function of the five box means, each linear in a, b, a^2, b^2, ab, so
    its gradient is five box filters of per-voxel factors (the box mean's transpose: divide by the count,
    then the symmetric box sum); tests/test_registration_modules.py checks it against autograd's."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor | None, window: int, eps: float) -> torch.Tensor:
        terms = ncc_terms(a, b, window, eps)
        ncc = terms[-1]
        total = stable_sum(weight).clamp_min(1.0) if weight is not None else torch.tensor(float(ncc.numel()), dtype=ncc.dtype)
        ctx.save_for_backward(a, b, weight, total, *terms)
        ctx.window, ctx.eps = window, eps
        return 1.0 - stable_sum(ncc if weight is None else ncc * weight) / total

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        a, b, weight, total, mean_a, mean_b, cross, var_a, var_b, ncc = ctx.saved_tensors
        window, need_a, need_b = ctx.window, ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        positive_a, positive_b = var_a > 0, var_b > 0  # clamp_min's gradient
        var_a, var_b = var_a.clamp_min(0), var_b.clamp_min(0)
        # d loss / d ncc per voxel, over the box counts (the box mean's transpose divides before summing)
        upstream = (-grad / total if weight is None else -grad * weight / total) / (box_count(a, window) * (var_a * var_b + ctx.eps))
        by_cross = upstream * 2 * cross
        by_var_a = -upstream * ncc * var_b * positive_a
        by_var_b = -upstream * ncc * var_a * positive_b
        del upstream, var_a, var_b, positive_a, positive_b
        # Each map is box-filtered on its own and summed at once: only the inputs asked for cost filters
        # (instance optimisation asks for one), and no five-map stack is alive (the backward's peak memory).
        grad_a = grad_b = None
        if need_a:
            grad_a = box_sum(-by_cross * mean_b - 2 * by_var_a * mean_a, window)
            grad_a += 2 * a * box_sum(by_var_a, window)
        if need_b:
            grad_b = box_sum(-by_cross * mean_a - 2 * by_var_b * mean_b, window)
            grad_b += 2 * b * box_sum(by_var_b, window)
        if need_a or need_b:
            by_cross = box_sum(by_cross, window)
            grad_a = grad_a + b * by_cross if need_a else None
            grad_b = grad_b + a * by_cross if need_b else None
        grad_weight = None
        if weight is not None and ctx.needs_input_grad[2]:
            loss_part = stable_sum(ncc * weight) / total
            grad_weight = -grad * (ncc - loss_part * (total > 1.0)) / total
        return grad_a, grad_b, grad_weight, None, None


def masked_lncc_loss(a: torch.Tensor, b: torch.Tensor, window: int, weight: torch.Tensor | None = None, eps: float = LNCC_EPS) -> torch.Tensor:
    """1 - mean local NCC^2, voxels weighted (e.g. by 1 - lesion mask)."""
    return _MaskedLNCC.apply(a, b, weight, window, eps)


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
