"""DICOM-SEG (PS3.3 A.51) of a label mask with highdicom: one segment per label, on the source series' planes."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np

from medsuite import __version__
from medsuite.errors import MedsuiteError
from medsuite.export.algorithm import Algorithm
from medsuite.export.source import SourceSeries
from medsuite.export.terminology import term_for
from medsuite.io import atomic_path

# Derived series are numbered after their source, as scanners number reconstructions.
SERIES_NUMBER_OFFSET = 1000


def series_description(kind: str, algorithm: Algorithm, source: SourceSeries) -> str:
    """'SEG neunet, cine frame 3 of 25 (trigger time 120 ms)': short enough for an LO (64 characters);
    medsuite's version is in SoftwareVersions and the algorithm identification."""
    return f"{kind} {algorithm.name}, {source.frame_note}" if source.frame_note else f"{kind} {algorithm.name}"


def check_labels(mask: np.ndarray, labels: dict[int, str], where: Path) -> None:
    values = sorted(labels)
    if values != list(range(1, len(values) + 1)):
        raise MedsuiteError(where, f"label values {values} are not 1..N", "DICOM segment numbers run 1..N: relabel the model's classes")
    unknown = set(np.unique(mask).tolist()) - {0, *values}
    if unknown:
        raise MedsuiteError(where, f"the mask holds values {sorted(unknown)} that no label names", "give the label map of the model")
    if not mask.any():
        raise MedsuiteError(where, "the mask is empty", "a DICOM-SEG/RTSTRUCT needs at least one labelled voxel; keep the NIfTI mask")


def segment_descriptions(labels: dict[int, str], algorithm: Algorithm) -> list[hd.seg.SegmentDescription]:
    descriptions = []
    for value, name in sorted(labels.items()):
        term = term_for(name)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=value,
                segment_label=term.label,
                segmented_property_category=term.category,
                segmented_property_type=term.type,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm.identification(),
                anatomic_regions=[term.region] if term.region is not None else None,
                display_color=hd.color.CIELabColor.from_rgb(*term.rgb),
            )
        )
    return descriptions


def write_dicom_seg(target: Path, mask: np.ndarray, source: SourceSeries, labels: dict[int, str], algorithm: Algorithm) -> Path:
    """``mask`` is on the source grid (i, j, k as medsuite.io reads the series); slice k becomes the frame of
    source instance k. Empty slices are omitted, as highdicom does by default."""
    check_labels(mask, labels, source.folder)
    frames = np.stack([mask[:, :, k].T for k in range(mask.shape[2])]).astype(np.uint8)  # (slices, rows, columns)
    first = source.slices[0]
    seg = hd.seg.Segmentation(
        source_images=source.slices,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(labels, algorithm),
        series_instance_uid=hd.UID(),  # new UIDs for every output object, as DICOM requires
        series_number=int(first.get("SeriesNumber", 0) or 0) + SERIES_NUMBER_OFFSET,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medsuite",
        manufacturer_model_name=algorithm.name,
        software_versions=__version__,
        device_serial_number=algorithm.model_sha256[:16],
        content_label="MEDSUITE",
        content_description=series_description("Segmentation", algorithm, source)[:64],
        content_creator_name="medsuite^automatic",
        series_description=series_description("SEG", algorithm, source)[:64],
    )
    with atomic_path(target) as tmp:
        seg.save_as(tmp)
    return target
