"""Test helper: write a NIfTI-style volume (RAS affine, array i, j, k) as a classic single-frame DICOM MR series.

Written by hand with pydicom because no library turns an arbitrary oblique affine into a DICOM series;
each slice k gets ImagePositionPatient = LPS affine @ (0, 0, k), the row/column direction cosines of the
affine's i and j columns, and pixel rows along j, columns along i (the inverse of medsuite.io.from_sitk).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_dicom_series(array: np.ndarray, affine: np.ndarray, folder: Path, *, phases: int = 1, with_frame_of_reference: bool = True) -> list[Path]:
    """One file per slice (and per phase: a cine repeats every position ``phases`` times with its own
    trigger time, the phase's image scaled by 1 + phase / 10). Returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    lps = LPS_TO_RAS @ affine
    spacing = np.sqrt((lps[:3, :3] ** 2).sum(axis=0))
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    pixels = np.clip(array, 0, None).astype(np.uint16)
    files = []
    for phase in range(phases):
        for k in range(array.shape[2]):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = MRImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = pydicom.Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
            ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Phantom", "PHANTOM01", "19700101", "O"
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20260101", "120000", "1", "A1", ""
            ds.SeriesNumber, ds.InstanceNumber, ds.Modality, ds.Manufacturer = 1, phase * array.shape[2] + k + 1, "MR", "medsuite-tests"
            if with_frame_of_reference:
                ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame_of_reference, ""
            ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "GR", "SS", "", "2D"
            ds.EchoTime, ds.RepetitionTime, ds.EchoTrainLength, ds.MagneticFieldStrength = 1.5, 3.0, 1, 1.5
            ds.TriggerTime = 40.0 * phase
            ds.ImagePositionPatient = [float(v) for v in (lps @ np.array([0.0, 0.0, k, 1.0]))[:3]]
            ds.ImageOrientationPatient = [float(v) for v in np.concatenate([lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]])]
            ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # between rows (j), between columns (i)
            ds.SliceThickness = float(spacing[2])
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.Rows, ds.Columns = array.shape[1], array.shape[0]
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.PixelData = (pixels[:, :, k].T * (1 + phase / 10)).astype(np.uint16).tobytes()
            target = folder / f"IM{phase:02d}{k:03d}.dcm"
            ds.save_as(target, enforce_file_format=True)
            files.append(target)
    return files
