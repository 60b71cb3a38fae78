"""Mask output formats, as ``--output-format`` spells them, and the file each one writes."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class OutputFormat(str, Enum):
    nifti = "nifti"
    dicom_seg = "dicom-seg"
    rtstruct = "rtstruct"
    all = "all"


OUTPUT_FORMAT_HELP = (
    "Mask formats: nifti (always written), dicom-seg, rtstruct, or all; repeat the option for several. "
    "DICOM-SEG and RTSTRUCT need a DICOM series input and reference its instances."
)
# report.json keys of each format's file (docs/interoperability.md)
REPORT_KEYS = {OutputFormat.nifti: "nifti", OutputFormat.dicom_seg: "dicom_seg", OutputFormat.rtstruct: "rtstruct"}


def resolve_formats(values: Iterable[OutputFormat | str] | None) -> tuple[OutputFormat, ...]:
    """'all' expanded, duplicates dropped, NIfTI always first (the viewer, --continue and report figures use it)."""
    chosen = {OutputFormat(v) for v in (values or [])}
    if OutputFormat.all in chosen:
        chosen = set(REPORT_KEYS)
    return (OutputFormat.nifti, *sorted(chosen - {OutputFormat.nifti}, key=list(REPORT_KEYS).index))


def output_names(stem: str, formats: Iterable[OutputFormat]) -> dict[str, str]:
    """File name of each format's output, keyed as report.json keys them."""
    suffix = {OutputFormat.nifti: ".nii.gz", OutputFormat.dicom_seg: ".seg.dcm", OutputFormat.rtstruct: ".rtstruct.dcm"}
    return {REPORT_KEYS[f]: f"{stem}{suffix[f]}" for f in formats}

