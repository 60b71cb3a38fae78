"""Landmarks and target registration error (TRE, mm), as GIRNet and BraTS-Reg evaluate registrations.

* ``place_landmarks``: distinctive anatomical points of an image (3D corners: the structure tensor's
  smallest eigenvalue peaks where intensity changes along all three axes, e.g. ventricle horns and
  sulcal fundi, the kind of point BraTS-Reg annotators pick), spread at least ``min_distance_mm`` apart.
* ``pair_landmarks``: landmarks on a generated pair's fixed image and, through the pair's known field,
  their exact positions in the moving image.
* ``read_brats_reg_landmarks`` / ``brats_reg_cases``: BraTS-Reg's ``Landmark,X,Y,Z`` CSVs through a data
  card (layout kind ``brats_reg``), returned as world points (LPS mm, ITK's frame).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from medsuite.errors import MedsuiteError
from medsuite.io import Volume


def corner_strength(image: np.ndarray, spacing: np.ndarray, sigma_mm: float = 3.0) -> np.ndarray:
    """The structure tensor's smallest eigenvalue (skimage), on ~``sigma_mm`` integration scale."""
    from skimage.feature import structure_tensor, structure_tensor_eigenvalues

    smoothed = ndimage.gaussian_filter(np.asarray(image, np.float64), sigma_mm / 2 / np.asarray(spacing))
    tensor = structure_tensor(smoothed, sigma=sigma_mm / float(np.mean(spacing)), order="rc")
    return structure_tensor_eigenvalues(tensor)[-1]


def _strongest(strength: np.ndarray, region: np.ndarray, count: int, distance_vox: int) -> np.ndarray:
    from skimage.feature import peak_local_max

    peaks = peak_local_max(strength, min_distance=max(1, distance_vox), labels=region.astype(np.uint8), num_peaks=count, exclude_border=False)
    return peaks[np.lexsort(peaks.T[::-1])] if len(peaks) else peaks.reshape(0, 3)  # index order, whatever order skimage breaks ties in


def place_landmarks(image: Volume, region: np.ndarray, *, count: int = 40, min_distance_mm: float = 12.0) -> np.ndarray:
    """(N, 3) voxel indices of the ``count`` strongest corners inside ``region``, deterministic for an image."""
    peaks = _strongest(corner_strength(image.array, image.spacing), region, count, round(min_distance_mm / float(np.mean(image.spacing))))
    if len(peaks) == 0:
        raise MedsuiteError(image.source, "has no distinctive point inside the region", "give an image with anatomy (landmarks need structure)")
    return peaks


def voxel_to_world(vol: Volume, index: np.ndarray) -> np.ndarray:
    """RAS mm of voxel indices (N, 3)."""
    return np.asarray(index, np.float64) @ vol.affine[:3, :3].T + vol.affine[:3, 3]


@dataclass
class LandmarkSet:
    fixed_index: np.ndarray  # (N, 3) voxel indices on the fixed grid
    fixed_ras: np.ndarray  # (N, 3) world mm
    moving_ras: np.ndarray  # (N, 3) the same anatomy in the moving image (world mm)
    near_lesion: np.ndarray  # (N,) bool: within ``near_mm`` of the lesion, where registration is hardest


def pair_landmarks(pair, *, count: int = 40, near_count: int = 10, margin_mm: float = 4.0, near_mm: float = 15.0) -> LandmarkSet:
    """Landmarks of a generated pair (``medsuite.data.samples.PathologicalPair``): corners of the fixed brain
    at least ``margin_mm`` inside it and outside the lesion (whose inside has no correspondence), ``count``
    away from the lesion and ``near_count`` within ``near_mm`` of it (the strongest corners of a brain
    seldom lie there), moved by the known displacement (exact at voxel centres, where the landmarks lie)."""
    spacing = float(np.mean(pair.fixed.spacing))
    grow = max(1, round(margin_mm / spacing))
    brain = ndimage.binary_erosion(pair.fixed_labels.array > 0, iterations=grow)
    lesion = pair.lesion_fixed.array > 0
    region = brain & ~ndimage.binary_dilation(lesion, iterations=grow) if lesion.any() else brain
    near = ndimage.distance_transform_edt(~lesion, sampling=pair.fixed.spacing) <= near_mm if lesion.any() else np.zeros_like(lesion)
    strength = corner_strength(pair.fixed.array, pair.fixed.spacing)
    index = np.concatenate([_strongest(strength, region & ~near, count, round(12.0 / spacing)), _strongest(strength, region & near, near_count, round(6.0 / spacing))])
    fixed_ras = voxel_to_world(pair.fixed, index)
    displacement = np.asarray(pair.displacement.array, np.float64)[tuple(index.T)]
    return LandmarkSet(index, fixed_ras, fixed_ras + displacement, near[tuple(index.T)])


