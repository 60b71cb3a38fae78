"""From a data card to records, patient-level splits, MONAI datasets and loaders.

A *record* is a plain dict: ``patient`` (split unit), ``case`` (unique id), ``image`` (path) and,
where the dataset has one, ``label`` (path), plus layout-specific keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, DataLoader, Dataset

from medsuite.data.cards import DataCard
from medsuite.data.checks import require_complete_gzip
from medsuite.data.intensity import IntensityRule
from medsuite.data.transforms import IMAGE, LABEL, load_transforms
from medsuite.errors import MedsuiteError

Record = dict[str, Any]
SPLITS = ("train", "val", "test")


def _patient_of(name: str, regex: str | None, fallback: str) -> str:
    if regex:
        match = re.search(regex, name)
        if match:
            return match.group(1)
    return fallback


def _discover_acdc_h5(card: DataCard, root: Path) -> list[Record]:
    records = []
    for path in sorted(root.glob(card.layout.image_pattern or "*.h5")):
        records.append({"patient": _patient_of(path.name, card.layout.patient_regex, path.stem), "case": path.stem, IMAGE: str(path), LABEL: str(path)})
    return records


def _discover_acdc_nifti(card: DataCard, root: Path) -> list[Record]:
    records = []
    for image in sorted(root.glob("patient*/patient*_frame[0-9][0-9].nii.gz")):
        label = image.with_name(image.name.replace(".nii.gz", "_gt.nii.gz"))
        record = {"patient": image.parent.name.removeprefix("patient"), "case": image.name.removesuffix(".nii.gz"), IMAGE: str(image)}
        if label.exists():
            record[LABEL] = str(label)
        records.append(record)
    return records


def _discover_nifti_folders(card: DataCard, root: Path) -> list[Record]:
    images_dir = root / (card.layout.keys.get("images_dir", "images"))
    labels_dir = root / (card.layout.keys.get("labels_dir", "labels"))
    records = []
    for image in sorted(images_dir.glob(card.layout.image_pattern or "*.nii*")):
        case = image.name.split(".")[0]
        record = {"patient": _patient_of(image.name, card.layout.patient_regex, case), "case": case, IMAGE: str(image)}
        label = labels_dir / image.name
        if label.exists():
            record[LABEL] = str(label)
        records.append(record)
    return records


def _discover_msd(card: DataCard, root: Path) -> list[Record]:
    manifest = root / "dataset.json"
    if not manifest.is_file():
        raise MedsuiteError(manifest, "MSD layout without dataset.json", "point the card's layout.root at the MSD task folder")
    entries = json.loads(manifest.read_text()).get("training", [])
    records = []
    for entry in entries:
        image = (root / entry[IMAGE]).resolve()
        case = image.name.split(".")[0]
        record = {"patient": _patient_of(image.name, card.layout.patient_regex, case), "case": case, IMAGE: str(image)}
        if LABEL in entry:
            record[LABEL] = str((root / entry[LABEL]).resolve())
        records.append(record)
    return records


def _discover_cinema_nifti(card: DataCard, root: Path) -> list[Record]:
    """One record per short-axis stack; long-axis slices of the same exam ride along as extra keys."""
    records = []
    for sax in sorted(root.glob(card.layout.image_pattern or "*/sax_*.nii.gz")):
        if sax.name.endswith("_gt.nii.gz"):
            continue
        phase = sax.name.removeprefix("sax_").split(".")[0]
        exam = sax.parent.name
        record: Record = {"patient": exam, "case": f"{exam}_{phase}", IMAGE: str(sax), "phase": phase}
        for lax in sorted(sax.parent.glob(f"lax_*_{phase}.nii.gz")):
            record[lax.name.split(f"_{phase}")[0]] = str(lax)
        records.append(record)
    return records


def _discover_dicom_exam(card: DataCard, root: Path) -> list[Record]:
    """One record per exam folder: a folder whose sub-folders hold DICOM series."""
    exams = sorted({series.parent for series in root.rglob("*") if series.is_dir() and any(p.is_file() for p in series.iterdir())})
    return [{"patient": exam.relative_to(root).parts[0] if exam != root else root.name, "case": exam.name, IMAGE: str(exam)} for exam in exams]


def choroid_record(folder: Path, modalities: Sequence[str]) -> Record:
    """One patient folder of the choroid layout, the one reader of it: ``<modality>/`` image files (its phases,
    in name order; hidden files skipped), an optional ``report.txt`` (free text) and ``label.txt`` (the class)."""
    record: Record = {"patient": folder.name, "case": folder.name, IMAGE: str(folder)}
    for modality in modalities:
        sub = folder / modality
        files = sorted(str(f) for f in sub.iterdir() if f.is_file() and not f.name.startswith(".")) if sub.is_dir() else []
        if files:
            record[modality] = files
    for role in ("report", "label"):
        text = folder / f"{role}.txt"
        if text.is_file():
            try:
                record[role] = text.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:  # that case fails when it is read, not the whole discovery
                record[f"{role}_not_utf8"] = [str(text), exc.start]
    return record


def _discover_choroid(card: DataCard, root: Path) -> list[Record]:
    return [choroid_record(patient, card.acquisition.modalities) for patient in sorted(p for p in root.iterdir() if p.is_dir())]


def _discover_corrections(card: DataCard, root: Path) -> list[Record]:
    """Cases a reviewer corrected in the viewer: in every segment result under ``root``, the image a
    case's report entry names and the ``<case>_corrected.nii.gz`` saved beside its report."""
    records = []
    for report_path in sorted({*root.glob("report.json"), *root.glob("*/report.json"), *root.glob("*/*/report.json")}):
        try:
            report = json.loads(report_path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict) or report.get("kind") != "segment":
            continue
        for case, entry in sorted((report.get("cases") or {}).items()):
            corrected = report_path.parent / f"{case}_corrected.nii.gz"
            if corrected.is_file() and isinstance(entry, dict) and entry.get("input") and Path(entry["input"]).exists():
                patient = entry.get("patient") or _patient_of(case, card.layout.patient_regex, case)
                records.append({"patient": str(patient), "case": case, IMAGE: str(entry["input"]), LABEL: str(corrected)})
    return records


