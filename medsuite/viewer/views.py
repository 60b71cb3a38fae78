"""One screen view = slice + window + overlays + true aspect + crosshair: what every page draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsuite.io import Volume, read_image, require_3d
from medsuite.viewer.longaxis import PlaneGrid, sample
from medsuite.viewer.deformation import deformed_grid, paint, plane_displacement
from medsuite.viewer.overlay import overlay_labels
from medsuite.viewer.slicing import (
    crosshair_pixel,
    display_shape,
    draw_crosshair,
    plane_axes,
    plane_slice,
    plane_spacing,
    slice_index,
    to_canonical,
    voxel_to_world,
    with_aspect,
    world_to_voxel,
)
from medsuite.viewer.windowing import apply_window, grey_to_rgb

MIN_SIDE = 256


def load_canonical(path: str | Path) -> Volume:
    """A 3D image from disk, reoriented to RAS-canonical voxel order."""
    return to_canonical(require_3d(read_image(path)))


def windowed_plane(
    array: np.ndarray, spacing: np.ndarray, plane: str, voxel: tuple[int, int, int], level: float, width: float, scale: float | None = None
) -> tuple[np.ndarray, int, tuple[float, float], float]:
    """The windowed grey plane through ``voxel`` at true aspect: (RGB, slice index, pixel mm, scale)."""
    index = slice_index(plane, voxel)
    pixel_mm = plane_spacing(spacing, plane)
    grey = plane_slice(array, plane, index)
    scale = fit_scale(grey.shape, pixel_mm) if scale is None else scale
    return grey_to_rgb(with_aspect(apply_window(grey, level, width), pixel_mm, scale=scale)), index, pixel_mm, scale


def render_view(
    array: np.ndarray,
    spacing: np.ndarray,
    plane: str,
    voxel: tuple[int, int, int],
    level: float,
    width: float,
    *,
    labels: np.ndarray | None = None,
    opacity: float = 0.4,
    outline: bool = False,
    crosshair: bool = True,
    scale: float | None = None,
) -> np.ndarray:
    """RGB uint8 view of one plane through ``voxel`` of a canonical volume, with square millimetres.

    The image is resampled linearly, the labels by nearest neighbour, and only then blended, so
    label borders stay sharp and outlines one screen pixel thick.
    """
    rgb, index, pixel_mm, scale = windowed_plane(array, spacing, plane, voxel, level, width, scale)
    if labels is not None:
        shown = with_aspect(plane_slice(labels, plane, index), pixel_mm, scale=scale, nearest=True)
        rgb = overlay_labels(rgb, shown, opacity=opacity, outline=outline)
    return add_crosshair(rgb, plane, voxel, array.shape) if crosshair else rgb


def fit_scale(shape2d: tuple[int, ...], pixel_mm: tuple[float, float]) -> float:
    """Enlargement so the longer side is at least ``MIN_SIDE`` pixels (never shrinks).

    The browser would otherwise blur a one-pixel crosshair when it stretches a small image.
    """
    return max(1.0, MIN_SIDE / max(display_shape(shape2d[:2], pixel_mm)))


def add_crosshair(rgb: np.ndarray, plane: str, voxel: tuple[int, int, int], shape: tuple[int, ...]) -> np.ndarray:
    """The crosshair through the centre of ``voxel``'s pixel, wherever the view was resampled to."""
    _, row_axis, col_axis = plane_axes(plane)
    row, col = crosshair_pixel(plane, voxel, shape)
    return draw_crosshair(rgb, (int((row + 0.5) * rgb.shape[0] / shape[row_axis]), int((col + 0.5) * rgb.shape[1] / shape[col_axis])))


def finish_view(
    rgb: np.ndarray,
    spacing: np.ndarray,
    plane: str,
    voxel: tuple[int, int, int],
    shape: tuple[int, ...],
    *,
    crosshair: bool = True,
    scale: float | None = None,
) -> np.ndarray:
    """An RGB plane view computed elsewhere (comparison, Jacobian, grid) at true aspect, with crosshair."""
    pixel_mm = plane_spacing(spacing, plane)
    out = with_aspect(rgb, pixel_mm, scale=fit_scale(rgb.shape, pixel_mm) if scale is None else scale)
    return add_crosshair(out, plane, voxel, shape) if crosshair else out


def grid_view(
    array: np.ndarray,
    spacing: np.ndarray,
    plane: str,
    voxel: tuple[int, int, int],
    level: float,
    width: float,
    displacement_vox: np.ndarray,
    *,
    grid_mm: float = 5.0,
) -> np.ndarray:
    """The fixed image with a ``grid_mm`` grid deformed by the field, drawn at screen resolution.

    The displacement is resampled to the screen and rescaled to screen pixels per axis, so lines
    stay one pixel thin and the grid is square in millimetres whatever the voxel size.
    """
    rgb, index, pixel_mm, scale = windowed_plane(array, spacing, plane, voxel, level, width)
    shown = with_aspect(plane_displacement(displacement_vox, plane, index).astype(np.float32), pixel_mm, scale=scale)
    plane_shape = plane_slice(array, plane, index).shape
    per_voxel = np.array([rgb.shape[0] / plane_shape[0], rgb.shape[1] / plane_shape[1]], dtype=np.float32)
    step = max(2, int(round(grid_mm * per_voxel[0] / pixel_mm[0])))  # screen pixels per grid_mm
    lines = deformed_grid(shown * per_voxel, step)
    return add_crosshair(paint(rgb, lines), plane, voxel, array.shape)


def render_plane(
    array: np.ndarray, affine: np.ndarray, grid: PlaneGrid, voxel: tuple[int, int, int], level: float, width: float, *, labels: np.ndarray | None = None, opacity: float = 0.4, outline: bool = False
) -> np.ndarray:
    """RGB view of a world-space plane (4-chamber, 2-chamber) of a canonical volume: the image linearly,
    the labels by nearest neighbour, black outside the volume; the crosshair at the projection of
    ``voxel`` on the plane (drawn when it falls inside the panel)."""
    grey = sample(array, affine, grid, outside=np.nan)
    windowed = apply_window(np.nan_to_num(grey, nan=level - width), level, width)
    scale = fit_scale(grid.shape, (grid.step, grid.step))
    rgb = grey_to_rgb(with_aspect(windowed, (1.0, 1.0), scale=scale))
    if labels is not None:
        rgb = overlay_labels(rgb, with_aspect(sample(labels, affine, grid, nearest=True), (1.0, 1.0), scale=scale, nearest=True), opacity=opacity, outline=outline)
    row, col = grid.pixel(voxel_to_world(affine, voxel))
    if 0 <= row < grid.shape[0] and 0 <= col < grid.shape[1]:
        rgb = draw_crosshair(rgb, (int((row + 0.5) * rgb.shape[0] / grid.shape[0]), int((col + 0.5) * rgb.shape[1] / grid.shape[1])))
    return rgb


def plane_click_to_voxel(grid: PlaneGrid, row: float, col: float, display: tuple[int, int], affine: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The voxel nearest to the world point under a click on a displayed world-space plane."""
    world = grid.world(np.array(row * grid.shape[0] / display[0] - 0.5), np.array(col * grid.shape[1] / display[1] - 0.5))
    return world_to_voxel(affine, tuple(world), shape)
