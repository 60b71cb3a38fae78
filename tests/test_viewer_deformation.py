"""Deformation review: ddf conventions, Jacobian determinant (SimpleITK), folding, colours, grid."""

from __future__ import annotations

import numpy as np
import pytest

from medsuite.io import Volume
from medsuite.viewer.deformation import (
    FOLDING_COLOUR,
    ddf_to_canonical_voxels,
    deformed_grid,
    folding_percent,
    jacobian_determinant,
    jacobian_rgb,
    plane_displacement,
)

LAS = np.array([[-1.5, 0, 0, 30.0], [0, 1.0, 0, -10.0], [0, 0, 3.0, -18.0], [0, 0, 0, 1]])


def test_lps_mm_field_becomes_canonical_voxel_displacement() -> None:
    shape = (12, 5, 4)
    i = np.arange(shape[0], dtype=np.float32)[:, None, None]
    ddf = np.zeros(shape + (1, 3), np.float32)
    ddf[..., 0, 0] = 1.5 * 0.1 * (i - 6)  # LPS x grows with i here (RAS x = -1.5 i + 30)
    field = ddf_to_canonical_voxels(Volume(array=ddf, affine=LAS))
    assert field.array.shape == shape + (3,)
    assert np.all(np.diag(field.affine)[:3] > 0)
    # canonical i' = 11 - i; the stretch becomes +0.1 voxel per voxel along i'
    assert np.allclose(field.array[..., 0], 0.1 * (np.arange(12)[:, None, None] - 5))
    assert np.allclose(field.array[..., 1:], 0.0)
    det = jacobian_determinant(field.array)
    assert det.shape == shape and np.allclose(det[1:-1], 1.1, atol=1e-5)
    assert np.allclose(det[[0, -1]], 1.05, atol=1e-5)  # ITK takes half differences at the border


def test_jacobian_matches_finite_differences_on_a_smooth_field() -> None:
    rng = np.random.default_rng(3)
    grid = np.meshgrid(*[np.linspace(0, np.pi, n) for n in (14, 12, 10)], indexing="ij")
    field = np.stack([0.6 * rng.uniform() * np.sin(g) for g in grid[::-1]], axis=-1).astype(np.float32)
    grads = np.stack([np.stack(np.gradient(field[..., c]), axis=-1) for c in range(3)], axis=-2)  # (..., comp, deriv)
    expected = np.linalg.det(np.eye(3) + grads)
    det = jacobian_determinant(field)
    assert np.allclose(det[1:-1, 1:-1, 1:-1], expected[1:-1, 1:-1, 1:-1], atol=1e-4)


def test_folding_percent_counts_non_positive_determinants() -> None:
    i = np.arange(10, dtype=np.float32)[:, None, None] * np.ones((10, 4, 4), np.float32)
    field = np.zeros((10, 4, 4, 3), np.float32)
    field[..., 0] = np.where(i < 5, -2.0 * i, -2.0 * 4 + 0 * i)  # first half folds (det = -1), second half det 1
    det = jacobian_determinant(field)
    assert np.allclose(det[1:4], -1.0) and np.allclose(det[6:9], 1.0)
    assert folding_percent(det) == pytest.approx(100.0 * np.mean(det <= 0))
    assert 40.0 <= folding_percent(det) <= 60.0
    assert folding_percent(np.array([1.0, 0.0, -0.5, 2.0])) == 50.0


def test_jacobian_colours_are_centred_on_one_and_flag_folds() -> None:
    rgb = jacobian_rgb(np.array([[1.0, 0.5, 1.5, -0.2]]), spread=0.5)
    white, blue, red, fold = (tuple(int(c) for c in px) for px in rgb[0])
    assert min(white) > 240  # det = 1: near white
    assert blue[2] > blue[0] + 50 and red[0] > red[2] + 50
    assert fold == FOLDING_COLOUR


def test_deformed_grid_draws_lines_moved_by_the_displacement() -> None:
    still = deformed_grid(np.zeros((9, 9, 2), np.float32), spacing=4)
    assert np.flatnonzero(still.all(axis=1)).tolist() == [0, 4, 8]
    assert np.flatnonzero(still.all(axis=0)).tolist() == [0, 4, 8]
    assert still.sum() == 9 * 3 * 2 - 9
    down = np.zeros((9, 9, 2), np.float32)
    down[..., 0] = 1.0
    moved = deformed_grid(down, spacing=4)
    assert np.flatnonzero(moved.all(axis=1)).tolist() == [1, 5]  # the row at 8 left the image


def test_plane_displacement_follows_screen_orientation() -> None:
    field = np.zeros((4, 5, 6, 3), np.float32)
    field[..., 0] = 1.0  # one voxel toward patient right (+x in RAS)
    field[..., 1] = 2.0  # anterior
    axial = plane_displacement(field, "axial", 2)
    assert axial.shape == (5, 4, 2)
    assert np.all(axial[..., 0] == -2.0)  # anterior is up on screen
    assert np.all(axial[..., 1] == -1.0)  # patient right is screen left
