"""A fixed Haar wavelet transform as tensor ops, for neU-Net's multi-scale inputs.

Why not PyWavelets: the bands must be computed inside the network's forward pass, batched, on the
model's device and for anisotropic factors such as (1, 2, 2); PyWavelets works on one numpy array at
a time on the CPU. The Haar filter pair is two lines of arithmetic on even/odd samples, so it is
written here directly (orthonormal: low = (a + b)/sqrt2, high = (a - b)/sqrt2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _haar_axis(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape[dim] % 2:  # odd length: repeat the last sample, as a stride-2 padded conv would cover it
        x = torch.cat([x, x.narrow(dim, x.shape[dim] - 1, 1)], dim=dim)
    even = x.narrow(dim, 0, x.shape[dim] // 2 * 2).unflatten(dim, (-1, 2)).select(dim + 1, 0)
    odd = x.narrow(dim, 0, x.shape[dim] // 2 * 2).unflatten(dim, (-1, 2)).select(dim + 1, 1)
    return (even + odd) / math.sqrt(2.0), (even - odd) / math.sqrt(2.0)


def haar_level(x: torch.Tensor, factors: Sequence[int]) -> list[torch.Tensor]:
    """One decomposition level of a (B, C, *spatial) tensor along the axes whose factor is 2.

    Returns the sub-bands, the approximation (low on every transformed axis) first; an axis with
    factor 1 is left alone (thick-slice MR: factors (1, 2, 2) keep the slice axis).
    """
    if any(f not in (1, 2) for f in factors):
        raise ValueError(f"Haar bands need factors of 1 or 2 per axis, got {tuple(factors)}")
    bands = [x]
    for axis, factor in enumerate(factors):
        if factor == 2:
            bands = [band for b in bands for band in _haar_axis(b, 2 + axis)]
    return bands


def haar_pyramid(x: torch.Tensor, factors_per_level: Sequence[Sequence[int]]) -> list[list[torch.Tensor]]:
    """Bands at every level: level k decomposes the approximation of level k-1 by ``factors_per_level[k]``."""
    levels, approx = [], x
    for factors in factors_per_level:
        bands = haar_level(approx, factors)
        levels.append(bands)
        approx = bands[0]
    return levels
