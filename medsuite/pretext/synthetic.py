"""A synthetic multi-plane cardiac exam with exactly known geometry, for the demo and the tests.

A left-ventricle-like ellipsoid (bright blood pool in a darker myocardial shell) lies along a tilted
long axis. The SAX stack is perpendicular to that axis; the 2CH, 3CH and 4CH planes all contain it,
rotated about it, so every pair of long-axis planes meets exactly on the long axis. Images are the
analytic phantom evaluated at each pixel centre, so no resampling blurs the geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsuite.io import write_nifti
from medsuite.pretext.geometry import Plane

#: Rotation of each long-axis plane about the long axis, degrees (4CH = 0).
LAX_ROTATIONS = {"2CH": 90.0, "3CH": 135.0, "4CH": 0.0}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def phantom_frame(apex: np.ndarray | None = None, axis: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(apex-side centre point, long-axis unit vector, a unit vector perpendicular to it) of the phantom."""
    centre = np.array([10.0, -20.0, 30.0]) if apex is None else apex
    long_axis = _unit(np.array([0.6, -0.5, 0.62]) if axis is None else axis)
    across = _unit(np.cross(long_axis, [0.0, 0.0, 1.0]))
    return centre, long_axis, across


def phantom(points: np.ndarray, centre: np.ndarray, long_axis: np.ndarray) -> np.ndarray:
    """Intensity at world points (..., 3): blood pool 1.0, myocardium 0.45, background 0.1."""
    offset = points - centre
    along = offset @ long_axis
    radial = np.linalg.norm(offset - along[..., None] * long_axis, axis=-1)
    inner = (along / 40.0) ** 2 + (radial / 22.0) ** 2
    outer = (along / 48.0) ** 2 + (radial / 31.0) ** 2
    return np.where(inner <= 1, 1.0, np.where(outer <= 1, 0.45, 0.1)).astype(np.float32)


def synthetic_planes(n_sax: int = 6, sax_gap_mm: float = 8.0, size: int = 64) -> dict[str, list[Plane]]:
    """The exam's planes: a SAX stack across the long axis and three long-axis planes containing it.

    Long-axis planes use non-square pixels (1.5 mm between rows, 1.2 mm between columns) so every
    consumer is exercised on row and column spacing that differ.
    """
    centre, long_axis, across = phantom_frame()
    planes: dict[str, list[Plane]] = {}
    sax_axes = np.stack([across, np.cross(long_axis, across)])
    sax_spacing = np.array([1.4, 1.4])
    offsets = (np.arange(n_sax) - (n_sax - 1) / 2) * sax_gap_mm
    half = (size - 1) / 2
    planes["SAX"] = [Plane(origin=centre + o * long_axis - half * sax_spacing[0] * sax_axes[0] - half * sax_spacing[1] * sax_axes[1], axes=sax_axes, spacing=sax_spacing, shape=(size, size)) for o in offsets]
    lax_spacing = np.array([1.5, 1.2])
    for kind, degrees in LAX_ROTATIONS.items():
        angle = np.radians(degrees)
        in_plane = np.cos(angle) * across + np.sin(angle) * np.cross(long_axis, across)
        axes = np.stack([long_axis, in_plane])
        origin = centre - half * lax_spacing[0] * axes[0] - half * lax_spacing[1] * axes[1]
        planes[kind] = [Plane(origin=origin, axes=axes, spacing=lax_spacing, shape=(size, size))]
    return planes


def write_synthetic_exam(folder: Path, n_sax: int = 6, sax_gap_mm: float = 8.0, size: int = 64, seed: int = 0) -> Path:
    """Write sax_ed.nii.gz and lax_2c/3c/4c_ed.nii.gz (true affines) into ``folder``, the cinema_nifti layout
    of one exam at end-diastole; return the folder."""
    rng = np.random.default_rng(seed)
    centre, long_axis, _ = phantom_frame()
    names = {"SAX": "sax_ed", "2CH": "lax_2c_ed", "3CH": "lax_3c_ed", "4CH": "lax_4c_ed"}
    for kind, planes in synthetic_planes(n_sax, sax_gap_mm, size).items():
        stack = np.stack([phantom(p.pixel_centres(), centre, long_axis) for p in planes], axis=-1)
        stack = stack + rng.normal(0, 0.03, stack.shape).astype(np.float32)
        step = (planes[-1].origin - planes[0].origin) / (len(planes) - 1) if len(planes) > 1 else None
        write_nifti(Path(folder) / f"{names[kind]}.nii.gz", stack, planes[0].affine(step))
    return Path(folder)
