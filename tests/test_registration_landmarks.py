"""Landmarks on generated pairs (TRE against the known field) and BraTS-Reg landmark CSVs through the data card."""

from __future__ import annotations

import numpy as np
import pytest

from medsuite.data.cards import load_card
from medsuite.data.samples import make_pathological_pair
from medsuite.errors import MedsuiteError
from medsuite.io import Volume, write_nifti
from medsuite.registration.landmarks import brats_reg_cases, pair_landmarks, read_brats_reg_landmarks, target_registration_error


@pytest.fixture(scope="module")
def pair():
    return make_pathological_pair(5, 4.0)


def test_pair_landmarks_are_anatomical_deterministic_and_moved_by_the_known_field(pair):
    first, again = pair_landmarks(pair), pair_landmarks(pair)
    np.testing.assert_array_equal(first.fixed_index, again.fixed_index)
    at = tuple(first.fixed_index.T)
    assert np.all(pair.fixed_labels.array[at] > 0) and not np.any(pair.lesion_fixed.array[at])
    assert 0 < first.near_lesion.sum() < len(first.near_lesion)
    assert len(np.unique(first.fixed_index, axis=0)) == len(first.fixed_index)
    # the moving positions are the fixed ones plus the known displacement: the exact answer scores 0 mm
    exact = first.fixed_ras + pair.displacement.array[at]
    assert target_registration_error(exact, first.moving_ras).max() < 1e-6
    # and the moving image shows the fixed anatomy there (the pair's moving labels agree at most landmarks)
    moving_index = np.rint((first.moving_ras - pair.moving.affine[:3, 3]) @ np.linalg.inv(pair.moving.affine[:3, :3]).T).astype(int)
    inside = np.all((moving_index >= 0) & (moving_index < pair.moving.spatial_shape), axis=1)
    agree = pair.moving_labels.array[tuple(moving_index[inside].T)] == pair.fixed_labels.array[at][inside]
    assert agree.mean() > 0.8


def _brats_case(root, case: str, affine: np.ndarray, rows: dict[str, str]) -> None:
    folder = root / case
    image = np.random.default_rng(0).random((12, 16, 8)).astype(np.float32)
    for timepoint in ("00", "01"):
        write_nifti(folder / f"{case}_{timepoint}_0000_t1ce.nii.gz", image, affine)
        (folder / f"{case}_{timepoint}_0000_landmarks.csv").write_text(rows[timepoint])


def test_brats_reg_landmarks_through_the_card(tmp_path):
    # BraTS-Reg's header: RAS diag(-1, -1, 1), so LPS = (i, j - (ny - 1), k), the CSV's own numbers
    brats = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 15.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    rows = {"00": "Landmark,X,Y,Z\n2,3,-4,5\n1,1,-15,0\n", "01": "Landmark,X,Y,Z\n1,2,-14,1\n2,3,-3,5\n"}
    _brats_case(tmp_path, "BraTSReg_001", brats, rows)
    cases = brats_reg_cases(load_card("brats_reg"), root=tmp_path)
    assert [c.id for c in cases] == ["BraTSReg_001"] and cases[0].baseline.name.startswith("BraTSReg_001_00")
    image = Volume(np.zeros((12, 16, 8), np.float32), brats)
    baseline = read_brats_reg_landmarks(cases[0].baseline_landmarks, image)
    np.testing.assert_allclose(baseline, [[1, -15, 0], [3, -4, 5]])  # sorted by landmark number
    followup = read_brats_reg_landmarks(cases[0].followup_landmarks, image)
    np.testing.assert_allclose(target_registration_error(followup, baseline), [np.sqrt(3), 1.0])
    # another header: the CSV's numbers are voxel positions, so the world point follows the affine
    spaced = np.diag([2.0, 2.0, 3.0, 1.0])
    point = read_brats_reg_landmarks(cases[0].baseline_landmarks, Volume(np.zeros((12, 16, 8)), spaced))[0]
    np.testing.assert_allclose(point, [-2.0, -0.0, 0.0])  # index (1, 0, 0) -> RAS (2, 0, 0) -> LPS (-2, 0, 0)


def test_brats_reg_bad_layout_is_one_clear_error(tmp_path):
    card = load_card("brats_reg")
    with pytest.raises(MedsuiteError, match="holds no BraTS-Reg case folders"):
        brats_reg_cases(card, root=tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("id,x,y,z\n1,2,3,4\n")
    with pytest.raises(MedsuiteError, match="not a BraTS-Reg landmark CSV"):
        read_brats_reg_landmarks(bad, Volume(np.zeros((4, 4, 4)), np.eye(4)))
