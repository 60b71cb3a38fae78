"""Geometry-keeping I/O: NIfTI round trips, ITK formats, DICOM series order and spacing, atomic writes."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from medsuite.errors import MedsuiteError
from medsuite.io import from_sitk, read_3d, read_image, to_sitk, write_json, write_nifti


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
def test_nifti_round_trip_keeps_affine_and_dtype(tmp_path, oblique_volume, suffix, dtype):
    array, affine = oblique_volume
    target = write_nifti(tmp_path / f"vol{suffix}", array.astype(dtype), affine)
    vol = read_image(target)
    np.testing.assert_allclose(vol.affine, affine, atol=1e-5)
    assert vol.array.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(vol.array, array.astype(dtype))
    np.testing.assert_allclose(vol.spacing, [1.2, 0.9, 3.0], atol=1e-5)
    header = nib.load(str(target)).header
    assert int(header["sform_code"]) == 1 and int(header["qform_code"]) == 1


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_itk_formats_give_the_same_world_geometry_as_nifti(tmp_path, oblique_volume, suffix):
    array, affine = oblique_volume
    nifti = read_image(write_nifti(tmp_path / "v.nii.gz", array, affine))
    sitk.WriteImage(to_sitk(nifti), str(tmp_path / f"v{suffix}"))
    other = read_image(tmp_path / f"v{suffix}")
    np.testing.assert_allclose(other.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(other.array, array)
    # SimpleITK itself must agree on where voxel (3, 2, 1) is: LPS = RAS with x, y negated.
    image = sitk.ReadImage(str(tmp_path / f"v{suffix}"))
    lps = np.array(image.TransformIndexToPhysicalPoint((3, 2, 1)))
    ras = affine @ np.array([3, 2, 1, 1.0])
    np.testing.assert_allclose(lps, ras[:3] * [-1, -1, 1], atol=1e-4)


def test_sitk_round_trip_is_identity(oblique_volume):
    array, affine = oblique_volume
    vol = from_sitk(to_sitk(read_like(array, affine)))
    np.testing.assert_allclose(vol.affine, affine, atol=1e-6)
    np.testing.assert_array_equal(vol.array, array)


def read_like(array, affine):
    from medsuite.io import Volume

    return Volume(array=array, affine=affine)


def test_dicom_series_sorted_by_position_with_spacing():
    ct5 = get_testdata_file("CT_small.dcm", download=False)
    from pathlib import Path

    folder = Path(ct5).parent / "dicomdirtests" / "98892001" / "CT5N"
    vol = read_image(folder)
    assert vol.array.ndim == 3 and vol.array.shape[2] == 5
    # Slice positions along the slice axis must increase monotonically in world space.
    z = [(vol.affine @ np.array([0, 0, k, 1.0]))[:3] for k in range(5)]
    steps = np.diff(np.array(z), axis=0)
    assert np.allclose(steps, steps[0], atol=1e-3)
    import pydicom

    positions = sorted(float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in folder.iterdir())
    assert np.isclose(np.linalg.norm(steps[0]), abs(positions[1] - positions[0]), atol=1e-3)
    pixel = [float(v) for v in pydicom.dcmread(next(folder.iterdir())).PixelSpacing]
    np.testing.assert_allclose(vol.spacing[:2], pixel[::-1], atol=1e-4)


def test_mixed_series_folder_is_refused_with_a_list(tmp_path):
    import shutil

    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name, download=False), tmp_path / name)
    with pytest.raises(MedsuiteError, match=r"holds 2 DICOM series"):
        read_image(tmp_path)


def test_bad_inputs_give_one_line_errors(tmp_path):
    with pytest.raises(MedsuiteError, match="no such file"):
        read_image(tmp_path / "missing.nii.gz")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(MedsuiteError, match="not a supported image format"):
        read_image(tmp_path / "notes.txt")
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti at all")
    with pytest.raises(MedsuiteError, match="cannot read as NIfTI"):
        read_image(tmp_path / "broken.nii.gz")
    flat = write_nifti(tmp_path / "flat.nii.gz", np.zeros((8, 8, 1), np.float32), np.eye(4))
    with pytest.raises(MedsuiteError, match="not a 3D volume"):
        read_3d(flat)
    cine = write_nifti(tmp_path / "cine.nii.gz", np.random.rand(6, 6, 4, 3).astype(np.float32), np.eye(4))
    with pytest.raises(MedsuiteError, match="choose a frame"):
        read_3d(cine)
    assert read_3d(cine, frame=2).array.shape == (6, 6, 4)
    nan = np.ones((5, 5, 5), np.float32)
    nan[2, 2, 2] = np.nan
    with pytest.raises(MedsuiteError, match="NaN"):
        read_3d(write_nifti(tmp_path / "nan.nii.gz", nan, np.eye(4)))
    with pytest.raises(MedsuiteError, match="empty"):
        read_3d(write_nifti(tmp_path / "empty.nii.gz", np.zeros((5, 5, 5), np.float32), np.eye(4)))


def test_writes_are_atomic_and_never_over_an_input(tmp_path, oblique_volume):
    array, affine = oblique_volume
    source = write_nifti(tmp_path / "in.nii.gz", array, affine)
    before = source.read_bytes()
    with pytest.raises(MedsuiteError, match="would overwrite an input"):
        write_nifti(source, array * 2, affine, inputs=[source])
    assert source.read_bytes() == before
    with pytest.raises(TypeError):
        write_json(tmp_path / "r.json", {"bad": object()})
    assert not (tmp_path / "r.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in.nii.gz"]  # no temporary files left behind
    assert source.stat().st_mode & 0o044 == 0o044 or os.umask(os.umask(0)) & 0o044  # readable by others unless the umask forbids
