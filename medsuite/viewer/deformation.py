"""Deformation review: a displacement field as a warped grid, its Jacobian determinant, folding.

The register contract writes ``ddf.nii.gz`` as (X, Y, Z, 1, 3) world-mm displacements in ITK's LPS
convention on the fixed grid. Here it becomes voxel-unit displacements of the RAS-canonical fixed
grid, so every later step is plain index arithmetic.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from matplotlib import colormaps
from scipy.ndimage import map_coordinates

from medsuite.errors import MedsuiteError
from medsuite.io import LPS_TO_RAS, Volume
from medsuite.viewer.slicing import plane_axes, plane_slice, to_canonical

FOLDING_COLOUR = (0, 255, 0)  # not on the blue-white-red scale, so folds stand out


def ddf_to_canonical_voxels(ddf: Volume) -> Volume:
    """(X, Y, Z, 1, 3) LPS-mm field -> RAS-canonical grid with (X', Y', Z', 3) voxel-unit displacements."""
    array = np.asarray(ddf.array, dtype=np.float32)
    if array.ndim == 5 and array.shape[3] == 1:
        array = array[:, :, :, 0, :]
    if array.ndim != 4 or array.shape[3] != 3:
        raise MedsuiteError(ddf.source, f"is not a 3D displacement field (shape {array.shape})", "give the ddf.nii.gz that register wrote")
    ras_mm = array * LPS_TO_RAS.diagonal()[:3]  # LPS -> RAS flips x and y components
    canonical = to_canonical(Volume(array=ras_mm, affine=ddf.affine, source=ddf.source))
    # World vectors do not change under voxel reordering; only their expression in index units does.
    to_index = np.linalg.inv(canonical.affine[:3, :3])
    voxels = np.einsum("ij,...j->...i", to_index, canonical.array).astype(np.float32)
    return canonical.with_array(voxels)


def jacobian_determinant(displacement_vox: np.ndarray) -> np.ndarray:
    """det(I + grad u) of a voxel-unit displacement field (X, Y, Z, 3), via SimpleITK's filter.

    With unit spacing and identity direction the filter's derivatives are index derivatives, which
    is what voxel-unit displacements need; the determinant is the same in any world frame. ITK uses
    central differences inside and half differences on the border voxels.
    """
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(displacement_vox, (2, 1, 0, 3)), dtype=np.float64), isVector=True)
    det = sitk.DisplacementFieldJacobianDeterminant(image)
    return np.transpose(sitk.GetArrayFromImage(det), (2, 1, 0)).astype(np.float32)


def folding_percent(jacobian: np.ndarray) -> float:
    """Share of voxels where the map folds (det <= 0), in percent."""
    return float(100.0 * np.mean(np.asarray(jacobian) <= 0.0))


def jacobian_rgb(jacobian2d: np.ndarray, spread: float = 1.0) -> np.ndarray:
    """Diverging colours centred on 1 (white): blue = contraction, red = expansion; folds in green.

    ``spread`` sets the half-range: det = 1 - spread is full blue and 1 + spread full red.
    """
    centred = (np.asarray(jacobian2d, dtype=np.float32) - 1.0) / (2.0 * spread) + 0.5
    rgb = (colormaps["RdBu_r"](np.clip(centred, 0.0, 1.0))[..., :3] * 255.0 + 0.5).astype(np.uint8)
    rgb[jacobian2d <= 0.0] = FOLDING_COLOUR
    return rgb


def plane_displacement(displacement_vox: np.ndarray, plane: str, index: int) -> np.ndarray:
    """(H, W, 2) in-plane displacement of a view in screen pixels (down, right) matching ``plane_slice``."""
    _, row_axis, col_axis = plane_axes(plane)
    view = plane_slice(displacement_vox, plane, index)
    # plane_slice flips rows and columns: a step up in voxel index is a step up / left on screen.
    return np.stack([-view[..., row_axis], -view[..., col_axis]], axis=-1)


def deformed_grid(displacement2d: np.ndarray, spacing: int = 8) -> np.ndarray:
    """Boolean mask of a regular grid (every ``spacing`` pixels) moved by the displacement.

    Each grid line is sampled at quarter pixels and every sample ``p`` is drawn at ``p + u(p)``,
    so smooth fields give connected lines and folds show as lines crossing.
    """
    height, width = displacement2d.shape[:2]
    mask = np.zeros((height, width), dtype=bool)
    rows_fixed = np.arange(0, height, spacing, dtype=np.float32)
    cols_fixed = np.arange(0, width, spacing, dtype=np.float32)
    along_w = np.arange(0, width - 1 + 1e-6, 0.25, dtype=np.float32)
    along_h = np.arange(0, height - 1 + 1e-6, 0.25, dtype=np.float32)
    r_h, c_h = np.meshgrid(rows_fixed, along_w, indexing="ij")  # horizontal lines
    r_v, c_v = np.meshgrid(along_h, cols_fixed, indexing="ij")  # vertical lines
    rows = np.concatenate([r_h.ravel(), r_v.ravel()])
    cols = np.concatenate([c_h.ravel(), c_v.ravel()])
    coords = np.stack([rows, cols])
    down = map_coordinates(displacement2d[..., 0], coords, order=1, mode="nearest")
    right = map_coordinates(displacement2d[..., 1], coords, order=1, mode="nearest")
    r = np.rint(rows + down).astype(np.int64)
    c = np.rint(cols + right).astype(np.int64)
    inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
    mask[r[inside], c[inside]] = True
    return mask


def paint(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (0, 220, 255)) -> np.ndarray:
    out = rgb.copy()
    out[mask] = colour
    return out