DISCOVERERS: dict[str, Callable[[DataCard, Path], list[Record]]] = {
    "acdc_h5": _discover_acdc_h5,
    "acdc_nifti": _discover_acdc_nifti,
    "nifti_folders": _discover_nifti_folders,
    "msd": _discover_msd,
    "cinema_nifti": _discover_cinema_nifti,
    "dicom_exam": _discover_dicom_exam,
    "choroid_folders": _discover_choroid,
    "corrections": _discover_corrections,
}


def discover_records(card: DataCard, root: str | Path | None = None) -> list[Record]:
    """Every case of the dataset on disk, in a stable order."""
    if card.layout.kind not in DISCOVERERS:
        raise MedsuiteError(card.id, f"layout {card.layout.kind!r} has no files to list", "generate its data with the pipeline that owns it")
    data_root = card.data_root(root)
    if data_root is None or not data_root.is_dir():
        raise MedsuiteError(data_root or card.id, f"data of card {card.id!r} not found", f"give --root or set MEDSUITE_DATA_{card.id.upper()}")
    records = DISCOVERERS[card.layout.kind](card, data_root)
    if not records:
        raise MedsuiteError(data_root, f"no cases of card {card.id!r} found", "check layout.root and layout.image_pattern in the card")
    return records


def split_patients(patients: Sequence[str], fractions: dict[str, float], seed: int) -> dict[str, list[str]]:
    """Shuffle unique patients with the seed, then cut by fractions; every non-zero share gets one."""
    unique = sorted(set(patients))
    order = list(np.random.default_rng(seed).permutation(len(unique)))
    shuffled = [unique[i] for i in order]
    counts = {name: int(round(fractions.get(name, 0.0) * len(unique))) for name in SPLITS}
    for name in ("test", "val"):
        if fractions.get(name, 0.0) > 0 and counts[name] == 0 and len(unique) >= 3:
            counts[name] = 1
    counts["train"] = len(unique) - counts["val"] - counts["test"]
    result, start = {}, 0
    for name in SPLITS:
        result[name] = sorted(shuffled[start : start + counts[name]])
        start += counts[name]
    return result


