"""Cardiac function from short-axis masks at end-diastole (ED) and end-systole (ES), by the ACDC challenge's
definitions (Bernard et al., IEEE TMI 2018):

- volumes are the cavity label's voxel count x voxel volume from the image's own spacing (the slice spacing
  counts, so gaps between slices are filled as in the summation-of-discs method), in ml;
- EF = (EDV - ESV) / EDV x 100 (%), stroke volume SV = EDV - ESV (ml), for the LV and the RV;
- LV myocardial mass = myocardium volume at ED x 1.05 g/ml.

The classes are found by the names of the card's label_map: ``lv_cavity``, ``myocardium``, ``rv_cavity``
(a model whose card names them otherwise gets no cardiac function, and the report says why).

Pairing ED with ES frames (``pair_phases``), first match wins: a ``--pairs`` CSV (``patient,ed,es`` naming the
cases); ACDC names ``patientXXX_frameYY`` with the patient folder's ``Info.cfg`` (``ED: 1``, ``ES: 12``), or
without it the lower frame number as ED (ACDC cines start at the R wave, so ED comes first); names ending
``_ed`` / ``_es``.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medsuite.batch import case_name
from medsuite.errors import MedsuiteError
from medsuite.io import atomic_path

LV, MYO, RV = "lv_cavity", "myocardium", "rv_cavity"
MYOCARDIUM_DENSITY_G_PER_ML = 1.05
INDICES = ("LVEDV", "LVESV", "LVSV", "LVEF", "RVEDV", "RVESV", "RVSV", "RVEF", "LV_mass")
UNITS = {"LVEDV": "ml", "LVESV": "ml", "LVSV": "ml", "LVEF": "%", "RVEDV": "ml", "RVESV": "ml", "RVSV": "ml", "RVEF": "%", "LV_mass": "g"}
ACDC_FRAME = re.compile(r"^(?P<patient>patient\d+)_frame(?P<frame>\d+)$")
PHASE_SUFFIX = re.compile(r"^(?P<patient>.+?)[_-](?P<phase>ed|es)$", re.IGNORECASE)


def missing_classes(names: Sequence[str]) -> list[str]:
    """The label names cardiac function needs that a model lacks (the RV is optional)."""
    return [n for n in (LV, MYO) if n not in names]


def cardiac_indices(ed_ml: Mapping[str, float], es_ml: Mapping[str, float]) -> dict[str, float | None]:
    """The ACDC indices from per-class volumes (ml) at ED and ES; None where a ventricle is empty at ED."""

    def ventricle(prefix: str, name: str) -> dict[str, float | None]:
        if name not in ed_ml or name not in es_ml:
            return {f"{prefix}EDV": None, f"{prefix}ESV": None, f"{prefix}SV": None, f"{prefix}EF": None}
        edv, esv = float(ed_ml[name]), float(es_ml[name])
        return {f"{prefix}EDV": edv, f"{prefix}ESV": esv, f"{prefix}SV": edv - esv, f"{prefix}EF": 100.0 * (edv - esv) / edv if edv > 0 else None}

    indices = ventricle("LV", LV) | ventricle("RV", RV) | {"LV_mass": MYOCARDIUM_DENSITY_G_PER_ML * float(ed_ml[MYO])}
    return {k: (round(v, 3) if v is not None else None) for k, v in indices.items()}


def _info_cfg(path: Path | None) -> dict[str, int]:
    """ED/ES frame numbers from ACDC's Info.cfg beside the image, when there is one."""
    if path is None:
        return {}
    cfg = path.parent / "Info.cfg"
    if not cfg.is_file():
        return {}
    found = {}
    for line in cfg.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"ED", "ES"} and value.strip().isdigit():
            found[key.strip().lower()] = int(value.strip())
    return found


def read_pairs_csv(path: str | Path) -> dict[str, dict[str, str]]:
    """``--pairs``: a CSV with columns patient, ed, es (case names, or image file names)."""
    path = Path(path)
    if not path.is_file():
        raise MedsuiteError(path, "no such pairs file", "give a CSV with columns patient,ed,es")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"patient", "ed", "es"} <= set(rows[0]):
        raise MedsuiteError(path, "needs the columns patient, ed, es", "write a header line 'patient,ed,es' and one row per patient")
    return {row["patient"]: {"ed": case_name(Path(row["ed"])), "es": case_name(Path(row["es"])), "source": "--pairs"} for row in rows}


def pair_phases(cases: Mapping[str, Path | None], pairs: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, dict[str, str]]:
    """patient -> {ed: case, es: case, source: rule} for every patient whose two phases are among ``cases``
    (case name -> input path)."""
    if pairs:
        return {p: dict(v) for p, v in pairs.items() if v["ed"] in cases and v["es"] in cases}
    frames: dict[str, dict[int, str]] = {}
    phases: dict[str, dict[str, str]] = {}
    for name in cases:
        if match := ACDC_FRAME.match(name):
            frames.setdefault(match["patient"], {})[int(match["frame"])] = name
        elif match := PHASE_SUFFIX.match(name):
            phases.setdefault(match["patient"], {})[match["phase"].lower()] = name
    out = {}
    for patient, by_frame in frames.items():
        info = _info_cfg(cases[next(iter(by_frame.values()))])
        if info.get("ed") in by_frame and info.get("es") in by_frame:
            out[patient] = {"ed": by_frame[info["ed"]], "es": by_frame[info["es"]], "source": "Info.cfg"}
        elif len(by_frame) == 2:
            first, second = sorted(by_frame)
            out[patient] = {"ed": by_frame[first], "es": by_frame[second], "source": "frame numbers (lower is ED)"}
    for patient, found in phases.items():
        if {"ed", "es"} <= set(found):
            out[patient] = {"ed": found["ed"], "es": found["es"], "source": "_ed/_es names"}
    return out


def agreement(predicted: Sequence[float], reference: Sequence[float]) -> dict[str, float]:
    """Automatic vs reference index: mean absolute error, Pearson correlation, Bland-Altman bias and 95 %
    limits of agreement (bias +- 1.96 SD of the differences)."""
    p, r = np.asarray(predicted, dtype=float), np.asarray(reference, dtype=float)
    keep = np.isfinite(p) & np.isfinite(r)
    p, r = p[keep], r[keep]
    if len(p) < 2:
        return {"n": len(p), "mae": math.nan, "correlation": math.nan, "bias": math.nan, "loa_low": math.nan, "loa_high": math.nan}
    diff = p - r
    sd = float(diff.std(ddof=1))
    corr = float(np.corrcoef(p, r)[0, 1]) if p.std() > 0 and r.std() > 0 else math.nan
    bias = float(diff.mean())
    return {"n": len(p), "mae": float(np.abs(diff).mean()), "correlation": corr, "bias": bias, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd}


def write_function_csv(target: Path, function: Mapping[str, Mapping[str, object]]) -> Path:
    """report.json's ``cardiac_function`` as one CSV row per patient (columns carry their units)."""
    with atomic_path(target) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["patient", "ed", "es", *(f"{k}_{UNITS[k]}" for k in INDICES)])
        for patient, entry in function.items():
            writer.writerow([patient, entry["ed"], entry["es"], *("" if entry["indices"][k] is None else entry["indices"][k] for k in INDICES)])
    return target
