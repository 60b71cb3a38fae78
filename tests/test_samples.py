"""The embedded MNI152 sample and the generated pathological pairs: geometry and known answers."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from medsuite.data.samples import load_mni152, make_pathological_pair, mni152_paths, write_pair


@pytest.fixture(scope="module")
def pair():
    return make_pathological_pair(0)


def test_mni152_files_ship_with_nilearn():
    assert all(path.is_file() for path in mni152_paths().values())


def test_mni152_2mm_keeps_exact_geometry():
    t1, tissue = load_mni152(2.0)
    assert t1.spatial_shape == (99, 117, 95)
    np.testing.assert_allclose(t1.spacing, [2.0, 2.0, 2.0])
    # The first voxel centre is the 1 mm grid's first voxel centre: no half-voxel shift.
    np.testing.assert_allclose(t1.affine[:3, 3], [-98.0, -134.0, -72.0])
    np.testing.assert_array_equal(t1.affine, tissue.affine)
    counts = np.bincount(tissue.array.ravel(), minlength=3)
    gm_ml, wm_ml = counts[1] * 0.008, counts[2] * 0.008
    assert 850 < gm_ml < 1350 and 500 < wm_ml < 800  # adult brain volumes (MNI template ~1.1 l GM, ~0.64 l WM)
    assert set(np.unique(tissue.array)) == {0, 1, 2}


def test_load_is_cached_but_returns_copies():
    first, _ = load_mni152(2.0)
    first.array[:] = 0
    again, _ = load_mni152(2.0)
    assert again.array.max() > 50


def test_pair_is_seeded(pair):
    same = make_pathological_pair(0)
    np.testing.assert_array_equal(same.moving.array, pair.moving.array)
    other = make_pathological_pair(1)
    assert not np.array_equal(other.lesion_mask.array, pair.lesion_mask.array)


def test_pair_geometry_and_lesion(pair):
    assert pair.moving.spatial_shape == pair.fixed.spatial_shape
    assert not np.allclose(pair.moving.affine, pair.fixed.affine)  # rotated/shifted in world space
    rotation = pair.moving.affine[:3, :3] / 2.0
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)  # still a rigid change
    lesion_ml = pair.lesion_mask.array.sum() * pair.moving.voxel_volume_ml
    radius = pair.parameters["tumour_radius_mm"]
    assert 0.6 < lesion_ml / (4 / 3 * np.pi * radius**3 / 1000) < 1.5
    lesion_fixed_ml = pair.lesion_fixed.array.sum() * pair.fixed.voxel_volume_ml
    assert lesion_fixed_ml < lesion_ml  # mass effect: the tumour occupies healthy tissue pushed aside
    assert pair.displacement.array.shape == pair.fixed.spatial_shape + (3,)


def _warp_by_truth(pair, array, order):
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in pair.fixed.spatial_shape], indexing="ij"), axis=-1).astype(float)
    world = grid @ pair.fixed.affine[:3, :3].T + pair.fixed.affine[:3, 3] + pair.displacement.array
    inverse = np.linalg.inv(pair.moving.affine)
    index = world @ inverse[:3, :3].T + inverse[:3, 3]
    return ndimage.map_coordinates(array, np.moveaxis(index, -1, 0), order=order)


def test_true_displacement_recovers_the_fixed_outside_the_lesion(pair):
    outside = pair.lesion_fixed.array == 0
    labels = _warp_by_truth(pair, pair.moving_labels.array, order=0)
    # Two nearest-neighbour resamplings (making the pair, then this check) disagree on a few boundary voxels.
    assert (labels == pair.fixed_labels.array)[outside].mean() > 0.995
    warped = _warp_by_truth(pair, pair.moving.array, order=1) / pair.parameters["intensity_scale"]
    brain = outside & (pair.fixed_labels.array > 0)
    error = np.abs(warped - pair.fixed.array)[brain]
    assert error.mean() < 0.04 * pair.fixed.array[brain].mean()  # linear interpolation twice blurs the edges a little
    # ...and not inside it: the tumour replaced the tissue there.
    inside = pair.lesion_fixed.array > 0
    assert np.abs(warped - pair.fixed.array)[inside].mean() > 5 * error.mean()


def test_write_pair_keeps_each_affine(pair, tmp_path):
    written = write_pair(pair, tmp_path)
    assert set(written) >= {"fixed", "moving", "moving_labels", "lesion_mask", "displacement"}
    np.testing.assert_allclose(nib.load(written["moving"]).affine, pair.moving.affine, atol=1e-5)
    np.testing.assert_allclose(nib.load(written["fixed"]).affine, pair.fixed.affine, atol=1e-5)
    assert nib.load(written["displacement"]).shape == pair.fixed.spatial_shape + (3,)


def test_deformation_is_more_than_an_affine(pair):
    """The known deformation must need deformable registration: its residual after the best affine fit is
    a real fraction of the stated 4 mm peak (noise smoothed with replicated borders once left ~0.3 mm)."""
    brain = pair.fixed_labels.array > 0
    index = np.c_[np.argwhere(brain), np.ones(int(brain.sum()))]
    displacement = pair.displacement.array[brain]
    coefficients, *_ = np.linalg.lstsq(index, displacement, rcond=None)
    residual = np.linalg.norm(displacement - index @ coefficients, axis=1)
    assert residual.mean() > 0.8
