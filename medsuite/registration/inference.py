"""``register_volumes``: the whole pipeline on two volumes; ``register_files``: the command's folder output.

Steps: affine pre-alignment (SimpleITK, world space) -> moving resampled onto the fixed grid ->
GIRNet instance optimisation (optionally from a trained checkpoint) -> total transform composed
as one ITK displacement field (fixed world point -> moving world point, LPS mm).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from medsuite.data.intensity import intensity_bounds, normalise_intensity
from medsuite.io import Volume, check_output_dir, ensure_not_input, read_3d, require_finite, to_sitk, write_json, write_nifti
from medsuite.registration.config import RegistrationConfig
from medsuite.registration.fields import warp
from medsuite.registration.instance import model_grid, optimise_in_content_box
from medsuite.registration.prealign import affine_prealign
from medsuite.registration.spatial import displacement_transform, folding_percent, jacobian_determinant, resample_moving, resize_image, voxel_ddf_to_world_lps
from medsuite.registration.transforms import TRANSFORM_FILES, affine_report, conventions, write_transform_set

if TYPE_CHECKING:  # networks.py imports MONAI (~3 s): loaded only with a checkpoint, by medsuite.checkpoints
    from medsuite.registration.networks import GIRNet

OUTPUTS = {
    "warped": "warped.nii.gz",
    "lesion_mask": "lesion_mask.nii.gz",
    "inpainted": "inpainted.nii.gz",
    "ddf": "ddf.nii.gz",
    "jacobian": "jacobian.nii.gz",
}
WARPED_LABELS = "warped_labels.nii.gz"


@dataclass
class Registration:
    fixed: Volume
    moving: Volume
    ddf_lps: np.ndarray  # (X, Y, Z, 3) world mm (LPS), fixed grid: fixed point p -> moving point p + ddf(p)
    warped: np.ndarray  # moving on the fixed grid (original intensities)
    jacobian: np.ndarray  # of the deformable part, fixed grid
    lesion: np.ndarray  # binary, moving grid
    lesion_fixed: np.ndarray  # binary, fixed grid
    inpainted: np.ndarray  # moving grid, moving intensity scale
    seconds: dict[str, float] = field(default_factory=dict)
    energy: dict | str = "not estimated"
    steps_taken: int = 0  # instance-optimisation steps over all levels (levels stop early on a loss plateau)
    prealign: sitk.AffineTransform = field(default_factory=lambda: sitk.AffineTransform(3))  # fixed point -> moving point
    inverse_vox: np.ndarray | None = None  # (3, X, Y, Z) inverse deformation, fixed-grid voxels (transform set)

    @property
    def folding_percent(self) -> float:
        return folding_percent(self.jacobian)

    @property
    def lesion_volume_ml(self) -> float:
        return float(self.lesion.sum() * self.moving.voxel_volume_ml)

    def transform(self) -> sitk.DisplacementFieldTransform:
        return displacement_transform(self.ddf_lps, self.fixed)

    def warp_moving(self, array: np.ndarray, *, nearest: bool = False) -> np.ndarray:
        """Any moving-grid array (labels, another contrast) through the total transform."""
        return resample_moving(self.moving.with_array(array), self.fixed, self.transform(), nearest=nearest)


def clean_mask(probability: np.ndarray) -> np.ndarray:
    """Threshold, keep the largest connected region, fill holes: one lesion without speckle."""
    binary = probability >= 0.5
    labels, count = ndimage.label(binary)
    if count == 0:
        return binary
    sizes = ndimage.sum(binary, labels, range(1, count + 1))
    return ndimage.binary_fill_holes(labels == (int(np.argmax(sizes)) + 1))


def inference_energy(model: GIRNet | None, pair: torch.Tensor, voxel_mm: float) -> dict:
    """The estimated energy of one pass of the trained modules (SNN helper's convention) on the grid a warm
    start runs them on; instance optimisation's own steps are gradient arithmetic, not counted."""
    from medsuite.backbones.energy import estimate_energy, finish_estimate

    if model is None:
        nothing = dict.fromkeys(("macs", "acs", "memory_accesses", "neuron_updates"), 0)
        return finish_estimate(nothing) | {"note": "no network ran (instance optimisation only)"}
    example = resize_image(pair, model_grid(model, tuple(pair.shape[2:]), voxel_mm))
    estimate = estimate_energy(model, example)
    return {k: v for k, v in estimate.items() if k != "per_layer"} | {"per": f"one pass of the three modules on a {list(example.shape[2:])} grid"}


def _to_moving_grid(array: np.ndarray, fixed: Volume, moving: Volume, prealign: sitk.AffineTransform, *, nearest: bool) -> np.ndarray:
    """A pre-aligned-space array (fixed lattice) back onto the moving grid through the inverse affine."""
    source = to_sitk(fixed, array.astype(np.float32))
    reference = to_sitk(moving, np.zeros(moving.spatial_shape, np.float32))
    result = sitk.Resample(source, reference, prealign.GetInverse(), sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear, 0.0)
    return np.transpose(sitk.GetArrayFromImage(result), (2, 1, 0))


def field_of_view(moving: Volume, fixed: Volume, prealign: sitk.AffineTransform, margin_mm: float = 4.0) -> np.ndarray:
    """Where the pre-aligned moving image has data (fixed lattice), ``margin_mm`` in from where it has none:
    outside its grid, and its exact zeros (the fill of a resampled or cropped scan, a skull-stripped
    background; no tissue, CSF or necrosis reads exactly 0). There the atlas shows tissue the patient image
    cannot: no lesion (measured: a 3.1 ml "lesion" on a healthy scan against its resampled, rotated copy)."""
    has_data = (np.asarray(moving.array) != 0).astype(np.float32)
    inside = resample_moving(moving.with_array(has_data), fixed, prealign) > 0.999
    return ndimage.binary_erosion(inside, iterations=max(1, round(margin_mm / float(np.mean(fixed.spacing)))))


def register_volumes(
    fixed: Volume,
    moving: Volume,
    config: RegistrationConfig,
    *,
    model: GIRNet | None = None,
    steps: int | None = None,
    seed: int = 0,
    use_segmentation: bool = True,
    use_inpainting: bool = True,
    lesion_mask: np.ndarray | None = None,
    device: torch.device | str = "cpu",
) -> Registration:
    """``lesion_mask`` (moving grid, non-zero = lesion): a known lesion, masked out of the cost function and
    written back as given; no mask is generated. ``device``: where the networks and the instance optimisation
    run (``medsuite.runtime.resolve_device``); pre-alignment and outputs stay on the CPU."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    prealign = affine_prealign(fixed, moving, iterations=config.prealign_iterations, seed=seed)
    premoved = resample_moving(moving, fixed, prealign)
    given = None
    if lesion_mask is not None:
        given = (resample_moving(moving.with_array((lesion_mask > 0).astype(np.uint8)), fixed, prealign, nearest=True) > 0).astype(np.float32)
    seconds["prealign"] = time.perf_counter() - start

    start = time.perf_counter()
    fixed_n = normalise_intensity(np.asarray(fixed.array, dtype=np.float32), config.intensity)
    moving_n = normalise_intensity(premoved, config.intensity)
    low, high = (float(v) for v in intensity_bounds(premoved, config.intensity))  # to scale the fill back
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None, None].to(device)  # noqa: E731
    model = model.to(device) if model is not None else None
    torch.manual_seed(seed)
    voxel_mm = float(np.mean(fixed.spacing))
    result = optimise_in_content_box(
        as_tensor(fixed_n), as_tensor(moving_n), config, model=model, steps=steps, use_segmentation=use_segmentation, use_inpainting=use_inpainting, voxel_mm=voxel_mm,
        given_lesion=None if given is None else as_tensor(given),
    )
    result = dataclasses.replace(result, **{name: getattr(result, name).cpu() for name in ("forward", "inverse", "lesion", "inpainted")})
    seconds["deformable"] = time.perf_counter() - start
    region = (slice(None), slice(None), *(result.box or ()))
    energy = inference_energy(model, torch.cat([as_tensor(moving_n), as_tensor(fixed_n)], dim=1)[region], voxel_mm)

    start = time.perf_counter()
    forward = result.forward[0].numpy()  # float32 (3, X, Y, Z); widened per component where float64 is needed
    ddf_lps = voxel_ddf_to_world_lps(forward, fixed, prealign)
    registration = Registration(
        fixed=fixed,
        moving=moving,
        ddf_lps=ddf_lps,
        warped=np.zeros(fixed.spatial_shape, np.float32),
        jacobian=jacobian_determinant(forward).astype(np.float32),
        lesion=np.zeros(moving.spatial_shape, bool),
        lesion_fixed=np.zeros(fixed.spatial_shape, bool),
        inpainted=np.zeros(moving.spatial_shape, np.float32),
        seconds=seconds,
        energy=energy,
        steps_taken=len(result.losses),
        prealign=prealign,
        inverse_vox=result.inverse[0].numpy(),
    )
    registration.warped = registration.warp_moving(np.asarray(moving.array, np.float32))
    lesion_pre = clean_mask(result.lesion[0, 0].numpy() * field_of_view(moving, fixed, prealign))
    if lesion_pre.sum() * fixed.voxel_volume_ml < config.instance.min_lesion_ml and lesion_mask is None:
        lesion_pre[:] = False  # below the stated volume: "no lesion found", not speckle reported as a lesion
    registration.lesion = (lesion_mask > 0) if lesion_mask is not None else _to_moving_grid(lesion_pre.astype(np.float32), fixed, moving, prealign, nearest=True) > 0.5
    lesion_fixed = torch.from_numpy(lesion_pre.astype(np.float32))[None, None]
    registration.lesion_fixed = warp(lesion_fixed, result.forward)[0, 0].numpy() >= 0.5
    inpainted = result.inpainted[0, 0].numpy() * (high - low) + low
    registration.inpainted = np.where(registration.lesion, _to_moving_grid(inpainted, fixed, moving, prealign, nearest=False), moving.array).astype(np.float32)
    seconds["outputs"] = time.perf_counter() - start
    seconds["total"] = sum(seconds.values())
    return registration


def lesion_summary(result: Registration, config: RegistrationConfig, *, given: bool) -> str:
    """The report's and summary line's words for the lesion."""
    if given:
        return f"given by --lesion-mask, {result.lesion_volume_ml:.1f} ml"
    if not result.lesion.any():
        return f"no lesion found (none of {config.instance.min_lesion_ml:g} ml or more)"
    return f"{result.lesion_volume_ml:.1f} ml found"


def load_model(checkpoint: str | Path | None, config: RegistrationConfig) -> tuple[GIRNet | None, RegistrationConfig]:
    """A trained GIRNet and the config it was trained with (the checkpoint's config wins), or none."""
    if checkpoint is None:
        return None, config
    from medsuite.checkpoints import load_model as load_checkpoint_model

    loaded = load_checkpoint_model(checkpoint, "registration")
    trained = loaded.config
    return loaded.model, config.model_copy(update={"backbone": trained.backbone, "decoder_channels": trained.decoder_channels, "intensity": trained.intensity})


def default_output_dir(moving: Path) -> Path:
    name = moving.name
    stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else moving.stem
    return moving.parent / f"{stem}_registered"


def register_files(
    fixed_path: Path,
    moving_path: Path,
    out_dir: Path | None,
    config: RegistrationConfig,
    *,
    moving_labels: Path | None = None,
    checkpoint: Path | None = None,
    steps: int | None = None,
    seed: int = 0,
    output_formats: list[str] | None = None,
    loaded: tuple[GIRNet | None, RegistrationConfig] | None = None,
    lesion_mask: Path | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Path, dict]:
    """Read, register, write the result folder; returns (folder, report). ``output_formats`` adds the lesion
    mask as DICOM-SEG / RTSTRUCT of a DICOM moving series (medsuite.export.formats). ``loaded``: ``load_model``'s
    result when the caller already has it (a batch loads the checkpoint once). ``lesion_mask``: a known lesion
    on the moving grid, left out of the cost function (no mask is generated)."""
    from medsuite.errors import MedsuiteError
    from medsuite.export.masks import algorithm_for, write_mask_outputs
    from medsuite.provenance import new_report

    fixed, moving = read_3d(fixed_path), read_3d(moving_path)
    labels = read_3d(moving_labels) if moving_labels is not None else None
    if labels is not None and labels.spatial_shape != moving.spatial_shape:
        raise MedsuiteError(moving_labels, f"has shape {labels.spatial_shape}, the moving image {moving.spatial_shape}", "give the label map of the moving image")
    given = read_3d(lesion_mask) if lesion_mask is not None else None
    if given is not None:
        if given.spatial_shape != moving.spatial_shape:
            raise MedsuiteError(lesion_mask, f"has shape {given.spatial_shape}, the moving image {moving.spatial_shape}", "give a lesion mask on the moving image's grid")
        if not np.any(given.array):
            raise MedsuiteError(lesion_mask, "is empty (no non-zero voxel)", "give a mask with the lesion marked, or leave --lesion-mask out to have it found")
    out_dir = Path(out_dir) if out_dir is not None else default_output_dir(Path(moving_path))
    inputs = [p for p in (fixed_path, moving_path, moving_labels, lesion_mask) if p is not None]
    for name in [*OUTPUTS.values(), *TRANSFORM_FILES.values(), WARPED_LABELS, "report.json"]:  # refuse before minutes of work, not after
        ensure_not_input(out_dir / name, inputs)
    check_output_dir(out_dir, 8 * 4 * int(np.prod(fixed.spatial_shape)))  # five float32 volumes, a 3-vector field
    from medsuite.batch import Manifest, refuse_replacing_others

    written = [out_dir / name for name in [*OUTPUTS.values(), *TRANSFORM_FILES.values(), WARPED_LABELS, "report.json", "manifest.json"]]
    refuse_replacing_others(out_dir, written)

    model, config = loaded if loaded is not None else load_model(checkpoint, config)
    result = register_volumes(fixed, moving, config, model=model, steps=steps, seed=seed, lesion_mask=None if given is None else np.asarray(given.array), device=device)
    for name, values in (("warped image", result.warped), ("inpainted image", result.inpainted), ("displacement field", result.ddf_lps), ("Jacobian", result.jacobian)):
        require_finite(values, moving_path, name)  # a NaN field is a failed registration, not a result
    manifest = Manifest(out_dir)
    manifest.add([p for p in written if p.name != "manifest.json"], pending=True)  # a run killed while writing still owns them

    affine_f, affine_m = fixed.affine, moving.affine
    write = lambda name, array, affine, **kw: write_nifti(out_dir / name, array, affine, inputs=inputs, **kw)  # noqa: E731
    write(OUTPUTS["warped"], result.warped.astype(np.float32), affine_f)
    lesion_outputs = write_mask_outputs(result.lesion.astype(np.uint8), moving, out_dir, OUTPUTS["lesion_mask"].removesuffix(".nii.gz"), formats=output_formats, labels={1: "lesion"}, algorithm=algorithm_for("girnet", checkpoint), inputs=inputs)
    write(OUTPUTS["inpainted"], result.inpainted, affine_m)
    write(OUTPUTS["jacobian"], result.jacobian, affine_f)
    outputs = dict(OUTPUTS) | write_transform_set(out_dir, fixed, moving, result.ddf_lps, result.inverse_vox, result.prealign, inputs=inputs)
    outputs |= {f"lesion_mask_{k}": v for k, v in lesion_outputs.items() if k != "nifti" and v is not None}
    if labels is not None:
        warped_labels = result.warp_moving(np.asarray(labels.array), nearest=True)
        write(WARPED_LABELS, warped_labels.astype(labels.array.dtype), affine_f)
        outputs["warped_labels"] = WARPED_LABELS

    parameters = {
        "steps": steps if steps is not None else sum(config.instance.steps),
        "seed": seed,
        "device": str(device),
        "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None,
        "lesion_mask": str(Path(lesion_mask).resolve()) if lesion_mask else None,
        "config": config.model_dump(mode="json"),
    }
    report = new_report("register", inputs, parameters)
    report.update(
        {
            "fixed": str(Path(fixed_path).resolve()),
            "moving": str(Path(moving_path).resolve()),
            "outputs": outputs,
            "steps_taken": result.steps_taken,
            "folding_percent": result.folding_percent,
            "lesion_volume_ml": result.lesion_volume_ml,
            "lesion": lesion_summary(result, config, given=lesion_mask is not None),
            "seconds": round(result.seconds["total"], 3),
            "seconds_by_stage": {k: round(v, 3) for k, v in result.seconds.items()},
            "energy": result.energy,
            "transforms": conventions() | {"prealign_fixed_to_moving": affine_report(result.prealign)},
        }
    )
    write_json(out_dir / "report.json", report)
    manifest.add([p for p in written if p.exists() and p.name != "manifest.json"])
    return out_dir, report
