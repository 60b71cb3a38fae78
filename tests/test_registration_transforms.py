"""The transform set `register` writes, read back by libraries other than the writer, and `transform apply`."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from medsuite.cli import main
from medsuite.data.samples import make_pathological_pair, write_pair
from medsuite.registration.inference import register_files
from medsuite.registration.points import read_points, write_points
from tests.test_registration_pipeline import small_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    pair = make_pathological_pair(3, 4.0)
    paths = write_pair(pair, tmp_path_factory.mktemp("pair"))
    out, report = register_files(paths["fixed"], paths["moving"], tmp_path_factory.mktemp("result") / "out", small_config(), moving_labels=paths["moving_labels"])
    return pair, paths, out, report


def _sitk_array(image: sitk.Image) -> np.ndarray:
    return np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))


def _same_geometry(image: sitk.Image, nifti_path) -> None:
    """A SimpleITK image's grid equals the one nibabel reads from ``nifti_path`` (RAS affine -> LPS)."""
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ nib.load(str(nifti_path)).affine
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    np.testing.assert_allclose(image.GetOrigin(), affine[:3, 3], atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), spacing, atol=1e-5)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), affine[:3, :3] / spacing, atol=1e-5)


def test_report_names_every_file_its_direction_and_convention(registered):
    _, _, out, _ = registered
    saved = json.loads((out / "report.json").read_text())
    for role in ("ddf", "inverse_ddf", "affine", "composite", "inverse_composite"):
        assert (out / saved["outputs"][role]).is_file()
        assert "->" in saved["transforms"][role]
    assert "LPS" in saved["transforms"]["coordinate_convention"]
    ras, lps = np.array(saved["transforms"]["prealign_fixed_to_moving"]["ras"]), np.array(saved["transforms"]["prealign_fixed_to_moving"]["lps"])
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    np.testing.assert_allclose(ras, flip @ lps @ flip, atol=1e-8)


def test_every_file_carries_the_geometry_it_claims(registered):
    _, paths, out, _ = registered
    forward, inverse = sitk.ReadImage(str(out / "ddf.nii.gz")), sitk.ReadImage(str(out / "inverse_ddf.nii.gz"))
    _same_geometry(forward, paths["fixed"])
    _same_geometry(inverse, paths["moving"])
    composite = sitk.CompositeTransform(sitk.ReadTransform(str(out / "composite.h5")))
    assert composite.GetNumberOfTransforms() == 2
    assert composite.GetNthTransform(0).GetName() == "AffineTransform"
    _same_geometry(sitk.DisplacementFieldTransform(composite.GetNthTransform(1)).GetDisplacementField(), paths["fixed"])
    # the .mat holds the same affine the composite starts with; read here by SimpleITK, written by SimpleITK's ITK IO,
    # so ANTs (another reader) checks it below when installed
    affine = sitk.AffineTransform(sitk.ReadTransform(str(out / "affine.mat")))
    np.testing.assert_allclose(affine.GetParameters(), composite.GetNthTransform(0).GetParameters(), atol=1e-9)


def test_composite_reproduces_warped_in_simpleitk_and_ants(registered):
    _, paths, out, _ = registered
    warped = np.asarray(nib.load(out / "warped.nii.gz").dataobj)
    scale = float(np.ptp(warped))
    reference = sitk.ReadImage(str(paths["fixed"]))
    moving = sitk.ReadImage(str(paths["moving"]), sitk.sitkFloat32)
    again = sitk.Resample(moving, reference, sitk.ReadTransform(str(out / "composite.h5")), sitk.sitkLinear, 0.0)
    assert np.abs(_sitk_array(again) - warped).max() < 1e-4 * scale
    ants = pytest.importorskip("ants")
    fixed_ants, moving_ants = ants.image_read(str(paths["fixed"])), ants.image_read(str(paths["moving"]))
    by_ants = ants.apply_transforms(fixed_ants, moving_ants, [str(out / "composite.h5")]).numpy()
    assert np.abs(by_ants - warped).max() < 1e-4 * scale
    # ANTs' own chain: the field alone equals the composite, and the .mat reads as the same affine
    assert np.abs(ants.apply_transforms(fixed_ants, moving_ants, [str(out / "ddf.nii.gz")]).numpy() - warped).max() < 1e-4 * scale
    np.testing.assert_allclose(ants.read_transform(str(out / "affine.mat")).parameters, sitk.AffineTransform(sitk.ReadTransform(str(out / "affine.mat"))).GetParameters(), atol=1e-5)


