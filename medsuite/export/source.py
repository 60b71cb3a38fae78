"""The DICOM instances a mask was computed on, matched to the mask's slices by geometry, not file order."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from medsuite.dicom_cine import frame_note
from medsuite.errors import MedsuiteError
from medsuite.io import LPS_TO_RAS, Volume

# A slice counts as on the grid when its position lies within this fraction of a voxel of an integer index.
GRID_TOLERANCE = 1e-3


@dataclass
class SourceSeries:
    """``slices[k]`` is the instance whose pixels are the volume's ``array[:, :, k]`` (rows along j, columns along i)."""

    slices: list[Dataset]
    folder: Path
    frame_note: str | None = None  # which cine phase was segmented, when the series has several

    @property
    def instance_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.slices]


def is_dicom_volume(vol: Volume) -> bool:
    return bool(vol.meta.get("dicom_files"))


def source_series(vol: Volume) -> SourceSeries:
    """Read the headers of ``vol``'s DICOM files and order them by slice index along the volume's k axis.

    Refuses (one line) a series without a frame of reference, or whose slices are not the volume's planes,
    since a DICOM-SEG or RTSTRUCT placed in another frame would land in the wrong place in a viewer.
    """
    phases = vol.meta.get("dicom_phase_files")
    files = [Path(f) for f in (phases[vol.meta["frame"]] if phases else vol.meta.get("dicom_files", []))]
    folder = files[0].parent if files else Path(str(vol.source))
    if not files:
        raise MedsuiteError(vol.source, "is not a DICOM series", "DICOM-SEG and RTSTRUCT need a DICOM series input; use --output-format nifti")
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    if any("FrameOfReferenceUID" not in ds for ds in datasets):
        raise MedsuiteError(folder, "has no FrameOfReferenceUID (removed by anonymisation?)", "DICOM-SEG/RTSTRUCT must share the source's frame of reference: give the original series or use --output-format nifti")
    lps = LPS_TO_RAS @ vol.affine
    to_index = np.linalg.inv(lps)
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    slices: dict[int, Dataset] = {}
    for ds in datasets:
        index = (to_index @ np.array([*map(float, ds.ImagePositionPatient), 1.0]))[:3]
        k = int(round(index[2]))
        row_dir, col_dir = np.asarray(ds.ImageOrientationPatient, float).reshape(2, 3)
        on_grid = np.allclose(index, [0, 0, k], atol=GRID_TOLERANCE) and 0 <= k < vol.array.shape[2]
        same_plane = np.allclose(row_dir, lps[:3, 0] / spacing[0], atol=1e-4) and np.allclose(col_dir, lps[:3, 1] / spacing[1], atol=1e-4)
        if not (on_grid and same_plane) or k in slices:
            raise MedsuiteError(folder, f"instance {ds.SOPInstanceUID} is not slice {k} of the segmented grid", "give one series of parallel slices (one cine phase per position)")
        slices[k] = ds
    if len(slices) != vol.array.shape[2]:
        raise MedsuiteError(folder, f"has {len(slices)} slices for a volume of {vol.array.shape[2]}", "give the complete series")
    return SourceSeries(slices=[slices[k] for k in range(len(slices))], folder=folder, frame_note=frame_note(vol.meta, vol.meta.get("frame")))
