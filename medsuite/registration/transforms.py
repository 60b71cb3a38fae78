"""The transform set ``register`` leaves behind, and applying it later to images and label maps.

A registration folder is a transform folder (the file names are fixed, so a user may copy just these):

=====================  ===========================================================================
``ddf.nii.gz``         total forward field on the fixed grid: fixed point p -> moving point p + d(p)
``inverse_ddf.nii.gz`` total inverse field on the moving grid: moving point q -> fixed point q + d'(q)
``affine.mat``         the affine pre-alignment A alone (ITK ``AffineTransform_double_3_3``, LPS mm),
                       fixed point -> moving point, as ANTs' ``0GenericAffine.mat``
``composite.h5``       ITK ``CompositeTransform`` [A, D]: T(p) = A(D(p)), D the deformable field on the
                       fixed grid; equal to ``ddf.nii.gz``, as ANTs' ``Composite.h5``
``inverse_composite.h5`` ITK ``CompositeTransform`` [D^-1, A^-1]: T^-1(q) = D^-1(A^-1(q))
=====================  ===========================================================================

ITK's convention (SimpleITK, ANTs, 3D Slicer's transform files): a transform that *resamples an image*
from space M onto a grid of space F maps F's points to M's points. So the forward files warp the
moving image onto the fixed grid, and carry *points* the other way (fixed -> moving). Displacement
fields are world millimetres in LPS inside ITK; the NIfTI files store the vectors RAS (intent 1006),
which ITK flips to LPS on reading, so every reader sees the same field.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medsuite.errors import MedsuiteError
from medsuite.io import LPS_TO_RAS, Volume, atomic_path, ensure_not_input, read_3d, to_sitk, write_nifti
from medsuite.registration.spatial import affine_in_index_plus_field, affine_matrix, displacement_transform

if TYPE_CHECKING:
    from collections.abc import Iterable

TRANSFORM_FILES = {
    "ddf": "ddf.nii.gz",
    "inverse_ddf": "inverse_ddf.nii.gz",
    "affine": "affine.mat",
    "composite": "composite.h5",
    "inverse_composite": "inverse_composite.h5",
}
Interpolation = Literal["linear", "nearest", "bspline"]
INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}
_RAS_VECTOR = np.array([-1.0, -1.0, 1.0])  # LPS <-> RAS for vectors (its own inverse)


def conventions() -> dict[str, str]:
    """What each file of the set maps, which way, in which convention: the report's ``transforms`` entry."""
    return {
        "coordinate_convention": "world mm; ITK files (.mat, .h5) in LPS; NIfTI fields store RAS vectors (intent 1006) that ITK, ANTs and 3D Slicer read as LPS",
        "direction_rule": "ITK's: a transform used to resample an image from space M onto space F maps F's points to M's points, so points move opposite to images",
        "ddf": "forward total field on the fixed grid: fixed point p -> moving point p + ddf(p); resamples the moving image onto the fixed grid (antsApplyTransforms -r fixed -t ddf.nii.gz)",
        "inverse_ddf": "inverse total field on the moving grid: moving point q -> fixed point q + inverse_ddf(q); resamples fixed-space images (atlas labels) onto the moving grid",
        "affine": "the affine pre-alignment alone (ITK AffineTransform_double_3_3, LPS): fixed point -> moving point, as ANTs' 0GenericAffine.mat",
        "composite": "ITK CompositeTransform [affine, deformable field on the fixed grid] = ddf.nii.gz: fixed point -> moving point (ANTs' Composite.h5)",
        "inverse_composite": "ITK CompositeTransform [inverse deformable field, inverse affine] = inverse_ddf.nii.gz: moving point -> fixed point (ANTs' InverseComposite.h5)",
        "points": "to carry moving-space points (a patient's landmarks) into fixed space, transform them with inverse_composite.h5; fixed-space points into moving space with composite.h5",
    }


def deformable_forward(ddf_lps: np.ndarray, fixed: Volume, prealign: sitk.AffineTransform) -> np.ndarray:
    """D - the identity, as LPS mm displacements (X, Y, Z, 3) on the fixed grid: the affine factored out.

    ``ddf_lps`` is the total forward field T(p) - p with T = A o D, so D(p) - p = A^-1(p + ddf(p)) - p: with
    the grid's ``p = L i + t`` and ``A^-1 x = M x + m`` that is ``(M L - L) i + M ddf + (M t + m - t)``.
    """
    lps_affine = LPS_TO_RAS @ fixed.affine
    linear, offset = lps_affine[:3, :3], lps_affine[:3, 3]
    inverse_affine = np.linalg.inv(affine_matrix(prealign))
    matrix, shift = inverse_affine[:3, :3], inverse_affine[:3, 3]
    return affine_in_index_plus_field(fixed.spatial_shape, matrix @ linear - linear, matrix, [ddf_lps[..., k] for k in range(3)], matrix @ offset + shift - offset)