def split_records(card: DataCard, records: Sequence[Record]) -> dict[str, list[Record]]:
    """Patient-level split by the card's rule: no patient's cases ever land in two splits."""
    groups = split_patients([r["patient"] for r in records], card.split.fractions, card.split.seed)
    return {name: [r for r in records if r["patient"] in set(patients)] for name, patients in groups.items()}


def make_dataset(
    card: DataCard,
    split: str | None = "train",
    *,
    root: str | Path | None = None,
    transform: Callable | None = None,
    cache: bool = False,
    with_label: bool = True,
    pixdim: Sequence[float] | None = None,
    orientation: str | None = "RAS",
    limit: int | None = None,
    patients: int | None = None,
    rule: IntensityRule | None = None,
) -> Dataset:
    """A MONAI (Cache)Dataset of one split (or every case when ``split`` is None); ``patients`` keeps every
    case of the split's first N patients (label-efficiency studies), ``limit`` the first N cases; ``rule``
    the intensity normalisation (a checkpoint's stored rule; default the card's modality rule)."""
    records = discover_records(card, root)
    chosen = records if split is None else split_records(card, records)[split]
    if patients is not None:
        kept = list(dict.fromkeys(r["patient"] for r in chosen))[:patients]
        chosen = [r for r in chosen if r["patient"] in kept]
    if limit is not None:
        chosen = chosen[:limit]
    for record in chosen:  # a truncated .gz is one clear line here, not a reader crash inside the loader
        for key in (IMAGE, LABEL):
            if str(record.get(key, "")).endswith(".gz"):
                require_complete_gzip(record[key])
    # `is None`, never truthiness: bool(Compose) builds a new Compose that re-seeds every random transform
    transform = transform if transform is not None else load_transforms(card, with_label=with_label, pixdim=pixdim, orientation=orientation, rule=rule)
    if cache:
        return CacheDataset(chosen, transform=transform, num_workers=0, progress=False)
    return Dataset(chosen, transform=transform)


class SliceDataset(torch.utils.data.Dataset):
    """2D slices along the last spatial axis of loaded 3D items, optionally only labelled ones.

    Wraps any dataset of dicts holding (C, H, W, D) tensors; slices are enumerated once up front so
    that a DataLoader can shuffle them across volumes.
    """

    def __init__(self, volumes: Dataset, keys: Sequence[str] = (IMAGE, LABEL), transform: Callable | None = None, only_labelled: bool = False):
        self.volumes = [volumes[i] for i in range(len(volumes))]
        self.keys = [k for k in keys if k in self.volumes[0]] if self.volumes else list(keys)
        self.transform = transform
        self.index = [
            (v, s)
            for v, item in enumerate(self.volumes)
            for s in range(item[IMAGE].shape[-1])
            if not only_labelled or LABEL not in item or bool(item[LABEL][..., s].any())
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        v, s = self.index[i]
        item = self.volumes[v]
        out = {k: item[k][..., s] for k in self.keys}
        out["case"], out["slice"] = item.get("case", str(v)), s
        return self.transform(out) if self.transform is not None else out  # not bool(Compose): see make_dataset


def make_loader(dataset: torch.utils.data.Dataset, *, batch_size: int = 4, shuffle: bool = False, seed: int = 0, num_workers: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, generator=generator)
