"""Imaging-plane geometry: planes, their intersecting lines, lines in pixel grids, slice locations.

World coordinates are RAS+ millimetres throughout (DICOM's LPS is converted on entry), so planes
read from DICOM and from NIfTI affines of one scanner frame meet each other.

A :class:`Plane` indexes its pixels ``(a0, a1)`` in the order its array stores them: for DICOM that
is (row, column), for a NIfTI slice (i, j). Each axis has its own unit direction and spacing, so
non-square pixels (DICOM PixelSpacing = [between rows, between columns]) need no special case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])

#: Planes closer to parallel than this have no reliable intersecting line.
DEFAULT_MIN_ANGLE_DEG = 5.0


@dataclass(frozen=True)
class Plane:
    """A rectangular pixel grid in world space: pixel (a0, a1) lies at origin + a0*sp0*axis0 + a1*sp1*axis1."""

    origin: np.ndarray  # world position of pixel (0, 0)'s centre
    axes: np.ndarray  # (2, 3) unit directions of increasing a0 and a1
    spacing: np.ndarray  # (2,) mm between pixel centres along a0 and a1
    shape: tuple[int, int]

    @property
    def normal(self) -> np.ndarray:
        n = np.cross(self.axes[0], self.axes[1])
        return n / np.linalg.norm(n)

    @property
    def centre(self) -> np.ndarray:
        return self.to_world(np.array([(self.shape[0] - 1) / 2, (self.shape[1] - 1) / 2]))

    def to_world(self, pixels: np.ndarray) -> np.ndarray:
        """Pixel coordinates (..., 2) to world points (..., 3)."""
        pixels = np.asarray(pixels, dtype=np.float64)
        return self.origin + (pixels[..., :1] * self.spacing[0]) * self.axes[0] + (pixels[..., 1:2] * self.spacing[1]) * self.axes[1]

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) to pixel coordinates (..., 2) of their projection onto the plane."""
        offset = np.asarray(points, dtype=np.float64) - self.origin
        return np.stack([offset @ self.axes[0] / self.spacing[0], offset @ self.axes[1] / self.spacing[1]], axis=-1)

    def pixel_centres(self) -> np.ndarray:
        """World position of every pixel centre, shape (n0, n1, 3)."""
        grid = np.stack(np.meshgrid(np.arange(self.shape[0]), np.arange(self.shape[1]), indexing="ij"), axis=-1)
        return self.to_world(grid)

    def affine(self, slice_step: np.ndarray | None = None) -> np.ndarray:
        """4x4 voxel-to-world affine with this plane as slice 0; ``slice_step`` is the third column."""
        affine = np.eye(4)
        affine[:3, 0] = self.axes[0] * self.spacing[0]
        affine[:3, 1] = self.axes[1] * self.spacing[1]
        affine[:3, 2] = self.normal if slice_step is None else slice_step
        affine[:3, 3] = self.origin
        return affine


def plane_from_dicom(position: Sequence[float], orientation: Sequence[float], pixel_spacing: Sequence[float], rows: int, columns: int) -> Plane:
    """Plane of a DICOM image from ImagePositionPatient, ImageOrientationPatient, PixelSpacing, Rows, Columns.

    IOP's first triplet points along a row (increasing column index), its second down a column
    (increasing row index); PixelSpacing is [distance between rows, distance between columns].
    Pixel axes are (row, column), matching ``pixel_array``.
    """
    iop = np.asarray(orientation, dtype=np.float64).reshape(2, 3) * LPS_TO_RAS
    along_row, along_column = iop[0] / np.linalg.norm(iop[0]), iop[1] / np.linalg.norm(iop[1])
    row_spacing, column_spacing = (float(s) for s in pixel_spacing)
    return Plane(
        origin=np.asarray(position, dtype=np.float64) * LPS_TO_RAS,
        axes=np.stack([along_column, along_row]),
        spacing=np.array([row_spacing, column_spacing]),
        shape=(int(rows), int(columns)),
    )


