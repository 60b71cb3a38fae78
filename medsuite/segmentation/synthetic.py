"""A generated short-axis-like cine frame (LV blood pool, myocardial ring, RV crescent) with its labels,
on an oblique affine: for the demo and tests, where no real cardiac data may ship."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from medsuite.data.samples import oblique_affine
from medsuite.io import Volume, write_nifti


def synthetic_short_axis(shape=(144, 128, 9), seed: int = 0, affine: np.ndarray | None = None) -> tuple[Volume, np.ndarray]:
    """(image volume, label array 0 bg / 1 RV / 2 Myo / 3 LV); the heart shrinks toward the apex."""
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    x, y = np.meshgrid(np.arange(nx) - nx * 0.52, np.arange(ny) - ny * 0.5, indexing="ij")
    labels = np.zeros(shape, np.uint8)
    for k in range(nz):
        scale = 1.0 - 0.6 * k / max(nz - 1, 1)
        r_lv, wall = 11.0 * scale + 3, 6.0
        lv = np.hypot(x, y) < r_lv
        myo = (np.hypot(x, y) < r_lv + wall) & ~lv
        # the RV crescent beside the LV, on the side where ACDC's grid (NIfTI index order) has it
        rv = (np.hypot((y - 0.4 * r_lv) / 1.1, (x + r_lv + 8) / 1.6) < r_lv * 0.95) & ~(np.hypot(x, y) < r_lv + wall + 1)
        labels[..., k][rv] = 1
        labels[..., k][myo] = 2
        labels[..., k][lv] = 3
    # bSSFP-like contrast, relative to ACDC's mean intensities: bright blood, dark myocardium, dark lungs
    body = (np.hypot(x / (nx * 0.45), y / (ny * 0.42)) < 1.0).astype(np.float32) * 0.3
    for side in (-1, 1):
        body[np.hypot((y - side * ny * 0.05) / (ny * 0.12), (x - side * nx * 0.25) / (nx * 0.12)) < 1.0] = 0.05
    intensity = np.array([0.0, 0.75, 0.25, 0.75], np.float32)[labels]
    image = np.where(labels > 0, intensity, body[..., None])
    image = ndimage.gaussian_filter(image, sigma=(1.0, 1.0, 0.0)) + rng.normal(0, 0.03, shape).astype(np.float32)
    image = (np.clip(image, 0, None) * 1000).astype(np.float32)
    return Volume(array=image, affine=oblique_affine(spacing=(1.5, 1.5, 8.0), angles_deg=(20.0, -35.0, 10.0), origin=(-110.0, 60.0, 30.0)) if affine is None else affine), labels


def write_synthetic_acdc(root: Path, patients: int, shape=(40, 36, 4)) -> Path:
    """A generated cohort in ACDC's NIfTI layout (patientNNN/patientNNN_frame01[_gt].nii.gz, diagonal 1.5 x 1.5
    x 10 mm affines) for card ``acdc_nifti`` with ``--root``: tests and benchmarks of training without ACDC."""
    for p in range(1, patients + 1):
        vol, labels = synthetic_short_axis(shape=shape, seed=p, affine=np.diag([1.5, 1.5, 10.0, 1.0]))
        folder = Path(root) / f"patient{p:03d}"
        write_nifti(folder / f"patient{p:03d}_frame01.nii.gz", vol.array, vol.affine)
        write_nifti(folder / f"patient{p:03d}_frame01_gt.nii.gz", labels, vol.affine)
    return Path(root)
