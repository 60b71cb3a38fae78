"""Multi-view cardiac exams: DICOM exam folders and NIfTI sets -> views with per-slice planes.

A view is one series: a short-axis (SAX) stack of parallel slices, or a long-axis slice (2CH, 3CH,
4CH), possibly with cine phases at the same position. Series are grouped by StudyInstanceUID and
SeriesInstanceUID (FrameOfReferenceUID is not required: anonymisers strip it) and classified by
their description, falling back to geometry (a parallel stack of several slices is short-axis).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medsuite.errors import MedsuiteError
from medsuite.io import read_image
from medsuite.pretext.geometry import Plane, plane_from_dicom, planes_from_affine, stack_spacing

VIEW_KINDS = ("SAX", "2CH", "3CH", "4CH")

# Vendor descriptions and file names seen in practice; order matters (LVOT before 'sa' matches).
_VIEW_PATTERNS = (
    ("3CH", r"lvot|3[ -_]?ch|3c\b|three[ -_]?chamber|_3c"),
    ("2CH", r"2[ -_]?ch|2c\b|two[ -_]?chamber|vla|_2c"),
    ("4CH", r"4[ -_]?ch|4c\b|four[ -_]?chamber|hla|_4c"),
    ("SAX", r"short[ -_]?axis|\bsax?\b|\bsao\b|sa[ _]|^sax|_sax|sax_|stack"),
)


def classify_description(text: str) -> str | None:
    """SAX / 2CH / 3CH / 4CH from a series description or file name, or None."""
    lowered = text.lower()
    for kind, pattern in _VIEW_PATTERNS:
        if re.search(pattern, lowered):
            return kind
    return None


@dataclass
class View:
    """One series: frames (T, S, n0, n1) and one plane per slice, slices sorted along the normal."""

    name: str
    kind: str | None
    frames: np.ndarray
    planes: list[Plane]
    source: Path
    meta: dict = field(default_factory=dict)

    @property
    def image(self) -> np.ndarray:
        """The first phase, (S, n0, n1)."""
        return self.frames[0]

    def affine(self) -> np.ndarray:
        """The stack's voxel-to-world affine (slice axis = third), consistent with ``planes``; a NIfTI view keeps its own."""
        if "affine" in self.meta:
            return np.asarray(self.meta["affine"], dtype=np.float64)
        if len(self.planes) > 1:
            return self.planes[0].affine((self.planes[-1].origin - self.planes[0].origin) / (len(self.planes) - 1))
        thickness = float(self.meta.get("slice_thickness") or 1.0)
        return self.planes[0].affine(self.planes[0].normal * thickness)

    @property
    def slice_spacing(self) -> float:
        return stack_spacing(self.planes)


@dataclass
class Exam:
    name: str
    views: list[View]

    def primary(self) -> dict[str, View]:
        """One view per kind: the SAX series with most slices, the long-axis series with most phases (the cine)."""
        chosen: dict[str, View] = {}
        for view in self.views:
            if view.kind is not None and (view.kind not in chosen or _preference(view) > _preference(chosen[view.kind])):
                chosen[view.kind] = view
        return chosen


def _preference(view: View) -> tuple[int, int]:
    slices, phases = len(view.planes), view.frames.shape[0]
    return (slices, phases) if view.kind == "SAX" else (phases, -slices)


def read_exam(path: str | Path) -> Exam:
    """A DICOM exam folder (any depth) or a folder of NIfTI views."""
    path = Path(path)
    if not path.is_dir():
        raise MedsuiteError(path, "is not a folder", "give a DICOM exam folder or a folder of NIfTI views (sax*.nii.gz, lax_4c*.nii.gz...)")
    if any(path.glob("*.nii*")):
        return read_nifti_set(path)
    return read_dicom_exam(path)


def read_dicom_exam(folder: Path) -> Exam:
    """The one exam (study) under ``folder``; several studies are refused with their count."""
    exams = read_dicom_exams(folder)
    if len(exams) > 1:
        raise MedsuiteError(folder, f"holds {len(exams)} studies", "give the folder of one exam (or use a dicom_exam source for many)")
    return exams[0]


