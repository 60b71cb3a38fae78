"""World-oriented tri-planar slicing: RAS-canonical volumes, display aspect, crosshair in mm.

Volumes are reoriented to the closest RAS+ orientation first (nibabel ``as_closest_canonical``), so
axis 0 runs left->right, 1 posterior->anterior and 2 inferior->superior. Each view is then flipped
into radiological screen convention: superior/anterior at the top, patient right on screen left
(axial and coronal), anterior on screen left (sagittal), as ITK-SNAP and 3D Slicer show them.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from skimage.filters import threshold_otsu
from skimage.transform import resize

from medsuite.io import Volume

PLANES = ("axial", "coronal", "sagittal")
#: For each plane: the volume axis held fixed, then the canonical axes shown as (rows, columns).
_PLANE_AXES = {"axial": (2, 1, 0), "coronal": (1, 2, 0), "sagittal": (0, 2, 1)}


def to_canonical(vol: Volume) -> Volume:
    """The volume reoriented to the closest RAS+ voxel order; extra axes (vector components) ride along."""
    image = nib.Nifti1Image(np.asarray(vol.array), vol.affine)
    canonical = nib.as_closest_canonical(image)
    # In memory and C-ordered: an uncompressed file would otherwise stay a memmap read per slice.
    array = np.ascontiguousarray(np.asarray(canonical.dataobj))
    return Volume(array=array, affine=np.asarray(canonical.affine), source=vol.source, meta=dict(vol.meta))


def plane_axes(plane: str) -> tuple[int, int, int]:
    """(held-fixed axis, row axis, column axis) of a plane, in canonical voxel axes."""
    return _PLANE_AXES[plane]


def plane_slice(array: np.ndarray, plane: str, index: int) -> np.ndarray:
    """A 2D (or 2D+channels) view of a canonical array, oriented for the screen.

    Rows run superior->inferior (coronal, sagittal) or anterior->posterior (axial); columns run
    patient right->left (axial, coronal; radiological convention) or anterior->posterior (sagittal):
    in canonical RAS both mean decreasing voxel index, so every view is flipped both ways.
    """
    fixed, row_axis, col_axis = _PLANE_AXES[plane]
    taken = array[(slice(None),) * fixed + (index,)]  # a view: no copy of the volume
    # After removing ``fixed`` the remaining spatial axes keep their order; put rows first.
    remaining = [a for a in range(3) if a != fixed]
    order = [remaining.index(row_axis), remaining.index(col_axis)] + list(range(2, taken.ndim))
    view = np.transpose(taken, order)
    return view[::-1, ::-1]


def plane_spacing(spacing: np.ndarray, plane: str) -> tuple[float, float]:
    """(row, column) pixel size in mm of a plane."""
    _, row_axis, col_axis = _PLANE_AXES[plane]
    return float(spacing[row_axis]), float(spacing[col_axis])


def display_shape(shape2d: tuple[int, int], pixel_mm: tuple[float, float], scale: float = 1.0) -> tuple[int, int]:
    """Screen size giving square millimetres: the finer spacing becomes one screen pixel (times scale)."""
    finest = min(pixel_mm)
    return (
        max(1, int(round(shape2d[0] * pixel_mm[0] / finest * scale))),
        max(1, int(round(shape2d[1] * pixel_mm[1] / finest * scale))),
    )


def with_aspect(image: np.ndarray, pixel_mm: tuple[float, float], *, scale: float = 1.0, nearest: bool = False) -> np.ndarray:
    """Resample a 2D (or RGB) image so anisotropic voxels look their true shape on screen."""
    rows, cols = display_shape(image.shape[:2], pixel_mm, scale)
    if (rows, cols) == image.shape[:2]:
        return image
    out = resize(image, (rows, cols) + image.shape[2:], order=0 if nearest else 1, preserve_range=True, anti_aliasing=False)
    return out.astype(image.dtype)


@dataclass(frozen=True)
class Crosshair:
    """A voxel of the canonical volume, its world position (mm, RAS) and the intensity there."""

    voxel: tuple[int, int, int]
    world_mm: tuple[float, float, float]
    value: float


def voxel_to_world(affine: np.ndarray, voxel: tuple[float, float, float]) -> np.ndarray:
    return (np.asarray(affine) @ np.array([*voxel, 1.0]))[:3]


def world_to_voxel(affine: np.ndarray, world_mm: tuple[float, float, float], shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Nearest voxel to a world point, clipped into the volume."""
    ijk = (np.linalg.inv(affine) @ np.array([*world_mm, 1.0]))[:3]
    return tuple(int(np.clip(round(float(c)), 0, n - 1)) for c, n in zip(ijk, shape[:3]))  # type: ignore[return-value]


