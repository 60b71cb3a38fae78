"""Mask correction from the browser: brush/eraser strokes on one view become voxel edits, with undo,
and the corrected mask is written back in the input's own voxel order and affine.

The canvas (streamlit-drawable-canvas) returns the strokes as an RGBA picture of the displayed
view. A voxel of the slice is painted when the canvas pixel at the centre of its on-screen footprint
is covered (alpha >= 50 %), so what the reader sees under the brush is what changes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from medsuite.errors import MedsuiteError
from medsuite.io import sha256_file, write_nifti
from medsuite.viewer.slicing import plane_axes

LOG_NAME = "corrections.jsonl"
CORRECTED_SUFFIX = "_corrected.nii.gz"


def painted_voxels(canvas_rgba: np.ndarray, plane: str, index: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Canonical voxel indices (i, j, k arrays) under the strokes of a canvas showing ``plane_slice``."""
    fixed, row_axis, col_axis = plane_axes(plane)
    n_rows, n_cols = shape[row_axis], shape[col_axis]
    height, width = canvas_rgba.shape[:2]
    centres_r = ((np.arange(n_rows) + 0.5) * height / n_rows).astype(int)
    centres_c = ((np.arange(n_cols) + 0.5) * width / n_cols).astype(int)
    rows, cols = np.nonzero(canvas_rgba[np.ix_(centres_r, centres_c)][..., 3] >= 128)
    voxel: list[np.ndarray] = [np.empty(0, np.int64)] * 3
    voxel[fixed] = np.full(rows.size, index, dtype=np.int64)
    voxel[row_axis] = (n_rows - 1 - rows).astype(np.int64)  # undo the flips of plane_slice
    voxel[col_axis] = (n_cols - 1 - cols).astype(np.int64)
    return tuple(voxel)  # type: ignore[return-value]


@dataclass
class MaskEdit:
    """A label map being corrected (canonical voxel order) with an undo stack of changed voxels."""

    labels: np.ndarray
    history: list[tuple[tuple[np.ndarray, ...], np.ndarray]] = field(default_factory=list)

    def paint(self, voxels: tuple[np.ndarray, ...], label: int) -> int:
        """Set ``voxels`` to ``label`` (0 erases); returns how many voxels changed."""
        before = self.labels[voxels]
        changed = before != label
        if not changed.any():
            return 0
        where = tuple(v[changed] for v in voxels)
        self.history.append((where, before[changed].copy()))
        self.labels[where] = label
        return int(changed.sum())

    def undo(self) -> int:
        """Revert the last stroke; returns how many voxels it restored (0 when nothing to undo)."""
        if not self.history:
            return 0
        where, before = self.history.pop()
        self.labels[where] = before
        return int(before.size)

    @property
    def edited(self) -> bool:
        return bool(self.history)


def to_original_order(canonical: np.ndarray, original_affine: np.ndarray) -> np.ndarray:
    """Undo nibabel's ``as_closest_canonical`` permutation/flips, back to the file's voxel order."""
    original = nib.orientations.io_orientation(original_affine)
    canonical_ornt = nib.orientations.axcodes2ornt(("R", "A", "S"))
    return nib.orientations.apply_orientation(canonical, nib.orientations.ornt_transform(canonical_ornt, original))


def save_corrected(
    labels_canonical: np.ndarray, reference: nib.Nifti1Image, target: Path, *, log_dir: Path, case: str, source_mask: Path, reviewer: str, changed: int
) -> dict[str, Any]:
    """Write the corrected mask atomically with the reference's affine and voxel order; log a line."""
    if not reviewer.strip():
        raise MedsuiteError("Reviewer", "is empty", "type your name so the correction can be traced")
    array = to_original_order(labels_canonical, reference.affine)
    if array.shape != reference.shape[:3]:
        raise MedsuiteError(target, f"would have shape {array.shape}, the input {reference.shape[:3]}", "reload the case and correct it again")
    dtype = np.uint8 if int(array.max(initial=0)) < 256 and int(array.min(initial=0)) >= 0 else np.int16
    write_nifti(target, array.astype(dtype), reference.affine, inputs=[source_mask])
    entry = {
        "case": case,
        "corrected": str(target),
        "corrected_sha256": sha256_file(target),
        "source_mask": str(source_mask),
        "source_mask_sha256": sha256_file(source_mask),
        "voxels_changed": int(changed),
        "reviewer": reviewer.strip(),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    fd = os.open(log_dir / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())  # one write: concurrent lines never interleave
    finally:
        os.close(fd)
    return entry