def deformable_inverse(inverse_vox: np.ndarray, fixed: Volume) -> np.ndarray:
    """D^-1 - the identity (X, Y, Z, 3), LPS mm, fixed grid: ``inverse_vox`` (3, X, Y, Z), the optimisation's
    inverse deformation in fixed-grid voxels (pre-aligned point y -> y + inverse(y)), through the grid's axes."""
    linear = (LPS_TO_RAS @ fixed.affine)[:3, :3]
    return affine_in_index_plus_field(fixed.spatial_shape, np.zeros((3, 3)), linear, list(inverse_vox), np.zeros(3))


def forward_composite(ddf_lps: np.ndarray, fixed: Volume, prealign: sitk.AffineTransform) -> sitk.CompositeTransform:
    """[A, D] as a SimpleITK composite (the last added acts first on a point): fixed point -> moving point."""
    return sitk.CompositeTransform([sitk.AffineTransform(prealign), displacement_transform(deformable_forward(ddf_lps, fixed, prealign), fixed)])


def inverse_composite(inverse_vox: np.ndarray, fixed: Volume, prealign: sitk.AffineTransform) -> sitk.CompositeTransform:
    """[D^-1, A^-1]: moving point -> fixed point."""
    inverse_affine = sitk.AffineTransform(3)
    matrix = np.linalg.inv(affine_matrix(prealign))
    inverse_affine.SetMatrix(matrix[:3, :3].ravel().tolist())
    inverse_affine.SetTranslation(matrix[:3, 3].tolist())
    return sitk.CompositeTransform([displacement_transform(deformable_inverse(inverse_vox, fixed), fixed), inverse_affine])


def field_on_grid(transform: sitk.Transform, grid: Volume) -> np.ndarray:
    """T(q) - q (X, Y, Z, 3), LPS mm, at every voxel centre of ``grid``."""
    reference = to_sitk(grid, np.zeros(grid.spatial_shape, np.float32))
    field = sitk.TransformToDisplacementField(transform, sitk.sitkVectorFloat64, reference.GetSize(), reference.GetOrigin(), reference.GetSpacing(), reference.GetDirection())
    return np.transpose(sitk.GetArrayFromImage(field), (2, 1, 0, 3))


def write_displacement_nifti(target: Path, ddf_lps: np.ndarray, grid: Volume, *, inputs: Iterable[str | Path] = ()) -> Path:
    """An (X, Y, Z, 1, 3) float32 NIfTI displacement (intent 1006) with RAS vectors on ``grid``."""
    if not np.all(np.isfinite(ddf_lps)):
        raise MedsuiteError(target, "the displacement field has non-finite vectors", "rerun the registration; report it if it repeats")
    ras = ddf_lps.astype(np.float32) * _RAS_VECTOR.astype(np.float32)  # a sign flip: exact in either precision
    # gzip level 0 (stored): a float field's mantissas compress by ~10 %, for ~2.7 s per field at 1 mm
    return write_nifti(target, ras[:, :, :, None, :], grid.affine, inputs=inputs, intent="displacement vector", compresslevel=0)


def _without_timestamps(source: Path, target: Path) -> None:
    """Copy ITK's HDF5 transform file dataset by dataset without HDF5's per-dataset creation times, which
    made two writes of the same transform differ in 128 bytes; the layout (ITK's own) is unchanged."""
    import h5py

    with h5py.File(source, "r") as original, h5py.File(target, "w", libver="earliest") as copy:
        def visit(name: str, item) -> None:
            if isinstance(item, h5py.Group):
                copy.require_group(name)
            else:
                copy.create_dataset(name, data=item[()], dtype=item.dtype, track_times=False)

        original.visititems(visit)


def _write_itk_transform(target: Path, transform: sitk.Transform) -> Path:
    with atomic_path(target) as tmp:
        if target.suffix != ".h5":
            sitk.WriteTransform(transform, str(tmp))
        else:
            with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
                written = Path(scratch) / target.name
                sitk.WriteTransform(transform, str(written))
                _without_timestamps(written, tmp)
    return target


def write_transform_set(out_dir: Path, fixed: Volume, moving: Volume, ddf_lps: np.ndarray, inverse_vox: np.ndarray, prealign: sitk.AffineTransform, *, inputs: Iterable[str | Path] = ()) -> dict[str, str]:
    """Write the five files of the set into ``out_dir``; returns {role: file name}."""
    out_dir = Path(out_dir)
    inputs = list(inputs)
    write_displacement_nifti(out_dir / TRANSFORM_FILES["ddf"], ddf_lps, fixed, inputs=inputs)
    _write_itk_transform(out_dir / TRANSFORM_FILES["affine"], sitk.AffineTransform(prealign))
    # One composite alive at a time: each holds a float64 field (~200 MB at 1 mm), the peak of a 1 mm run.
    _write_itk_transform(out_dir / TRANSFORM_FILES["composite"], forward_composite(ddf_lps, fixed, prealign))
    inverse = inverse_composite(inverse_vox, fixed, prealign)
    _write_itk_transform(out_dir / TRANSFORM_FILES["inverse_composite"], inverse)
    write_displacement_nifti(out_dir / TRANSFORM_FILES["inverse_ddf"], field_on_grid(inverse, moving), moving, inputs=inputs)
    return dict(TRANSFORM_FILES)


