"""The standard cardiac long-axis planes (4-chamber, 2-chamber) of a short-axis stack, resampled in world space.

The through-plane reformats of a short-axis stack are planes of the acquisition grid, not the views a
cardiologist reads. Here the 4-chamber plane comes from a long-axis image of the same scanner frame
(the plane the scanner acquired, e.g. M&Ms-2's ``lax_4c_ed.nii.gz`` beside ``sax_ed.nii.gz``), else
from the mask: the LV long axis is the line through the LV cavity centroids of the slices, the
4-chamber plane holds it and the RV centroid, the 2-chamber plane holds it too, orthogonal to the
4-chamber one (as the planning of a CMR exam derives them). No library computes these planes from a
mask, hence the few lines of geometry below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy.ndimage import map_coordinates

#: A long side above this many pixels is sampled more coarsely (a panel, not a volume).
MAX_SIDE = 512
#: At least this many slices must hold LV cavity for a long axis.
MIN_SLICES = 3
_LV = re.compile(r"^\s*(lv|lv[ _-]?(cavity|blood[ _-]?pool|bp)|left[ _-]?ventricle( cavity)?)\s*$", re.IGNORECASE)
_RV = re.compile(r"^\s*(rv|rv[ _-]?(cavity|blood[ _-]?pool|bp)|right[ _-]?ventricle( cavity)?)\s*$", re.IGNORECASE)
_SAX_TOKEN = re.compile(r"(sax|short[ _-]?axis)", re.IGNORECASE)
_LAX_TOKENS = {"4-chamber": re.compile(r"(lax[ _-]?4c|4ch|4[ _-]?chamber)", re.IGNORECASE), "2-chamber": re.compile(r"(lax[ _-]?2c|2ch|2[ _-]?chamber)", re.IGNORECASE)}


@dataclass(frozen=True)
class ObliquePlane:
    """A plane of world space (RAS mm) shown on screen: ``right`` and ``down`` are unit screen directions."""

    origin: np.ndarray
    right: np.ndarray
    down: np.ndarray

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.right, self.down)


def unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=float)
    return vector / np.linalg.norm(vector)


def screen_plane(normal: np.ndarray, through: np.ndarray) -> ObliquePlane:
    """The plane of ``normal`` through ``through``, oriented as Slicer shows a reformat: up is the
    in-plane direction nearest superior (anterior for a near-axial plane), and patient right is on
    screen left (anterior on the left when the plane is near-sagittal)."""
    normal = unit(normal)
    for towards in (np.array([0.0, 0.0, 1.0]), np.array([0.0, 1.0, 0.0])):
        up = towards - (towards @ normal) * normal
        if np.linalg.norm(up) > 0.3:
            break
    up = unit(up)
    right = unit(np.cross(up, normal))
    if (right[0] if abs(right[0]) > 0.1 else right[1]) > 0:  # screen right points to patient left (or posterior)
        right = -right
    return ObliquePlane(origin=np.asarray(through, dtype=float), right=right, down=-up)


def label_of(names: dict[int, str], pattern: re.Pattern) -> int | None:
    return next((label for label, name in sorted(names.items()) if pattern.match(str(name))), None)


def lv_long_axis(labels: np.ndarray, affine: np.ndarray, lv: int, slice_axis: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(a point, a unit direction) in world mm of the line through the LV cavity centroids of the
    slices, least squares; None with fewer than MIN_SLICES slices holding LV."""
    centroids = []
    for index in range(labels.shape[slice_axis]):
        found = np.argwhere(np.take(labels, index, axis=slice_axis) == lv)
        if len(found):
            voxel = np.insert(found.mean(axis=0), slice_axis, index)
            centroids.append(np.asarray(affine)[:3, :3] @ voxel + np.asarray(affine)[:3, 3])
    if len(centroids) < MIN_SLICES:
        return None
    points = np.array(centroids)
    centre = points.mean(axis=0)
    direction = np.linalg.svd(points - centre)[2][0]  # principal direction of the centroids
    stack = np.asarray(affine)[:3, slice_axis]
    return centre, unit(direction if direction @ stack >= 0 else -direction)


