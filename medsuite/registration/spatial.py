"""Spatial transforms: velocity integration, warping, Jacobians, and world-space (ITK) fields.

Fields inside the networks are dense displacements in *voxel* units of the fixed grid, channels
first (B, 3, X, Y, Z), the convention of MONAI's ``Warp`` and ``DVF2DDF`` (re-implemented in ``fields``). Only the written
``ddf.nii.gz`` is in world millimetres (ITK's LPS physical space, fixed point -> moving point).
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from medsuite.io import LPS_TO_RAS, Volume, to_sitk
from medsuite.registration.fields import gaussian_smooth


def resize_field(field: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Resample a voxel-unit field to another grid size over the same extent, rescaling its vectors."""
    if tuple(field.shape[2:]) == tuple(shape):
        return field
    scale = torch.tensor([n / m for n, m in zip(shape, field.shape[2:])], dtype=field.dtype, device=field.device)
    resized = F.interpolate(field, size=tuple(shape), mode="trilinear", align_corners=True)
    return resized * scale.view(1, 3, 1, 1, 1)


def resize_image(image: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    return F.interpolate(image, size=tuple(shape), mode="trilinear", align_corners=True)


def downsample_image(image: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``resize_image`` after a Gaussian low-pass of sigma (factor - 1) / 2 per axis (scikit-image's
    anti-aliasing rule): trilinear sampling alone keeps one voxel in factor^3 and aliases edges."""
    sigma = [max(0.0, (n / m - 1) / 2) for n, m in zip(image.shape[2:], shape)]
    if max(sigma) > 0:
        image = gaussian_smooth(image, sigma)
    return resize_image(image, shape)


def content_box(images: list[torch.Tensor], margin: int, threshold: float = 0.02) -> tuple[slice, ...]:
    """The spatial slices of (1, 1, X, Y, Z) images around every voxel at or above ``threshold`` in any of
    them, grown by ``margin`` voxels (the whole grid when there is none)."""
    found = torch.nonzero(torch.stack([image[0, 0] >= threshold for image in images]).any(dim=0))
    if len(found) == 0:
        return tuple(slice(0, n) for n in images[0].shape[2:])
    low = (found.min(dim=0).values - margin).clamp_min(0).tolist()
    high = (found.max(dim=0).values + margin + 1).tolist()
    return tuple(slice(a, min(b, n)) for a, b, n in zip(low, high, images[0].shape[2:]))


def uncrop(tensor: torch.Tensor, box: tuple[slice, ...], shape: tuple[int, ...], mode: str) -> torch.Tensor:
    """Pad a (B, C, ...) crop at ``box`` back to ``shape``: ``replicate`` for fields (no fold at the
    seam), ``constant`` (zeros) for masks."""
    pad: list[int] = []
    for sl, n in reversed(list(zip(box, shape))):
        pad += [sl.start, n - sl.stop]
    return F.pad(tensor, pad, mode=mode)


def jacobian_determinant(ddf: np.ndarray) -> np.ndarray:
    """det(I + grad u) of a voxel-unit displacement (3, X, Y, Z) in float32; values <= 0 are folds.

    The 3x3 determinant is expanded by hand from the nine gradient components: a stacked (3, 3, X, Y, Z)
    float64 array for ``np.linalg.det`` was the peak memory of a 1 mm registration (~1.3 GB)."""
    g = [[np.gradient(np.asarray(ddf[c], np.float32), axis=k) for k in range(3)] for c in range(3)]
    for c in range(3):
        g[c][c] += 1.0
    return g[0][0] * (g[1][1] * g[2][2] - g[1][2] * g[2][1]) - g[0][1] * (g[1][0] * g[2][2] - g[1][2] * g[2][0]) + g[0][2] * (g[1][0] * g[2][1] - g[1][1] * g[2][0])


def folding_percent(jacobian: np.ndarray, mask: np.ndarray | None = None) -> float:
    values = jacobian if mask is None else jacobian[mask > 0]
    return float(100.0 * np.mean(values <= 0)) if values.size else 0.0


def affine_in_index_plus_field(shape: tuple[int, ...], on_index: np.ndarray, on_field: np.ndarray, field: list[np.ndarray], constant: np.ndarray) -> np.ndarray:
    """``on_index @ i + on_field @ field(i) + constant`` at every voxel index i of ``shape``, as (X, Y, Z, 3)
    float64, one component at a time from broadcast index ranges: no full coordinate grids (~1 GB at 1 mm).
    ``field`` is the three components of a vector field on that grid (float32 ones are widened on the fly)."""
    axes = [np.arange(n, dtype=np.float64).reshape([-1 if k == axis else 1 for k in range(3)]) for axis, n in enumerate(shape)]
    result = np.empty((*shape, 3), np.float64)
    scratch = np.empty(shape, np.float64)
    for c in range(3):
        component = constant[c] + on_index[c, 0] * axes[0] + on_index[c, 1] * axes[1] + on_index[c, 2] * axes[2]  # broadcasts to the grid
        for k in range(3):
            np.multiply(field[k], on_field[c, k], out=scratch)
            component += scratch
        result[..., c] = component
    return result


def voxel_ddf_to_world_lps(ddf_vox: np.ndarray, fixed: Volume, prealign: sitk.AffineTransform) -> np.ndarray:
    """Total transform as an ITK displacement (X, Y, Z, 3) in LPS mm: fixed point p -> T_affine(p + u(p)) - p.

    ``ddf_vox`` (3, X, Y, Z) is the deformable part on the fixed grid (voxels); ``prealign`` maps fixed
    physical points to moving physical points (SimpleITK's resampling convention). With the fixed grid's
    voxel-to-LPS map ``L i + t`` and the affine ``A x + b`` this is ``(A L - L) i + A L u + (A t + b - t)``.
    """
    lps_affine = LPS_TO_RAS @ fixed.affine
    linear, offset = lps_affine[:3, :3], lps_affine[:3, 3]
    matrix = affine_matrix(prealign)
    on_index, on_field = matrix[:3, :3] @ linear - linear, matrix[:3, :3] @ linear
    constant = matrix[:3, :3] @ offset + matrix[:3, 3] - offset
    return affine_in_index_plus_field(fixed.spatial_shape, on_index, on_field, list(ddf_vox), constant)


def affine_matrix(transform: sitk.AffineTransform) -> np.ndarray:
    """The 4x4 homogeneous matrix (LPS) of a SimpleITK affine transform."""
    linear = np.asarray(transform.GetMatrix()).reshape(3, 3)
    centre = np.asarray(transform.GetCenter())
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = np.asarray(transform.GetTranslation()) + centre - linear @ centre
    return matrix


def resample_moving(moving: Volume, fixed: Volume, transform: sitk.Transform, *, nearest: bool = False, default: float = 0.0) -> np.ndarray:
    """Moving image on the fixed grid through a fixed->moving transform, as an (X, Y, Z) array."""
    interpolator = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
    moving_image = to_sitk(moving, np.asarray(moving.array, dtype=np.float32 if not nearest else moving.array.dtype))
    result = sitk.Resample(moving_image, to_sitk(fixed, np.zeros(fixed.spatial_shape, np.float32)), transform, interpolator, default)
    return np.transpose(sitk.GetArrayFromImage(result), (2, 1, 0))


def displacement_transform(ddf_lps: np.ndarray, fixed: Volume) -> sitk.DisplacementFieldTransform:
    """A SimpleITK transform from an (X, Y, Z, 3) LPS displacement on the fixed grid."""
    image = to_sitk(fixed, ddf_lps.astype(np.float64))
    return sitk.DisplacementFieldTransform(sitk.Cast(image, sitk.sitkVectorFloat64))