def affine_report(prealign: sitk.AffineTransform) -> dict[str, list[list[float]]]:
    """The pre-alignment as 4x4 matrices (fixed point -> moving point) in both conventions, for report.json."""
    lps = affine_matrix(prealign)
    return {"lps": np.round(lps, 9).tolist(), "ras": np.round(LPS_TO_RAS @ lps @ LPS_TO_RAS, 9).tolist()}


# ---------------------------------------------------------------------------------------------
# Reading a transform folder back and applying it


def _require(folder: Path, role: str) -> Path:
    path = Path(folder) / TRANSFORM_FILES[role]
    if not Path(folder).is_dir():
        raise MedsuiteError(folder, "is not a folder", "give the results folder that 'medsuite register' wrote")
    if not path.is_file():
        raise MedsuiteError(folder, f"has no {TRANSFORM_FILES[role]}", "give a results folder of 'medsuite register' (this version writes the full transform set)")
    return path


def read_transform(folder: Path, *, inverse: bool) -> sitk.Transform:
    """The composite that resamples moving-space images onto fixed space (``inverse``: the other way)."""
    path = _require(folder, "inverse_composite" if inverse else "composite")
    try:
        return sitk.ReadTransform(str(path))
    except RuntimeError as exc:
        raise MedsuiteError(path, "cannot be read as an ITK transform", "the file is damaged; rerun 'medsuite register'") from exc


def default_reference(folder: Path, *, inverse: bool) -> Volume:
    """The grid an applied transform writes onto by default: the fixed grid (the moving one with ``inverse``)."""
    path = _require(folder, "inverse_ddf" if inverse else "ddf")
    image = nib.load(str(path))
    return Volume(array=np.zeros(image.shape[:3], np.uint8), affine=np.asarray(image.affine, np.float64), source=path)


def apply_to_volume(transform: sitk.Transform, image: Volume, reference: Volume, interpolation: Interpolation) -> np.ndarray:
    """``image`` resampled onto ``reference``'s grid through ``transform`` (reference point -> image point).

    Nearest-neighbour keeps the input's dtype (label maps stay labels); the others give float32."""
    nearest = interpolation == "nearest"
    source = to_sitk(image, np.asarray(image.array) if nearest else np.asarray(image.array, np.float32))
    target = to_sitk(reference, np.zeros(reference.spatial_shape, np.uint8))
    result = sitk.Resample(source, target, transform, INTERPOLATORS[interpolation], 0.0, source.GetPixelID())
    array = np.transpose(sitk.GetArrayFromImage(result), (2, 1, 0))
    return array.astype(image.array.dtype if nearest else np.float32)


def default_interpolation(image: Volume) -> Interpolation:
    """Nearest for integer images (label maps), linear otherwise: what a user means by not choosing."""
    return "nearest" if np.issubdtype(image.array.dtype, np.integer) or image.array.dtype == bool else "linear"


def apply_transform_to_image(folder: Path, input_path: Path, output: Path, *, inverse: bool = False, reference: Path | None = None, interpolation: Interpolation | None = None) -> dict:
    """Warp a moving-space image onto the fixed grid (``inverse``: a fixed-space image onto the moving grid)."""
    transform = read_transform(folder, inverse=inverse)
    image = read_3d(input_path)
    if image.array.dtype == bool:
        image = image.with_array(image.array.astype(np.uint8))
    grid = read_3d(reference) if reference is not None else default_reference(folder, inverse=inverse)
    mode = interpolation or default_interpolation(image)
    warped = apply_to_volume(transform, image, grid, mode)
    if not np.all(np.isfinite(warped)):
        raise MedsuiteError(output, "the warped image has non-finite voxels", "check the input image")
    write_nifti(output, warped, grid.affine, inputs=[input_path, *([reference] if reference else [])])
    return {"output": str(output), "interpolation": mode, "direction": "fixed -> moving space" if inverse else "moving -> fixed space", "shape": list(warped.shape)}


def transform_points_lps(transform: sitk.Transform, points: np.ndarray) -> np.ndarray:
    """(N, 3) LPS points through an ITK transform's point map."""
    return np.array([transform.TransformPoint(tuple(map(float, p))) for p in points], dtype=np.float64).reshape(-1, 3)


def point_transform(folder: Path, *, inverse: bool) -> sitk.Transform:
    """The transform that carries moving-space points into fixed space (``inverse``: fixed -> moving).

    Images and points go opposite ways through one ITK transform, so moving points take the *inverse*
    composite: the same direction as the images ``transform apply`` warps without ``--inverse``."""
    return read_transform(folder, inverse=not inverse)



def apply_transform_to_points(folder: Path, input_path: Path, output: Path, *, inverse: bool = False) -> dict:
    """Moving-space points into fixed space (``inverse``: fixed -> moving); the output keeps every other column."""
    from medsuite.registration.points import read_points, write_points

    ensure_not_input(output, [input_path])
    points = read_points(input_path)
    mapped = transform_points_lps(point_transform(folder, inverse=inverse), points.lps)
    write_points(output, points.with_points(mapped))
    return {"output": str(output), "count": len(mapped), "direction": "fixed -> moving space" if inverse else "moving -> fixed space"}
