"""Reading choroid cases: a folder with FA/, ICGA/, US/ image folders, an optional report.txt and label.txt.

Images are read as greyscale (PNG/JPEG/TIFF/BMP with Pillow; NIfTI/MHA/NRRD/DICOM through medsuite.io),
scaled to [0, 1] and resized to the model's square size. Files of a modality folder are its phases in
name order. A missing or empty modality folder is simply not used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsuite.concepts.extract import PRESENT, UNCERTAIN, extract_concepts
from medsuite.concepts.synthetic import Cohort
from medsuite.concepts.vocabulary import Vocabulary
from medsuite.errors import MedsuiteError

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_picture(path: Path, size: int) -> np.ndarray:
    from medsuite.data.transforms import IntensityRule, normalise_intensity, resize

    if path.suffix.lower() in RASTER_SUFFIXES:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                raw = np.asarray(image.convert("I;16") if image.mode.startswith("I;16") else image.convert("L"))
        except (UnidentifiedImageError, OSError) as exc:
            raise MedsuiteError(path, "is not a readable image", "give PNG/JPEG/TIFF files or NIfTI") from exc
        array = raw.astype(np.float32) / (65535.0 if raw.dtype == np.uint16 else 255.0)
    else:
        from medsuite.io import read_image

        array = np.squeeze(read_image(path).array).astype(np.float32)
        if array.ndim != 2:
            raise MedsuiteError(path, f"is {array.ndim}D, not a 2D picture", "give one 2D image per phase")
        array = normalise_intensity(array, IntensityRule(kind="percentile", lower=0.5, upper=99.5))
    return resize(np.asarray(array, dtype=np.float32), (size, size))


def modality_files(folder: Path, modality: str) -> list[Path]:
    sub = folder / modality
    return sorted(p for p in sub.iterdir() if p.is_file() and not p.name.startswith(".")) if sub.is_dir() else []


def is_case_folder(folder: Path, modalities: list[str]) -> bool:
    return folder.is_dir() and any(modality_files(folder, m) for m in modalities)


def load_case(folder: Path, vocabulary: Vocabulary, size: int) -> tuple[dict[str, np.ndarray], dict[str, list[str]], str | None]:
    """Images per available modality (phases, size, size), their file paths, and the report text if any."""
    images, files = {}, {}
    for modality in vocabulary.modalities:
        paths = modality_files(folder, modality)
        if paths:
            images[modality] = np.stack([read_picture(p, size) for p in paths])
            files[modality] = [str(p.resolve()) for p in paths]
    if not images:
        raise MedsuiteError(folder, f"has no images in {'/, '.join(vocabulary.modalities)}/ subfolders", "put each modality's images in its own subfolder")
    report = folder / "report.txt"
    return images, files, report.read_text() if report.is_file() else None


def report_labels(reports: list[str], vocabulary: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """From report text: positive (stated present) and usable (stated present/absent or not mentioned; uncertain is left out)."""
    positive = np.zeros((len(reports), len(vocabulary.concepts)), np.uint8)
    usable = np.ones_like(positive)
    for i, text in enumerate(reports):
        for k, finding in enumerate(extract_concepts(text, vocabulary).values()):
            positive[i, k] = finding.status == PRESENT
            usable[i, k] = finding.status != UNCERTAIN
    return positive, usable


def cohort_from_records(records: list[dict], vocabulary: Vocabulary, classes: list[str], size: int) -> Cohort:
    """A card's records (layout choroid_folders) as a Cohort; every modality must be present for training."""
    images: dict[str, list[np.ndarray]] = {m: [] for m in vocabulary.modalities}
    labels, reports, ids = [], [], []
    for record in records:
        folder = Path(record["image"])
        label = record.get("label", "").strip().lower()
        if label not in classes:
            raise MedsuiteError(folder / "label.txt", f"label {label!r} is not one of {classes}", "fix label.txt or the pipeline's classes")
        case, _, report = load_case(folder, vocabulary, size)
        missing = [m for m in vocabulary.modalities if m not in case]
        if missing:
            raise MedsuiteError(folder, f"lacks {', '.join(missing)} images", "training needs every modality (prediction does not)")
        for m in vocabulary.modalities:
            images[m].append(case[m][: vocabulary.modalities[m]] if len(case[m]) >= vocabulary.modalities[m] else np.resize(case[m], (vocabulary.modalities[m], size, size)))
        labels.append(classes.index(label))
        reports.append(report or "")
        ids.append(record["patient"])
    positive, _ = report_labels(reports, vocabulary)
    return Cohort({m: np.stack(v) for m, v in images.items()}, np.array(labels), positive, [{} for _ in ids], reports, tuple(classes), ids)
