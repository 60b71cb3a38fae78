"""RT Structure Set (PS3.3 A.19) of a label mask: one ROI per label, closed planar contours per slice.

highdicom writes no RTSTRUCT and rt-utils needs OpenCV, so the dataset is assembled here with pydicom; the
contours come from scikit-image's ``find_contours`` (marching squares at level 0.5 of each binary slice,
padded so every contour closes), mapped to patient coordinates by the slice's own geometry. Holes (the
myocardium's ring) are separate contours inside the outer one; planning systems combine nested contours of
one ROI by the even-odd rule.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage
from skimage.measure import find_contours

from medsuite import __version__
from medsuite.export.algorithm import Algorithm
from medsuite.export.dicom_seg import SERIES_NUMBER_OFFSET, check_labels, series_description
from medsuite.export.source import SourceSeries
from medsuite.export.terminology import term_for
from medsuite.io import LPS_TO_RAS, atomic_path

# Patient and study attributes an RTSTRUCT shares with the images it outlines (PS3.3 C.7.1.1, C.7.2.1).
_COPIED = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName", "StudyDescription",
)


def slice_contours(binary: np.ndarray) -> list[np.ndarray]:
    """Closed contours of a 2D binary slice (rows, columns) as (N, 2) arrays of (row, column) pixel indices."""
    padded = np.pad(binary.astype(np.float32), 1)
    return [c[:-1] - 1.0 for c in find_contours(padded, 0.5) if len(c) > 3]  # the last point repeats the first


def _code_item(code) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code.value, code.scheme_designator, code.meaning
    return item


def _contour_image(ds: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    return item


def write_rtstruct(target: Path, mask: np.ndarray, source: SourceSeries, affine: np.ndarray, labels: dict[int, str], algorithm: Algorithm) -> Path:
    """``mask`` and ``affine`` (RAS, medsuite's convention) are the source grid; slice k is source instance k."""
    check_labels(mask, labels, source.folder)
    first = source.slices[0]
    lps = LPS_TO_RAS @ affine
    now = datetime.now()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = RTStructureSetStorage, hd.UID()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = RTStructureSetStorage, meta.MediaStorageSOPInstanceUID
    for keyword in _COPIED:
        setattr(ds, keyword, first.get(keyword, ""))
    ds.Modality, ds.SeriesInstanceUID = "RTSTRUCT", hd.UID()
    ds.SeriesNumber = int(first.get("SeriesNumber", 0) or 0) + SERIES_NUMBER_OFFSET + 1
    ds.SeriesDescription = series_description("RTSTRUCT", algorithm, source)[:64]
    ds.OperatorsName = ""
    ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = "medsuite", algorithm.name, __version__
    ds.DeviceSerialNumber = algorithm.model_sha256[:16]
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = first.FrameOfReferenceUID  # Frame of Reference module (PS3.3 A.19.3)
    ds.PositionReferenceIndicator = first.get("PositionReferenceIndicator", "")
    ds.StructureSetLabel = f"medsuite {algorithm.name}"[:16]
    ds.StructureSetDescription = series_description("Contours by", algorithm, source)
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.StructureSetDate, ds.StructureSetTime

    series_ref = Dataset()
    series_ref.SeriesInstanceUID = first.SeriesInstanceUID
    series_ref.ContourImageSequence = Sequence([_contour_image(s) for s in source.slices])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management, as PS3.3 C.8.8.5 asks
    study_ref.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame_ref.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_ref])

    rois, contours, observations = [], [], []
    for value, name in sorted(labels.items()):
        term = term_for(name)
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = value, first.FrameOfReferenceUID, term.label
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        roi.ROIGenerationDescription = f"{algorithm.name}, {algorithm.version}"[:64]  # the model sha256 is in the next item
        roi.ROIDerivationAlgorithmIdentificationSequence = algorithm.identification()
        rois.append(roi)
        items = []
        for k, instance in enumerate(source.slices):
            for points in slice_contours(mask[:, :, k].T == value):
                index = np.column_stack([points[:, 1], points[:, 0], np.full(len(points), k), np.ones(len(points))])  # (i=column, j=row, k)
                world = (lps @ index.T).T[:, :3]
                item = Dataset()
                item.ContourImageSequence = Sequence([_contour_image(instance)])
                item.ContourGeometricType, item.NumberOfContourPoints = "CLOSED_PLANAR", len(world)
                item.ContourData = [f"{v:.4f}" for v in world.ravel()]  # DS: 16 characters at most
                items.append(item)
        contour = Dataset()
        contour.ReferencedROINumber, contour.ROIDisplayColor = value, list(term.rgb)
        contour.ContourSequence = Sequence(items)
        contours.append(contour)
        observation = Dataset()
        observation.ObservationNumber, observation.ReferencedROINumber = value, value
        observation.RTROIInterpretedType = "ORGAN" if term.category.value == "91723000" else ""
        observation.ROIInterpreter = ""
        observation.RTROIIdentificationCodeSequence = Sequence([_code_item(term.type)])
        observations.append(observation)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(contours)
    ds.RTROIObservationsSequence = Sequence(observations)
    ds.ApprovalStatus = "UNAPPROVED"  # automatic contours: a person must review them before planning
    with atomic_path(target) as tmp:
        pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
    return target