def test_inverse_field_maps_warped_back_onto_moving(registered):
    pair, paths, out, _ = registered
    moving = sitk.ReadImage(str(paths["moving"]), sitk.sitkFloat32)
    warped = sitk.ReadImage(str(out / "warped.nii.gz"))
    inverse = sitk.DisplacementFieldTransform(sitk.Cast(sitk.ReadImage(str(out / "inverse_ddf.nii.gz")), sitk.sitkVectorFloat64))
    back = _sitk_array(sitk.Resample(warped, moving, inverse, sitk.sitkLinear, 0.0))
    target = pair.moving.array
    brain = pair.moving_labels.array > 0
    error = np.abs(back - target)[brain].mean()
    # The yardstick of interpolation error: the same two resamplings through the affine alone and its exact inverse.
    affine = sitk.ReadTransform(str(out / "affine.mat"))
    there = sitk.Resample(moving, sitk.ReadImage(str(paths["fixed"])), affine, sitk.sitkLinear, 0.0)
    round_trip = _sitk_array(sitk.Resample(there, moving, affine.GetInverse(), sitk.sitkLinear, 0.0))
    interpolation = np.abs(round_trip - target)[brain].mean()
    assert error < 1.5 * interpolation
    assert error < 0.25 * np.abs(_sitk_array(sitk.Resample(warped, moving, sitk.Transform(), sitk.sitkLinear, 0.0)) - target)[brain].mean()


def _brain_points_lps(pair, count: int = 40) -> np.ndarray:
    inside = np.argwhere(pair.moving_labels.array > 0)
    index = inside[np.random.default_rng(0).choice(len(inside), count, replace=False)].astype(np.float64) + 0.3
    ras = index @ pair.moving.affine[:3, :3].T + pair.moving.affine[:3, 3]
    return ras * np.array([-1.0, -1.0, 1.0])


