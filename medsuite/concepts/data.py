"""Reading choroid cases: a folder with FA/, ICGA/, US/ image folders, an optional report.txt and label.txt.

The folder layout itself is read by the data layer (``medsuite.data.datasets.choroid_record``). Images are
read as greyscale (PNG/JPEG/TIFF/BMP with Pillow; NIfTI/MHA/NRRD/DICOM through medsuite.io), scaled to
[0, 1] (rasters by their bit depth, other formats by the model's intensity rule, stored in its checkpoint)
and resized to the model's square size by the data layer's ``resize``. Files of a modality folder are
its phases in name order. A missing or empty modality folder is simply not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medsuite.concepts.cohort import Cohort
from medsuite.concepts.extract import PRESENT, UNCERTAIN, extract_concepts
from medsuite.concepts.vocabulary import Vocabulary
from medsuite.data.datasets import Record, choroid_record
from medsuite.errors import MedsuiteError

if TYPE_CHECKING:  # the data layer's transforms import MONAI: only where a picture is read
    from medsuite.data.intensity import IntensityRule

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_picture(path: Path, size: int, rule: IntensityRule) -> np.ndarray:
    """One phase as a (size, size) float32 picture in [0, 1]; ``rule`` scales the formats without a bit depth."""
    from medsuite.data.intensity import normalise_intensity
    from medsuite.data.transforms import resize

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
        if not np.all(np.isfinite(array)):  # one NaN pixel would make every probability NaN
            raise MedsuiteError(path, "contains NaN or infinite pixels", "fix or re-export the image")
        array = normalise_intensity(array, rule)
    if float(np.ptp(array)) == 0.0:  # a blank picture carries no concept; classifying it would be a guess
        raise MedsuiteError(path, "is blank (every pixel has the same value)", "give the acquired image, or leave the modality out")
    return resize(np.asarray(array, dtype=np.float32), (size, size))


def is_case_folder(folder: Path, modalities: list[str]) -> bool:
    return folder.is_dir() and any(m in choroid_record(folder, modalities) for m in modalities)


def record_images(record: Record, vocabulary: Vocabulary, size: int, rule: IntensityRule) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """Images per available modality (phases, size, size) of a choroid record, and their resolved paths."""
    images = {m: np.stack([read_picture(Path(p), size, rule) for p in record[m]]) for m in vocabulary.modalities if m in record}
    files = {m: [str(Path(p).resolve()) for p in record[m]] for m in images}
    return images, files


def load_case(folder: Path, vocabulary: Vocabulary, size: int, rule: IntensityRule) -> tuple[dict[str, np.ndarray], dict[str, list[str]], str | None]:
    """Images per available modality (phases, size, size), their file paths, and the report text if any."""
    record = choroid_record(Path(folder), list(vocabulary.modalities))
    if "report_not_utf8" in record:
        path, byte = record["report_not_utf8"]
        raise MedsuiteError(path, f"is not UTF-8 text (byte {byte})", "save the report as UTF-8 plain text")
    images, files = record_images(record, vocabulary, size, rule)
    if not images:
        raise MedsuiteError(folder, f"has no images in {'/, '.join(vocabulary.modalities)}/ subfolders", "put each modality's images in its own subfolder")
    return images, files, record.get("report")


def report_labels(reports: list[str], vocabulary: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """From report text: positive (stated present) and usable (stated present/absent or not mentioned; uncertain is left out)."""
    positive = np.zeros((len(reports), len(vocabulary.concepts)), np.uint8)
    usable = np.ones_like(positive)
    for i, text in enumerate(reports):
        for k, finding in enumerate(extract_concepts(text, vocabulary).values()):
            positive[i, k] = finding.status == PRESENT
            usable[i, k] = finding.status != UNCERTAIN
    return positive, usable


def cohort_from_records(records: list[dict], vocabulary: Vocabulary, classes: list[str], size: int, rule: IntensityRule) -> Cohort:
    """A card's records (layout choroid_folders) as a Cohort; every modality must be present for training."""
    images: dict[str, list[np.ndarray]] = {m: [] for m in vocabulary.modalities}
    labels, reports, ids = [], [], []
    for record in records:
        folder = Path(record["image"])
        label = record.get("label", "").strip().lower()
        if label not in classes:
            raise MedsuiteError(folder / "label.txt", f"label {label!r} is not one of {classes}", "fix label.txt or the pipeline's classes")
        case, _ = record_images(record, vocabulary, size, rule)
        report = record.get("report")
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
