"""Embedded sample data: the MNI152 brain shipped inside nilearn's wheel, and generators built on it.

``make_pathological_pair`` makes a registration problem whose answer is known exactly: the healthy
MNI brain (fixed) and a "patient" (moving) made from it by a smooth random deformation, a tumour
that pushes the tissue around it (mass effect), another intensity scale and a rotated/shifted
world affine. The true displacement and the lesion in both spaces come with it, so registration
quality can be measured instead of eyeballed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from medsuite.io import Volume, write_nifti

TISSUE_LABELS = {0: "background", 1: "grey matter", 2: "white matter"}


def oblique_affine(spacing=(1.2, 0.9, 3.0), angles_deg=(20.0, -15.0, 30.0), origin=(-40.0, 25.5, 10.0)) -> np.ndarray:
    """A rotated, anisotropic voxel-to-RAS affine (rotations about x, then y, then z), as scanners write
    for planned oblique acquisitions: generated test and demo volumes use it to prove geometry is kept."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ ry @ rx @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def mni152_paths() -> dict[str, Path]:
    """The ICBM 2009a symmetric T1 and GM/WM probability maps that nilearn ships in its wheel."""
    import nilearn

    folder = Path(nilearn.__file__).resolve().parent / "datasets" / "data"
    return {name: folder / f"mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz" for name in ("t1", "gm", "wm")}


def target_grid(shape: tuple[int, ...], affine: np.ndarray, resolution_mm: float) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """Grid of ``resolution_mm`` voxels over the same field of view, same axes, same first voxel centre.

    Returns the new shape, the new affine and the old-voxel index of new voxel (1, 1, 1) step per axis.
    """
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    step = resolution_mm / spacing
    new_shape = tuple(int(np.floor((n - 1) / s)) + 1 for n, s in zip(shape, step))
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] @ np.diag(step)
    return new_shape, new_affine, step


@functools.lru_cache(maxsize=4)
def _mni152_arrays(resolution_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import nibabel as nib

    paths = mni152_paths()
    images = {name: nib.load(str(path)) for name, path in paths.items()}
    affine = np.asarray(images["t1"].affine, dtype=np.float64)
    new_shape, new_affine, step = target_grid(images["t1"].shape, affine, resolution_mm)
    # Resample on exact voxel centres: the new grid is a strided sub-grid in continuous index space.
    coords = np.meshgrid(*[np.arange(n) * s for n, s in zip(new_shape, step)], indexing="ij")
    sample = {name: ndimage.map_coordinates(np.asarray(img.dataobj, dtype=np.float32), coords, order=1, mode="nearest") for name, img in images.items()}
    t1 = sample["t1"].astype(np.float32)
    gm, wm = sample["gm"] / 255.0, sample["wm"] / 255.0
    background = np.clip(1.0 - gm - wm, 0.0, 1.0)
    tissue = np.argmax(np.stack([background, gm, wm]), axis=0).astype(np.uint8)
    return t1, tissue, new_affine


def load_mni152(resolution_mm: float = 2.0) -> tuple[Volume, Volume]:
    """(T1, tissue labels 0 bg / 1 GM / 2 WM) on a ``resolution_mm`` grid; cached per process, copies returned."""
    t1, tissue, affine = _mni152_arrays(float(resolution_mm))
    source = mni152_paths()["t1"]
    return (
        Volume(array=t1.copy(), affine=affine.copy(), source=source, meta={"name": "MNI152 2009a T1"}),
        Volume(array=tissue.copy(), affine=affine.copy(), source=source, meta={"labels": dict(TISSUE_LABELS)}),
    )


@dataclass
class PathologicalPair:
    """A registration problem with a known answer (all arrays on their own grid, affines in RAS mm)."""

    fixed: Volume
    fixed_labels: Volume
    moving: Volume
    moving_labels: Volume
    lesion_mask: Volume  # tumour in moving space (ground truth)
    lesion_fixed: Volume  # the fixed-space region whose correspondence is the tumour
    displacement: Volume  # (X, Y, Z, 3) world mm (RAS) on the fixed grid: moving world point = x + d(x)
    seed: int
    parameters: dict


def _smooth_noise_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: float, amplitude_vox: float) -> np.ndarray:
    """Three Gaussian-smoothed noise components scaled so the largest vector is ``amplitude_vox``.

    Periodic (``wrap``) smoothing keeps the noise stationary: with ``nearest`` the replicated border noise
    made the corners' vectors ~30x the brain's, so the peak said nothing and the brain barely moved."""
    field = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="wrap") for _ in range(3)], axis=-1)
    peak = np.linalg.norm(field, axis=-1).max()
    return (field * (amplitude_vox / max(peak, 1e-12))).astype(np.float64)