def test_points_forward_then_back_within_half_a_millimetre(registered, tmp_path, capsys):
    pair, _, out, _ = registered
    lps = _brain_points_lps(pair)
    source = tmp_path / "landmarks.csv"
    source.write_text("x,y,z,t,label\n" + "".join(f"{x:.6f},{y:.6f},{z:.6f},0,p{i}\n" for i, (x, y, z) in enumerate(lps)))
    fixed_space, back = tmp_path / "in_fixed.fcsv", tmp_path / "back.csv"
    for args in ([str(out), "--points", str(source), "-o", str(fixed_space)], [str(out), "--points", str(fixed_space), "-o", str(back), "--inverse"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["transform", "apply", *args])
        assert exit_info.value.code in (0, None), capsys.readouterr().err
    returned = read_points(back)
    assert np.linalg.norm(returned.lps - lps, axis=1).max() < 0.5
    assert [row["label"] for row in returned.rows] == [f"p{i}" for i in range(len(lps))]
    # moving points went through the inverse composite: they must land where the forward composite sends them back from
    forward = sitk.ReadTransform(str(out / "composite.h5"))
    mapped = read_points(fixed_space).lps
    assert np.linalg.norm(np.array([forward.TransformPoint(tuple(p)) for p in mapped]) - lps, axis=1).max() < 0.5
    ants = pytest.importorskip("ants")
    import pandas as pd

    by_ants = ants.apply_transforms_to_points(3, pd.read_csv(source)[["x", "y", "z", "t"]], [str(out / "inverse_composite.h5")])
    np.testing.assert_allclose(by_ants[["x", "y", "z"]].to_numpy(), mapped, atol=1e-4)  # ANTs reads the same CSV the same way


def test_transform_apply_labels_keep_dtype_and_reference_geometry(registered, tmp_path, capsys):
    pair, paths, out, _ = registered
    into_fixed = tmp_path / "labels_fixed.nii.gz"
    with pytest.raises(SystemExit) as exit_info:
        main(["transform", "apply", str(out), str(paths["moving_labels"]), "-o", str(into_fixed)])
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    written = sitk.ReadImage(str(into_fixed))
    assert written.GetPixelID() == sitk.sitkUInt8
    _same_geometry(written, paths["fixed"])
    assert np.mean(_sitk_array(written) == np.asarray(nib.load(out / "warped_labels.nii.gz").dataobj)) > 0.999
    # atlas labels into the patient: fixed -> moving, onto a reference grid given explicitly
    into_moving = tmp_path / "atlas_in_patient.nii.gz"
    with pytest.raises(SystemExit):
        main(["transform", "apply", str(out), str(paths["fixed_labels"]), "-o", str(into_moving), "--inverse", "--reference", str(paths["moving"])])
    atlas = sitk.ReadImage(str(into_moving))
    _same_geometry(atlas, paths["moving"])
    labels = _sitk_array(atlas)
    assert set(np.unique(labels)) <= {0, 1, 2}
    brain = pair.moving_labels.array > 0
    assert np.mean(labels[brain] == pair.moving_labels.array[brain]) > 0.8


@pytest.mark.parametrize("interpolation", ["linear", "bspline"])
def test_transform_apply_image_interpolations(registered, tmp_path, interpolation):
    _, paths, out, _ = registered
    target = tmp_path / f"{interpolation}.nii.gz"
    with pytest.raises(SystemExit):
        main(["transform", "apply", str(out), str(paths["moving"]), "-o", str(target), "--interpolation", interpolation])
    warped = np.asarray(nib.load(out / "warped.nii.gz").dataobj)
    result = _sitk_array(sitk.ReadImage(str(target)))
    assert result.dtype == np.float32
    assert np.abs(result - warped).mean() < (1e-5 if interpolation == "linear" else 0.02) * np.ptp(warped)


def test_transform_apply_refuses_bad_input_in_one_line(registered, tmp_path, capsys):
    _, paths, out, _ = registered
    cases = [
        (["transform", "apply", str(tmp_path), str(paths["moving"]), "-o", str(tmp_path / "x.nii.gz")], "composite.h5"),
        (["transform", "apply", str(out), "-o", str(tmp_path / "x.csv")], "exactly one"),
        (["transform", "apply", str(out), "--points", str(paths["moving"]), "-o", str(tmp_path / "x.csv")], "not a point file"),
        (["transform", "apply", str(out), str(paths["moving"]), "-o", str(paths["moving"])], "would overwrite an input"),
    ]
    for args, expected in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and expected in err, err


FCSV_RAS = """# Markups fiducial file version = 4.11
# CoordinateSystem = RAS
# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID
vtkMRMLMarkupsFiducialNode_0,10.5,-20.25,30,0,0,0,1,1,1,0,AC,anterior commissure,
vtkMRMLMarkupsFiducialNode_1,-1,2,-3.125,0,0,0,1,1,1,1,PC,,
"""


def test_fcsv_and_csv_readers_round_trip(tmp_path):
    source = tmp_path / "ras.fcsv"
    source.write_text(FCSV_RAS)
    points = read_points(source)
    assert points.coordinate_system == "RAS"
    np.testing.assert_allclose(points.lps, [[-10.5, 20.25, 30.0], [1.0, -2.0, -3.125]])  # RAS -> LPS inside
    again = read_points(write_points(tmp_path / "again.fcsv", points))
    np.testing.assert_allclose(again.lps, points.lps, atol=1e-6)
    assert again.coordinate_system == "RAS" and again.rows[0]["desc"] == "anterior commissure" and again.rows[1]["lock"] == "1"
    as_csv = read_points(write_points(tmp_path / "ants.csv", points))
    np.testing.assert_allclose(as_csv.lps, points.lps, atol=1e-6)
    assert as_csv.columns[:4] == ["x", "y", "z", "t"] and [r["label"] for r in as_csv.rows] == ["AC", "PC"]
    legacy = tmp_path / "legacy.fcsv"
    legacy.write_text(FCSV_RAS.replace("CoordinateSystem = RAS", "CoordinateSystem = 1"))  # Slicer < 4.11: 1 is LPS
    np.testing.assert_allclose(read_points(legacy).lps, [[10.5, -20.25, 30.0], [-1.0, 2.0, -3.125]])
    back = read_points(write_points(tmp_path / "lps.fcsv", as_csv))
    assert back.coordinate_system == "LPS"
    np.testing.assert_allclose(back.lps, points.lps, atol=1e-6)


def test_point_files_with_bad_rows_are_refused(tmp_path):
    from medsuite.errors import MedsuiteError

    bad = tmp_path / "bad.csv"
    bad.write_text("x,y,z,t\n1,2,oops,0\n")
    with pytest.raises(MedsuiteError, match="not numbers"):
        read_points(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(MedsuiteError, match="not x,y,z"):
        read_points(wrong)


def test_landmark_error_through_the_transform_folder(registered):
    """BraTS-Reg's way: the moving image's landmarks carried into fixed space, against the fixed landmarks."""
    from medsuite.registration.landmarks import pair_landmarks, target_registration_error
    from medsuite.registration.transforms import point_transform, transform_points_lps

    pair, _, out, _ = registered
    landmarks = pair_landmarks(pair)
    flip = np.array([-1.0, -1.0, 1.0])  # the landmarks are RAS, ITK's points LPS
    mapped = transform_points_lps(point_transform(out, inverse=False), landmarks.moving_ras * flip) * flip
    registered_tre = target_registration_error(mapped, landmarks.fixed_ras).mean()
    affine = sitk.ReadTransform(str(out / "affine.mat")).GetInverse()
    affine_tre = target_registration_error(transform_points_lps(affine, landmarks.moving_ras * flip) * flip, landmarks.fixed_ras).mean()
    before = target_registration_error(landmarks.moving_ras, landmarks.fixed_ras).mean()
    assert registered_tre < affine_tre < before


def _known_set(folder):
    """A transform set whose answer is exact: an oblique fixed grid, a rotation-and-shift affine, and a
    constant deformable shift c (whose inverse is -c)."""
    from medsuite.data.samples import oblique_affine
    from medsuite.io import Volume
    from medsuite.registration.transforms import write_transform_set

    fixed = Volume(np.zeros((10, 12, 8), np.float32), oblique_affine(spacing=(2.0, 2.5, 3.0)))
    moving = Volume(np.zeros((9, 11, 9), np.float32), oblique_affine(spacing=(2.2, 2.0, 2.5), angles_deg=(5.0, 10.0, -20.0), origin=(-35.0, 20.0, 12.0)))
    prealign = sitk.AffineTransform(3)
    prealign.SetMatrix(sitk.VersorTransform((0.1, -0.2, 0.3), 0.2).GetMatrix())
    prealign.SetTranslation((3.0, -2.0, 1.5))
    prealign.SetCenter((-30.0, 25.0, 15.0))
    shift_vox = np.array([0.4, -0.3, 0.2])  # fixed-grid voxels
    axes = (np.diag([-1.0, -1.0, 1.0, 1.0]) @ fixed.affine)[:3, :3]
    shift_lps = axes @ shift_vox
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in fixed.spatial_shape], indexing="ij"), axis=-1)
    lps = grid @ axes.T + (np.diag([-1.0, -1.0, 1.0, 1.0]) @ fixed.affine)[:3, 3]
    moved = np.array([prealign.TransformPoint(tuple(p)) for p in (lps + shift_lps).reshape(-1, 3)]).reshape(lps.shape)
    inverse_vox = np.broadcast_to(-shift_vox[:, None, None, None], (3, *fixed.spatial_shape)).copy()
    write_transform_set(folder, fixed, moving, moved - lps, inverse_vox, prealign)
    return fixed, moving, prealign, shift_lps, lps