def crosshair_at(vol: Volume, voxel: tuple[int, int, int]) -> Crosshair:
    voxel = tuple(int(np.clip(v, 0, n - 1)) for v, n in zip(voxel, vol.array.shape[:3]))  # type: ignore[assignment]
    world = voxel_to_world(vol.affine, voxel)
    return Crosshair(voxel=voxel, world_mm=tuple(float(w) for w in world), value=float(vol.array[voxel]))  # type: ignore[arg-type]


def click_to_voxel(plane: str, index: int, row: int, col: int, shape: tuple[int, ...], display: tuple[int, int]) -> tuple[int, int, int]:
    """The canonical voxel under a click at (row, col) of a displayed view of ``display`` pixels."""
    fixed, row_axis, col_axis = _PLANE_AXES[plane]
    n_rows, n_cols = shape[row_axis], shape[col_axis]
    r = int(np.clip(row * n_rows / display[0], 0, n_rows - 1))
    c = int(np.clip(col * n_cols / display[1], 0, n_cols - 1))
    voxel = [0, 0, 0]
    voxel[fixed] = index
    voxel[row_axis] = n_rows - 1 - r  # undo the flips of plane_slice
    voxel[col_axis] = n_cols - 1 - c
    return tuple(voxel)  # type: ignore[return-value]


def crosshair_pixel(plane: str, voxel: tuple[int, int, int], shape: tuple[int, ...]) -> tuple[int, int]:
    """(row, column) of the crosshair in the un-resampled view of ``plane_slice``."""
    _, row_axis, col_axis = _PLANE_AXES[plane]
    row = shape[row_axis] - 1 - voxel[row_axis]
    col = shape[col_axis] - 1 - voxel[col_axis]
    return row, col


def draw_crosshair(rgb: np.ndarray, pixel: tuple[int, int], colour: tuple[int, int, int] = (255, 215, 0)) -> np.ndarray:
    """Thin dashed lines through ``pixel`` (every other pixel, so the anatomy stays visible)."""
    out = rgb.copy()
    row, col = pixel
    out[row, ::2] = colour
    out[::2, col] = colour
    return out


def slice_index(plane: str, voxel: tuple[int, int, int]) -> int:
    return voxel[_PLANE_AXES[plane][0]]


def centre_voxel(labels: np.ndarray | None, image: np.ndarray) -> tuple[int, int, int]:
    """Where the crosshair starts: the centre of the mask's bounding box, else of the content
    (voxels above the image's Otsu threshold), else the middle of the volume."""
    shape = image.shape[:3]
    for region in ((labels > 0) if labels is not None else None, _content(image)):
        if region is not None and region.any():
            bounds = [np.flatnonzero(region.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
            return tuple(int((b[0] + b[-1]) // 2) for b in bounds)  # type: ignore[return-value]
    return tuple(n // 2 for n in shape)  # type: ignore[return-value]


def _content(image: np.ndarray) -> np.ndarray | None:
    array = np.asarray(image)[..., 0] if np.asarray(image).ndim > 3 else np.asarray(image)
    sample = array[::4, ::4, ::2]
    if not np.isfinite(sample).all() or sample.min() == sample.max():
        return None
    region = array > threshold_otsu(sample)
    return region if region.any() and not region.all() else None