def _interp_field(field: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Linear interpolation of a (X, Y, Z, 3) field at voxel points (3, ...)."""
    return np.stack([ndimage.map_coordinates(field[..., c], points, order=1, mode="nearest") for c in range(3)], axis=-1)


def _rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    angle = np.deg2rad(rng.uniform(0.5, 1.0) * max_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)  # Rodrigues


def random_world_affine(rng: np.random.Generator, fixed: Volume, rotation_deg: float, shift_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(moving affine, rotation, shift): the fixed grid rotated and shifted in world space about the brain centre."""
    rotation = _rotation(rng, rotation_deg)
    shift = rng.uniform(-shift_mm, shift_mm, size=3)
    brain_centre = (fixed.affine @ np.append(np.array(fixed.spatial_shape) / 2.0 - 0.5, 1.0))[:3]
    world = np.eye(4)
    world[:3, :3] = rotation
    world[:3, 3] = brain_centre - rotation @ brain_centre + shift
    return world @ fixed.affine, rotation, shift


def true_displacement(pull: np.ndarray, fixed_affine: np.ndarray, moving_affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(moving index of each fixed voxel (3, X, Y, Z), world displacement (X, Y, Z, 3) float32) for a pair whose
    moving voxel ``i`` shows the fixed anatomy at ``i + pull(i)``: for fixed index j, the i with i + pull(i) = j,
    by fixed-point iteration i = j - pull(i)."""
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in pull.shape[:3]], indexing="ij"))
    index = grid - pull.transpose(3, 0, 1, 2)
    for _ in range(30):
        updated = grid - _interp_field(pull, index).transpose(3, 0, 1, 2)
        change = float(np.abs(updated - index).max())
        index = updated
        if change < 1e-3:  # voxels; the map is a contraction since |grad pull| < 1
            break
    fixed_world = np.einsum("ab,bxyz->xyza", fixed_affine[:3, :3], grid) + fixed_affine[:3, 3]
    moving_world = np.einsum("ab,bxyz->xyza", moving_affine[:3, :3], index) + moving_affine[:3, 3]
    return index, (moving_world - fixed_world).astype(np.float32)


def make_pathological_pair(
    seed: int,
    resolution_mm: float = 2.0,
    *,
    tumour_radius_mm: tuple[float, float] = (10.0, 16.0),
    mass_effect: float = 0.4,
    deformation_mm: float = 4.0,
    deformation_sigma_mm: float = 16.0,
    rotation_deg: float = 10.0,
    shift_mm: float = 10.0,
    intensity_scale: tuple[float, float] = (0.5, 2.0),
) -> PathologicalPair:
    """A seeded healthy/pathological pair on the MNI152 brain with the exact answer.

    Construction, in moving voxel indices ``i`` (the moving grid equals the fixed grid before its world
    rotation): the moving anatomy at ``i`` is the healthy anatomy at ``i + v(i)``, where ``v`` is a smooth
    random field plus a radial mass effect pulling sources towards the tumour centre (so tissue is
    pushed outwards). The true displacement on the fixed grid inverts ``v`` by fixed-point iteration.
    """
    rng = np.random.default_rng(seed)
    fixed, fixed_labels = load_mni152(resolution_mm)
    shape = fixed.spatial_shape
    spacing = float(fixed.spacing[0])
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))  # (3, X, Y, Z)

    # Tumour centre: a white-matter voxel well inside the brain, so the mass effect stays in tissue.
    inner = ndimage.binary_erosion(fixed_labels.array == 2, iterations=int(round(8 / spacing)))
    candidates = np.argwhere(inner if inner.any() else fixed_labels.array == 2)
    centre = candidates[rng.integers(len(candidates))].astype(np.float64)
    radius_vox = rng.uniform(*tumour_radius_mm) / spacing

    offset = grid - centre[:, None, None, None]
    rho = np.sqrt((offset**2).sum(axis=0))
    # Radial mass effect: magnitude a*(rho/r)*exp((1-(rho/r)^2)/2) peaks (= a) at the rim; monotone while a < 0.6 r.
    a = mass_effect * radius_vox
    magnitude = a * (rho / radius_vox) * np.exp(0.5 * (1.0 - (rho / radius_vox) ** 2))
    direction = offset / np.maximum(rho, 1e-6)
    v_mass = -(magnitude * direction).transpose(1, 2, 3, 0)
    v_rand = _smooth_noise_field(rng, shape, deformation_sigma_mm / spacing, deformation_mm / spacing)
    pull = v_mass + v_rand  # moving index i shows healthy index i + pull(i)

    source = grid + pull.transpose(3, 0, 1, 2)
    anatomy = ndimage.map_coordinates(fixed.array, source, order=1, mode="constant", cval=0.0)
    moving_labels = ndimage.map_coordinates(fixed_labels.array, source, order=0, mode="constant", cval=0).astype(np.uint8)

    # Tumour with an irregular boundary (radius modulated by smooth noise), necrotic core, bright rim.
    wobble = ndimage.gaussian_filter(rng.standard_normal(shape), 3.0)
    wobble *= 0.15 * radius_vox / max(np.abs(wobble).max(), 1e-12)
    lesion = rho < radius_vox + wobble
    tissue_max = float(np.percentile(fixed.array[fixed_labels.array > 0], 99))
    rim = np.clip(1.0 - np.abs(rho - 0.8 * radius_vox) / (0.3 * radius_vox), 0.0, 1.0)
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), 1.0)
    tumour = tissue_max * (0.25 + 0.65 * rim + 0.05 * texture / max(np.abs(texture).max(), 1e-12))
    scale = rng.uniform(*intensity_scale)
    moving_array = (scale * np.where(lesion, tumour, anatomy)).astype(np.float32)

    return assemble_pair(
        rng, fixed, fixed_labels, moving_array, moving_labels, lesion, pull, seed=seed, rotation_deg=rotation_deg, shift_mm=shift_mm,
        name=f"pathological seed {seed}", labels_meta={"labels": dict(TISSUE_LABELS)},
        parameters={"resolution_mm": resolution_mm, "tumour_centre_vox": centre.tolist(), "tumour_radius_mm": radius_vox * spacing, "mass_effect": mass_effect, "deformation_mm": deformation_mm, "intensity_scale": scale},
    )


def assemble_pair(
    rng: np.random.Generator,
    fixed: Volume,
    fixed_labels: Volume,
    moving_array: np.ndarray,
    moving_labels: np.ndarray,
    lesion: np.ndarray,
    pull: np.ndarray,
    *,
    seed: int,
    rotation_deg: float,
    shift_mm: float,
    name: str,
    labels_meta: dict,
    parameters: dict,
) -> PathologicalPair:
    """A generated pair from its moving-grid content: draw the moving scan's world affine, derive the exact
    field and the lesion in fixed space, and record the draw in ``parameters`` (every generator ends so)."""
    moving_affine, rotation, shift = random_world_affine(rng, fixed, rotation_deg, shift_mm)
    index, displacement = true_displacement(pull, fixed.affine, moving_affine)
    lesion_fixed = ndimage.map_coordinates(lesion.astype(np.float32), index, order=1, mode="constant") >= 0.5
    parameters = parameters | {
        "rotation_deg": float(np.rad2deg(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))),
        "shift_mm": shift.tolist(),
    }
    return PathologicalPair(
        fixed=fixed,
        fixed_labels=fixed_labels,
        moving=Volume(moving_array, moving_affine, meta={"name": name}),
        moving_labels=Volume(moving_labels, moving_affine.copy(), meta=labels_meta),
        lesion_mask=Volume(lesion.astype(np.uint8), moving_affine.copy()),
        lesion_fixed=Volume(lesion_fixed.astype(np.uint8), fixed.affine.copy()),
        displacement=Volume(displacement, fixed.affine.copy()),
        seed=seed,
        parameters=parameters,
    )


PAIR_FILES = {
    "fixed": "fixed.nii.gz",
    "fixed_labels": "fixed_labels.nii.gz",
    "moving": "moving.nii.gz",
    "moving_labels": "moving_labels.nii.gz",
    "lesion_mask": "lesion_mask.nii.gz",
    "lesion_fixed": "lesion_fixed.nii.gz",
    "displacement": "true_displacement_ras_mm.nii.gz",
}


def write_pair(pair: PathologicalPair, folder: str | Path) -> dict[str, Path]:
    """Write every part of the pair as NIfTI (each with its own affine) and return the paths."""
    folder = Path(folder)
    written = {}
    for field_name, file_name in PAIR_FILES.items():
        vol: Volume = getattr(pair, field_name)
        written[field_name] = write_nifti(folder / file_name, vol.array, vol.affine)
    return written
