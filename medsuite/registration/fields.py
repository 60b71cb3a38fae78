"""The torch ops of the no-network registration path, written by hand after MONAI's (the same results to float rounding).

MONAI's ``Warp``, ``DVF2DDF``, ``GaussianFilter`` and ``DiffusionLoss`` are a few lines each, but importing
``monai`` costs ~3 s and ~240 MB per process (its ``__init__`` loads every subpackage), more than a default
``medsuite register`` spends on the registration itself. These follow MONAI 1.6's code (``warp`` scales its grid before adding the displacement)
(tests/test_registration_fields.py checks each against MONAI); networks and training keep using MONAI.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=8)
def _normalised_grid(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """grid_sample's identity grid for ``shape`` (X, Y, Z, 3), last axis in its (z, y, x) order, and the
    factors that turn voxel displacements into that grid's [-1, 1] units."""
    axes = [torch.arange(n, dtype=dtype, device=device) * (2 / max(n - 1, 1)) - 1 for n in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1], dim=-1)
    return grid, torch.tensor([2 / max(n - 1, 1) for n in reversed(shape)], dtype=dtype, device=device)


def warp(image: torch.Tensor, ddf: torch.Tensor, mode: str = "bilinear", padding_mode: str = "border") -> torch.Tensor:
    """``image`` (B, C, X, Y, Z) sampled at x + ddf(x) (voxels): MONAI's ``Warp``, whose grid it scales to
    [-1, 1] before adding the displacement. Each scaled component is added in place into one copy of the
    identity grid (grid_sample's last axis runs z, y, x): a flipped, scaled and summed copy of the field
    each held a whole field more (the peak memory of a 1 mm run), for the same samples to float rounding."""
    identity, scale = _normalised_grid(tuple(ddf.shape[2:]), ddf.dtype, ddf.device)
    grid = identity.expand(ddf.shape[0], *identity.shape).clone()
    for axis in range(3):  # a product, then a sum: add_'s alpha may fuse them (FMA) in vector lanes only,
        grid[..., 2 - axis] += ddf[:, axis] * scale[2 - axis]  # which would make the bits depend on the thread count
    return _grid_sample(image, grid, mode, padding_mode)


def _grid_sample(image: torch.Tensor, grid: torch.Tensor, mode: str, padding_mode: str) -> torch.Tensor:
    """``F.grid_sample`` on every torch thread. Its 3D CPU kernel (forward and backward) runs one batch element
    per thread, so a single image used one core: the output is cut into equal slabs along its first axis, sampled
    as a batch of the same image. Each output voxel and its grid gradient are computed alone, so the bits do
    not depend on the cut; an image that needs its own gradient (scaling and squaring, on the coarse velocity
    grid) is sampled whole, since its gradient would be summed over the slabs in a thread-dependent order."""
    threads, rows = torch.get_num_threads(), grid.shape[1]
    slabs = max((p for p in range(1, threads + 1) if rows % p == 0), default=1)
    if slabs == 1 or image.shape[0] != 1 or image.requires_grad:
        return F.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=True)
    sampled = F.grid_sample(image.expand(slabs, *image.shape[1:]), grid.reshape(slabs, rows // slabs, *grid.shape[2:]), mode=mode, padding_mode=padding_mode, align_corners=True)
    return sampled.transpose(0, 1).reshape(1, image.shape[1], rows, *sampled.shape[3:])


def integrate(velocity: torch.Tensor, steps: int) -> torch.Tensor:
    """Scaling and squaring of a stationary velocity field (MONAI's ``DVF2DDF``): a diffeomorphic displacement."""
    ddf = velocity / (2**steps)
    for _ in range(steps):
        ddf = ddf + warp(ddf, ddf, "bilinear", "zeros")
    return ddf


def gaussian_kernel(sigma: float, truncated: float = 4.0) -> torch.Tensor:
    """MONAI's ``gaussian_1d`` with ``approx='erf'``: the Gaussian integrated over each voxel (not normalised)."""
    s = torch.as_tensor(sigma, dtype=torch.float)
    tail = int(max(float(s) * truncated, 0.5) + 0.5)
    x = torch.arange(-tail, tail + 1, dtype=torch.float)
    t = 0.70710678 / torch.abs(s)
    return (0.5 * ((t * (x + 0.5)).erf() - (t * (x - 0.5)).erf())).clamp(min=0)


def gaussian_smooth(image: torch.Tensor, sigma: list[float]) -> torch.Tensor:
    """(B, C, X, Y, Z) smoothed by a separable Gaussian of ``sigma`` voxels per axis, zeros outside (MONAI's
    ``GaussianFilter``: every axis padded first, then one pass per axis, first axis first).

    Each pass is a weighted sum of shifted slices rather than MONAI's depthwise ``conv3d``: on the CPU that
    convolution unfolds k copies of the volume (measured: 430 MB and 0.7 s for sigma 1.5 on a 1 mm brain's
    box, where the sums take a padded copy and 0.2 s)."""
    kernels = [gaussian_kernel(s).to(image) for s in sigma]
    for axis in reversed(range(3)):
        pad = [0] * 6
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = (kernels[axis].shape[0] - 1) // 2
        image = F.pad(image, pad, mode="constant")
    for axis, kernel in enumerate(kernels):
        dim, taps = axis + 2, kernel.shape[0]
        length = image.shape[dim] - taps + 1
        smoothed = image.narrow(dim, 0, length) * kernel[0]
        for tap in range(1, taps):  # product, then sum: no add_(alpha=), for the reason in ``warp``
            smoothed += image.narrow(dim, tap, length) * kernel[tap]
        image = smoothed
    return image


def diffusion(field: torch.Tensor) -> torch.Tensor:
    """Per-voxel squared central-difference gradient summed over axes, on the interior (B, C, X-2, Y-2, Z-2):
    MONAI's ``DiffusionLoss(normalize=False, reduction='none')``."""
    total = None
    for dim in range(2, field.dim()):
        high = [slice(None), slice(None)] + [slice(1, -1)] * (field.dim() - 2)
        low = list(high)
        high[dim], low[dim] = slice(2, None), slice(None, -2)
        gradient = (field[tuple(high)] - field[tuple(low)]) / 2.0
        total = gradient**2 if total is None else total + gradient**2
    return total