def mask_axes(labels: np.ndarray, affine: np.ndarray, names: dict[int, str], slice_axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(LV axis point, LV axis direction, direction from the axis to the RV centroid) in world mm, from
    labels named LV and RV in the report; None without an LV long axis or an RV off that axis."""
    lv, rv = label_of(names, _LV), label_of(names, _RV)
    if lv is None or rv is None or not (labels == rv).any():
        return None
    axis = lv_long_axis(labels, affine, lv, slice_axis)
    if axis is None:
        return None
    centre, direction = axis
    rv_centre = np.asarray(affine)[:3, :3] @ np.argwhere(labels == rv).mean(axis=0) + np.asarray(affine)[:3, 3]
    offset = (rv_centre - centre) - ((rv_centre - centre) @ direction) * direction
    return (centre, direction, unit(offset)) if np.linalg.norm(offset) >= 1.0 else None


def standard_planes(shape: tuple[int, ...], affine: np.ndarray, labels: np.ndarray | None, names: dict[int, str], image_path: Path | None, slice_axis: int) -> dict[str, tuple[str, ObliquePlane]]:
    """{'4-chamber': (title, plane), '2-chamber': ...} of a short-axis stack, each from a long-axis image
    of the same scanner frame when one lies beside the input and crosses the stack, else from the mask
    (4-chamber: the LV long axis and the RV centroid; 2-chamber: the long axis, orthogonal to the
    4-chamber plane); {} when neither gives one."""
    found: dict[str, tuple[str, ObliquePlane]] = {}
    for view, path in (long_axis_images(image_path) if image_path is not None else {}).items():
        try:
            centre, normal = plane_of_image(path)
        except (OSError, ValueError):
            continue
        if cuts(normal, centre, shape, affine):
            found[view] = (f"{view} (plane of {path.name})", screen_plane(normal, centre))
    axes = mask_axes(labels, affine, names, slice_axis) if labels is not None else None
    if axes is not None:
        centre, direction, towards_rv = axes
        four = found["4-chamber"][1].normal if "4-chamber" in found else unit(np.cross(direction, towards_rv))
        found.setdefault("4-chamber", ("4-chamber (from mask)", screen_plane(four, centre)))
        in_four = direction - (direction @ four) * four  # the long axis as the 4-chamber plane holds it
        if "2-chamber" not in found and np.linalg.norm(in_four) > 0.1:
            found["2-chamber"] = ("2-chamber (from mask)", screen_plane(np.cross(unit(in_four), four), centre))
    return {view: found[view] for view in ("4-chamber", "2-chamber") if view in found}


def long_axis_images(image_path: Path) -> dict[str, Path]:
    """Long-axis images beside a short-axis file, named like it with the view token changed
    (``sax_ed.nii.gz`` -> ``lax_4c_ed.nii.gz``, ``lax_2c_ed.nii.gz``)."""
    if not _SAX_TOKEN.search(image_path.name):
        return {}
    rest = _SAX_TOKEN.sub("", image_path.name, count=1)
    found = {}
    for view, token in _LAX_TOKENS.items():
        for candidate in sorted(image_path.parent.glob("*.nii*")):
            if token.search(candidate.name) and token.sub("", candidate.name, count=1) == rest:
                found[view] = candidate
                break
    return found


def plane_of_image(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(centre, unit normal) in world mm of a single-slice image's plane (read from its header)."""
    image = nib.load(str(path))
    affine = image.affine
    centre = affine[:3, :3] @ ((np.asarray(image.shape[:3], dtype=float) - 1) / 2) + affine[:3, 3]
    return centre, unit(np.cross(affine[:3, 0], affine[:3, 1]))


def cuts(normal: np.ndarray, point: np.ndarray, shape: tuple[int, ...], affine: np.ndarray) -> bool:
    """Whether the plane crosses the volume (corners on both sides): same scanner frame, same heart."""
    side = (corners(shape, affine) - point) @ unit(normal)
    return bool(side.min() < 0 < side.max())


def corners(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """World positions of the 8 outer corners of a volume's voxel grid."""
    box = np.array([[n - 0.5 if bit else -0.5 for bit, n in zip(bits, shape[:3])] for bits in np.ndindex(2, 2, 2)], dtype=float)
    return box @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def centred(plane: ObliquePlane, shape: tuple[int, ...], affine: np.ndarray) -> ObliquePlane:
    """The same plane, its origin moved to the projection of the volume's centre (a compact panel)."""
    middle = corners(shape, affine).mean(axis=0)
    origin = middle - ((middle - plane.origin) @ plane.normal) * plane.normal
    return ObliquePlane(origin=origin, right=plane.right, down=plane.down)


@dataclass(frozen=True)
class PlaneGrid:
    """The screen grid of a plane over a volume: pixel (row, col) is at origin + (col - c0) * step * right
    + (row - r0) * step * down."""

    plane: ObliquePlane
    shape: tuple[int, int]
    step: float

    def world(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        r0, c0 = (self.shape[0] - 1) / 2, (self.shape[1] - 1) / 2
        p = self.plane
        return p.origin + ((np.asarray(cols, float) - c0) * self.step)[..., None] * p.right + ((np.asarray(rows, float) - r0) * self.step)[..., None] * p.down

    def pixel(self, world: np.ndarray) -> tuple[float, float]:
        """(row, col) of a world point's projection on the plane."""
        rel = np.asarray(world, float) - self.plane.origin
        return (self.shape[0] - 1) / 2 + rel @ self.plane.down / self.step, (self.shape[1] - 1) / 2 + rel @ self.plane.right / self.step


def plane_grid(plane: ObliquePlane, shape: tuple[int, ...], affine: np.ndarray, step: float) -> PlaneGrid:
    """A grid at ``step`` mm (the in-plane spacing) covering the volume's footprint on the plane."""
    rel = corners(shape, affine) - plane.origin
    half = np.array([np.abs(rel @ plane.down).max(), np.abs(rel @ plane.right).max()])
    step = max(float(step), float(2 * half.max() / (MAX_SIDE - 1)))
    size = tuple(int(2 * np.ceil(h / step) + 1) for h in half)
    return PlaneGrid(plane=plane, shape=size, step=step)  # type: ignore[arg-type]


def sample(array: np.ndarray, affine: np.ndarray, grid: PlaneGrid, *, nearest: bool = False, outside: float = 0.0) -> np.ndarray:
    """``array`` (3D, on ``affine``) resampled on the plane grid: linear (image) or nearest (labels)."""
    rows, cols = np.mgrid[: grid.shape[0], : grid.shape[1]]
    world = grid.world(rows, cols).reshape(-1, 3)
    inverse = np.linalg.inv(np.asarray(affine))
    voxels = (world @ inverse[:3, :3].T + inverse[:3, 3]).T
    values = map_coordinates(np.asarray(array), voxels, order=0 if nearest else 1, mode="constant", cval=outside)
    return values.reshape(grid.shape).astype(np.asarray(array).dtype if nearest else np.float32)