def read_dicom_exams(folder: Path) -> list[Exam]:
    """Every exam under ``folder`` (any depth): series grouped by StudyInstanceUID, then by series."""
    import pydicom

    studies: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for file in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(file)
        except Exception:  # not DICOM (a README, a thumbnail): skip quietly
            continue
        if not all(hasattr(ds, tag) for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "PixelData")):
            continue
        # Without UIDs (aggressive anonymisers) the folder stands for the study and the series.
        study = str(ds.get("StudyInstanceUID", "")) or str(file.parent.parent)
        series = str(ds.get("SeriesInstanceUID", "")) or str(file.parent)
        studies[study][series].append((file, ds))
    if not studies:
        raise MedsuiteError(folder, "holds no DICOM images with position, orientation and pixel spacing", "give the folder of a cardiac MR exam")
    exams = []
    for number, series in enumerate(studies.values()):
        views = sorted((_dicom_view(items) for items in series.values()), key=lambda v: (v.meta.get("series_number", 0), v.name))
        exams.append(Exam(name=Path(folder).name if len(studies) == 1 else f"{Path(folder).name}_{number:03d}", views=views))
    return exams


def _dicom_view(items: list) -> View:
    first_file, first = items[0]
    # Slices are distinct positions; cine phases share one position and are ordered by time.
    by_position: dict[tuple, list] = defaultdict(list)
    for _file, ds in items:
        key = tuple(np.round(np.asarray(ds.ImagePositionPatient, dtype=float), 2))
        by_position[key].append(ds)
    planes, stacks = [], []
    for datasets in by_position.values():
        datasets.sort(key=lambda d: (float(d.get("TriggerTime", 0) or 0), int(d.get("InstanceNumber", 0) or 0)))
        ds = datasets[0]
        planes.append(plane_from_dicom(ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing, ds.Rows, ds.Columns))
        stacks.append([_pixels(d) for d in datasets])
    normal = planes[0].normal
    order = np.argsort([p.origin @ normal for p in planes])
    phases = min(len(s) for s in stacks)
    frames = np.stack([np.stack([stacks[i][t] for i in order]) for t in range(phases)]).astype(np.float32)
    description = str(first.get("SeriesDescription", "")) or first_file.parent.name
    parallel = len(planes) > 1
    kind = classify_description(description) or ("SAX" if parallel else None)
    return View(
        name=re.sub(r"[^A-Za-z0-9]+", "_", f"{int(first.get('SeriesNumber', 0) or 0):02d}_{description}").strip("_"),
        kind=kind,
        frames=frames,
        planes=[planes[i] for i in order],
        source=first_file.parent,
        meta={
            "description": description,
            "series_number": int(first.get("SeriesNumber", 0) or 0),
            "slice_thickness": float(first.get("SliceThickness", 0) or 0) or None,
            "spacing_between_slices": float(first.get("SpacingBetweenSlices", 0) or 0) or None,
            "phases": phases,
        },
    )


def _pixels(ds) -> np.ndarray:
    array = ds.pixel_array.astype(np.float32)
    return array * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)


def read_nifti_set(folder: Path) -> Exam:
    """NIfTI views of one subject; the kind comes from the file name (sax_ed, lax_4c_ed, ...).

    When several phases are present (ed/es), each file is its own view; ``Exam.primary`` picks one per kind.
    """
    views = []
    for file in sorted(folder.glob("*.nii*")):
        kind = classify_description(file.name.split(".")[0])
        vol = read_image(file)
        array = vol.array
        while array.ndim > 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3:
            raise MedsuiteError(file, f"has shape {array.shape}; a view must be 2D or a 3D stack", "give one phase per file")
        planes = planes_from_affine(vol.affine, array.shape)
        frames = np.moveaxis(array.astype(np.float32), 2, 0)[None]
        views.append(View(name=file.name.split(".")[0], kind=kind or ("SAX" if array.shape[2] > 1 else None), frames=frames, planes=planes, source=file,
                          meta={"affine": vol.affine, "slice_thickness": float(vol.spacing[2])}))
    if not views:
        raise MedsuiteError(folder, "holds no NIfTI views", "name them sax*.nii.gz, lax_2c*/lax_3c*/lax_4c*.nii.gz")
    return Exam(name=folder.name, views=views)