def planes_from_affine(affine: np.ndarray, shape: Sequence[int]) -> list[Plane]:
    """One plane per slice k of a NIfTI volume (array indexed i, j, k); pixel axes are (i, j)."""
    affine = np.asarray(affine, dtype=np.float64)
    columns = affine[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    axes = np.stack([columns[:, 0] / spacing[0], columns[:, 1] / spacing[1]])
    depth = int(shape[2]) if len(shape) > 2 else 1
    return [Plane(origin=affine[:3, 3] + k * columns[:, 2], axes=axes, spacing=spacing[:2].copy(), shape=(int(shape[0]), int(shape[1]))) for k in range(depth)]


@dataclass(frozen=True)
class Line:
    """A world line: point + t * direction (unit)."""

    point: np.ndarray
    direction: np.ndarray

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Perpendicular distance (mm) of world points (..., 3) to the line."""
        offset = np.asarray(points) - self.point
        along = offset @ self.direction
        return np.linalg.norm(offset - along[..., None] * self.direction, axis=-1)


def angle_between(a: Plane, b: Plane) -> float:
    """Angle between two planes in degrees, 0..90."""
    cosine = abs(float(a.normal @ b.normal))
    return float(np.degrees(np.arccos(min(1.0, cosine))))


def intersect(a: Plane, b: Plane, min_angle_deg: float = DEFAULT_MIN_ANGLE_DEG) -> Line | None:
    """The line where planes a and b meet, or None when they are parallel within ``min_angle_deg``.

    The point returned is the one on the line closest to the midpoint of the two planes' centres,
    so it sits near both images rather than at some far-off solution of the linear system.
    """
    if angle_between(a, b) < min_angle_deg:
        return None
    direction = np.cross(a.normal, b.normal)
    direction /= np.linalg.norm(direction)
    # Solve n_a.x = d_a, n_b.x = d_b, direction.x = direction.(midpoint) for the anchored point.
    anchor = (a.centre + b.centre) / 2
    system = np.stack([a.normal, b.normal, direction])
    rhs = np.array([a.normal @ a.origin, b.normal @ b.origin, direction @ anchor])
    return Line(point=np.linalg.solve(system, rhs), direction=direction)


def line_in_pixels(line: Line, plane: Plane) -> tuple[np.ndarray, np.ndarray]:
    """A line lying in ``plane`` as (pixel point, pixel direction), direction in pixel units (not unit)."""
    point = plane.to_pixels(line.point)
    direction = plane.to_pixels(line.point + line.direction) - point
    return point, direction


def clip_to_image(point: np.ndarray, direction: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """Endpoints (2, 2) of the pixel-space line inside the image's pixel-centre box, or None when it misses.

    Liang-Barsky clipping against 0 <= a_i <= shape_i - 1.
    """
    low, high = -np.inf, np.inf
    for axis in range(2):
        lo, hi = 0.0, shape[axis] - 1.0
        if abs(direction[axis]) < 1e-12:
            if not lo <= point[axis] <= hi:
                return None
            continue
        t0, t1 = (lo - point[axis]) / direction[axis], (hi - point[axis]) / direction[axis]
        low, high = max(low, min(t0, t1)), min(high, max(t0, t1))
    if low > high:
        return None
    return np.stack([point + low * direction, point + high * direction])


def meeting_point_2d(p1: np.ndarray, d1: np.ndarray, p2: np.ndarray, d2: np.ndarray) -> np.ndarray | None:
    """Where two 2D lines cross, or None when they are parallel."""
    matrix = np.stack([d1, -d2], axis=1)
    if abs(np.linalg.det(matrix)) < 1e-9:
        return None
    t = np.linalg.solve(matrix, p2 - p1)
    return p1 + t[0] * d1


def stack_positions(planes: Sequence[Plane]) -> np.ndarray:
    """Position (mm) of each plane's origin along the stack normal (the first plane's normal)."""
    normal = planes[0].normal
    return np.array([float(p.origin @ normal) for p in planes])


#: The heart's long axis from base to apex points to the patient's left, anterior and inferior: in RAS+
#: that is (-x, +y, -z). Every real short-axis prescription is oblique and has a clear sign along it.
APEX_DIRECTION_RAS = np.array([-1.0, 1.0, -1.0]) / np.sqrt(3.0)


def slice_locations(planes: Sequence[Plane]) -> np.ndarray:
    """Relative location of each slice of a parallel short-axis stack in [0, 1]: 0 at the base, 1 at the apex.

    The rule is anatomical, not the storage order, so DICOM series, NIfTI stacks and index-space sets agree
    (an inconsistent target would teach the encoder noise): positions along the stack normal, signed so
    that increasing means towards ``APEX_DIRECTION_RAS``. A normal along a world axis means the file
    carries no scanner geometry (ACDC's diagonal NIfTI affines); the storage order is used then, which
    for ACDC and M&Ms runs base to apex (checked on ACDC: the heart shrinks with the index in 160/160 volumes).
    """
    if len(planes) == 1:
        return np.zeros(1)
    normal = planes[0].normal
    if np.abs(normal).max() > 1 - 1e-6:
        positions = np.arange(len(planes), dtype=np.float64)
    else:
        positions = stack_positions(planes) * (1.0 if normal @ APEX_DIRECTION_RAS >= 0 else -1.0)
    span = positions.max() - positions.min()
    if span == 0:
        return np.zeros(len(planes))
    return (positions - positions.min()) / span


def stack_spacing(planes: Sequence[Plane]) -> float:
    """Median distance between neighbouring slices of a stack, from geometry alone."""
    positions = np.sort(stack_positions(planes))
    return float(np.median(np.diff(positions))) if len(positions) > 1 else 0.0
