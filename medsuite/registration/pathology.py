"""A pathology family of registration problems with known answers, for development and reporting.

Every case starts from the embedded MNI152 brain (``medsuite.data.samples``): a smooth random deformation,
a rotated and shifted moving grid and another intensity scale, as ``make_pathological_pair``, but with a
lesion described by a ``PathologyCase``: tumours hypo-, iso- or hyper-intense to grey/white matter, with a
necrotic core inside an enhancing rim or solid, with or without oedema, with or without mass effect, about
1 to 80 ml, cortical, periventricular, deep or infratentorial; resection cavities (CSF-filled, with or
without collapse of the surrounding tissue into them); and healthy pairs (no lesion at all).

The lesion mask is everything whose intensity is abnormal (tumour, necrosis and oedema: BraTS' "whole
tumour"; the cavity), in moving space, with its correspondence in fixed space.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from medsuite.data.samples import PathologicalPair, _smooth_noise_field, assemble_pair, load_mni152

Location = Literal["cortical", "periventricular", "deep", "infratentorial"]


@dataclass(frozen=True)
class PathologyCase:
    kind: Literal["tumour", "cavity", "healthy"]
    intensity: Literal["hypo", "iso", "hyper"] = "hyper"  # of the solid tumour (or the rim) against grey / white matter
    necrotic: bool = False  # a dark necrotic core inside the solid part (an enhancing rim)
    oedema: bool = False
    mass_effect: bool = False  # tumours push tissue out; cavities with it collapse (tissue pulled in)
    volume_ml: tuple[float, float] = (5.0, 20.0)  # of the tumour or cavity (without oedema), drawn per seed
    location: Location = "deep"


# The report family: each type is scored on its own (benchmarks/registration.py fixes the seeds).
FAMILY: dict[str, PathologyCase] = {
    "glioblastoma (hyper rim, necrosis, oedema, mass effect)": PathologyCase("tumour", "hyper", necrotic=True, oedema=True, mass_effect=True, volume_ml=(20, 60), location="deep"),
    "iso-intense mass (oedema, mass effect), cortical": PathologyCase("tumour", "iso", oedema=True, mass_effect=True, volume_ml=(10, 30), location="cortical"),
    "low-grade glioma (hypo, solid), deep": PathologyCase("tumour", "hypo", volume_ml=(10, 40), location="deep"),
    "metastasis (hyper, small, oedema), cortical": PathologyCase("tumour", "hyper", oedema=True, volume_ml=(1, 3), location="cortical"),
    "periventricular lesion (hypo rim, necrosis)": PathologyCase("tumour", "hypo", necrotic=True, volume_ml=(3, 10), location="periventricular"),
    "infratentorial tumour (iso, oedema)": PathologyCase("tumour", "iso", oedema=True, mass_effect=True, volume_ml=(3, 12), location="infratentorial"),
    "large tumour (hyper, necrosis, mass effect)": PathologyCase("tumour", "hyper", necrotic=True, mass_effect=True, volume_ml=(60, 80), location="deep"),
    "resection cavity (CSF, collapse)": PathologyCase("cavity", mass_effect=True, volume_ml=(10, 40), location="cortical"),
    "resection cavity (CSF, no collapse), deep": PathologyCase("cavity", volume_ml=(5, 20), location="deep"),
    "healthy": PathologyCase("healthy"),
}


def _candidates(labels: np.ndarray, affine: np.ndarray, location: Location, radius_vox: float, spacing: float) -> np.ndarray:
    """Voxel indices where a lesion of ``location`` may be centred (falling back to any tissue voxel)."""
    brain = labels > 0
    filled = ndimage.binary_fill_holes(brain)
    depth_mm = ndimage.distance_transform_edt(filled) * spacing  # distance to the brain's outline
    ventricle_mm = ndimage.distance_transform_edt(~(filled & ~brain)) * spacing  # to the inner CSF spaces
    z_world = (affine @ np.vstack([np.indices(labels.shape).reshape(3, -1), np.ones(labels.size)]))[2].reshape(labels.shape)
    inside = depth_mm > radius_vox * spacing * 0.6 + 4.0  # the lesion stays mostly inside the brain
    supratentorial = z_world > -10.0
    where = {
        "cortical": (labels == 1) & (depth_mm < 12.0 + radius_vox * spacing * 0.6) & inside & supratentorial,
        "periventricular": (labels == 2) & (ventricle_mm > 2.0) & (ventricle_mm < 6.0 + radius_vox * spacing * 0.3) & inside,
        "deep": (labels == 2) & (depth_mm > 25.0) & (ventricle_mm > 6.0 + radius_vox * spacing * 0.5) & supratentorial,
        "infratentorial": brain & (z_world < -25.0) & inside,
    }[location]
    found = np.argwhere(where)
    return found if len(found) else np.argwhere(labels == 2)


def make_family_pair(case: PathologyCase, seed: int, resolution_mm: float = 2.0, *, deformation_mm: float = 4.0, rotation_deg: float = 10.0, shift_mm: float = 10.0) -> PathologicalPair:
    """One seeded pair of ``case`` with the exact answer (``PathologicalPair``; its ``parameters`` name the case)."""
    rng = np.random.default_rng(seed)
    fixed, fixed_labels = load_mni152(resolution_mm)
    shape, spacing = fixed.spatial_shape, float(fixed.spacing[0])
    labels = fixed_labels.array
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))
    gm, wm = (float(np.median(fixed.array[labels == k])) for k in (1, 2))
    csf = float(np.median(fixed.array[ndimage.binary_fill_holes(labels > 0) & (labels == 0)]))

    volume_ml = float(rng.uniform(*case.volume_ml))
    radius_vox = (3.0 * volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0) / spacing
    centre = np.zeros(3)
    if case.kind != "healthy":
        candidates = _candidates(labels, fixed.affine, case.location, radius_vox, spacing)
        centre = candidates[rng.integers(len(candidates))].astype(np.float64)
    offset = grid - centre[:, None, None, None]
    rho = np.sqrt((offset**2).sum(axis=0))

    # Mass effect as in make_pathological_pair (radial, peaking at the rim, monotone while |a| < 0.6 r):
    # a tumour's pull points inwards (tissue pushed out), a collapsing cavity's outwards (tissue drawn in).
    pull = _smooth_noise_field(rng, shape, 16.0 / spacing, deformation_mm / spacing)
    if case.kind != "healthy" and case.mass_effect:
        a = (0.4 if case.kind == "tumour" else -0.3) * radius_vox
        magnitude = a * (rho / radius_vox) * np.exp(0.5 * (1.0 - (rho / radius_vox) ** 2))
        pull = pull - (magnitude * offset / np.maximum(rho, 1e-6)).transpose(1, 2, 3, 0)
    source = grid + pull.transpose(3, 0, 1, 2)
    anatomy = ndimage.map_coordinates(fixed.array, source, order=1, mode="constant", cval=0.0)
    moving_labels = ndimage.map_coordinates(labels, source, order=0, mode="constant", cval=0).astype(np.uint8)
    brain = ndimage.binary_fill_holes(moving_labels > 0)

    lesion = np.zeros(shape, bool)
    image = anatomy.copy()
    if case.kind != "healthy":
        wobble = ndimage.gaussian_filter(rng.standard_normal(shape), 3.0)
        wobble *= 0.15 * radius_vox / max(np.abs(wobble).max(), 1e-12)
        core = (rho < radius_vox + wobble) & brain
        texture = ndimage.gaussian_filter(rng.standard_normal(shape), 1.0)
        texture /= max(np.abs(texture).max(), 1e-12)
        if case.kind == "cavity":
            image = np.where(core, csf * (1.0 + 0.1 * texture), image)
        else:
            solid = {"hypo": 0.55 * gm, "iso": gm, "hyper": 1.3 * wm}[case.intensity]
            tumour = solid * (1.0 + 0.06 * texture)
            if case.necrotic:
                necrosis = 0.35 * gm * (1.0 + 0.1 * texture)
                tumour = np.where(rho < 0.6 * radius_vox + wobble, necrosis, tumour)
            image = np.where(core, tumour, image)
        lesion = core
        if case.oedema:  # T1-hypointense, irregular, up to ~0.6 r beyond the tumour, in tissue only
            noise = ndimage.gaussian_filter(rng.standard_normal(shape), 4.0)
            reach = radius_vox * (0.3 + 0.3 * (noise - noise.min()) / max(np.ptp(noise), 1e-12))
            oedema = (rho < radius_vox + wobble + reach) & ~core & (moving_labels > 0)
            image = np.where(oedema, anatomy * 0.75, image)
            lesion = lesion | oedema
    scale = float(rng.uniform(0.5, 2.0))
    moving_array = (scale * image).astype(np.float32)

    return assemble_pair(
        rng, fixed, fixed_labels, moving_array, moving_labels, lesion, pull, seed=seed, rotation_deg=rotation_deg, shift_mm=shift_mm,
        name=f"{case.kind} seed {seed}", labels_meta=dict(fixed_labels.meta),
        parameters={
            "case": asdict(case),
            "resolution_mm": resolution_mm,
            "lesion_volume_ml": float(lesion.sum() * spacing**3 / 1000.0),
            "drawn_volume_ml": volume_ml if case.kind != "healthy" else 0.0,
            "centre_vox": centre.tolist(),
            "deformation_mm": deformation_mm,
            "intensity_scale": scale,
        },
    )