def test_transform_set_is_exact_on_a_known_answer_and_byte_identical(tmp_path):
    import time

    import h5py
    from scipy.io import loadmat

    fixed, moving, prealign, shift, lps = _known_set(tmp_path / "a")
    centre = lps[3:7, 3:9, 2:6].reshape(-1, 3)  # inside the field's grid, away from its border
    forward = sitk.ReadTransform(str(tmp_path / "a" / "composite.h5"))
    expected = np.array([prealign.TransformPoint(tuple(p + shift)) for p in centre])
    np.testing.assert_allclose([forward.TransformPoint(tuple(p)) for p in centre], expected, atol=1e-6)
    inverse = sitk.ReadTransform(str(tmp_path / "a" / "inverse_composite.h5"))
    np.testing.assert_allclose([inverse.TransformPoint(tuple(q)) for q in expected], centre, atol=1e-6)
    # geometry as other libraries see it: h5py reads the field's grid, scipy the .mat's matrix
    with h5py.File(tmp_path / "a" / "composite.h5", "r") as handle:
        assert handle["TransformGroup/0/TransformType"][0].decode().startswith("CompositeTransform")
        grid = handle["TransformGroup/2/TransformFixedParameters"][()]
    lps_affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ fixed.affine
    spacing = np.sqrt((lps_affine[:3, :3] ** 2).sum(axis=0))
    np.testing.assert_allclose(grid[:3], fixed.spatial_shape)
    np.testing.assert_allclose(grid[3:6], lps_affine[:3, 3], atol=1e-9)
    np.testing.assert_allclose(grid[6:9], spacing, atol=1e-9)
    np.testing.assert_allclose(grid[9:].reshape(3, 3), lps_affine[:3, :3] / spacing, atol=1e-9)
    mat = loadmat(str(tmp_path / "a" / "affine.mat"))
    parameters = mat["AffineTransform_double_3_3"].ravel()
    np.testing.assert_allclose(parameters[:9].reshape(3, 3), np.reshape(prealign.GetMatrix(), (3, 3)), atol=1e-12)
    np.testing.assert_allclose(mat["fixed"].ravel(), prealign.GetCenter(), atol=1e-12)
    inverse_field = nib.load(tmp_path / "a" / "inverse_ddf.nii.gz")
    np.testing.assert_allclose(inverse_field.affine, moving.affine, atol=1e-6)
    time.sleep(1.1)  # HDF5 stamps datasets with the second they were written in
    _known_set(tmp_path / "b")
    for name in ("composite.h5", "inverse_composite.h5", "affine.mat", "ddf.nii.gz", "inverse_ddf.nii.gz"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