def target_registration_error(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) per landmark between where a registration puts it and where it is."""
    return np.linalg.norm(np.asarray(predicted, np.float64) - np.asarray(truth, np.float64), axis=1)


# ---------------------------------------------------------------------------------------------
# BraTS-Reg


def read_brats_reg_landmarks(path: str | Path, image: Volume) -> np.ndarray:
    """BraTS-Reg's ``Landmark,X,Y,Z`` CSV as (N, 3) LPS world mm, rows sorted by landmark number.

    The challenge writes voxel positions as ITK-SNAP shows them on its 240 x 240 x 155 grids: X = i,
    Y = j - (ny - 1), Z = k (the organisers' evaluation adds 239 to Y); ``image`` is the scan they belong to."""
    path = Path(path)
    if not path.is_file():
        raise MedsuiteError(path, "no such landmark file", "check the card's layout.root and the case folder")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    if not rows or not {"Landmark", "X", "Y", "Z"} <= set(rows[0]):
        raise MedsuiteError(path, "is not a BraTS-Reg landmark CSV", "expect the header Landmark,X,Y,Z")
    try:
        rows.sort(key=lambda row: int(row["Landmark"]))
        index = np.array([[float(row["X"]), float(row["Y"]) + image.spatial_shape[1] - 1, float(row["Z"])] for row in rows])
    except ValueError as exc:
        raise MedsuiteError(path, "has a row that is not numbers", "fix that row") from exc
    return voxel_to_world(image, index) * np.array([-1.0, -1.0, 1.0])  # RAS -> LPS


@dataclass(frozen=True)
class BratsRegCase:
    id: str
    baseline: Path  # pre-operative scan: the fixed image
    followup: Path  # follow-up scan: the moving image
    baseline_landmarks: Path | None  # hidden in the challenge's validation and test sets
    followup_landmarks: Path


def _one(folder: Path, pattern: str, *, required: bool = True) -> Path | None:
    found = sorted(folder.glob(pattern))
    if len(found) > 1 or (required and not found):
        raise MedsuiteError(folder, f"holds {len(found)} files matching {pattern}", "check the case folder against the card's layout.keys")
    return found[0] if found else None


def brats_reg_cases(card, root: str | Path | None = None) -> list[BratsRegCase]:
    """Every case folder of a ``brats_reg`` card's layout (keys: case_glob, baseline, followup, *_landmarks, modality)."""
    if card.layout.kind != "brats_reg":
        raise MedsuiteError(card.id, f"has layout kind {card.layout.kind}", "use a card of layout kind brats_reg")
    folder = card.data_root(root)
    if folder is None or not folder.is_dir():
        raise MedsuiteError(card.id, f"data folder {folder} is not there", f"pass --root or set MEDSUITE_DATA_{card.id.upper()}")
    keys = card.layout.keys
    cases = []
    for case in sorted(p for p in folder.glob(keys.get("case_glob", "BraTSReg_*")) if p.is_dir()):
        fill = lambda key, case=case: keys[key].format(case=case.name, modality=keys.get("modality", "t1ce"))  # noqa: E731
        cases.append(
            BratsRegCase(
                id=case.name,
                baseline=_one(case, fill("baseline")),
                followup=_one(case, fill("followup")),
                baseline_landmarks=_one(case, fill("baseline_landmarks"), required=False),
                followup_landmarks=_one(case, fill("followup_landmarks")),
            )
        )
    if not cases:
        raise MedsuiteError(folder, "holds no BraTS-Reg case folders", f"expect folders matching {keys.get('case_glob', 'BraTSReg_*')}")
    return cases

