"""The data layer's array primitives: one intensity rule per modality, one anti-aliased resize, one HDF5 reader."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import ScaleIntensityRangePercentilesd

from medsuite.data.intensity import IntensityRule, normalise_intensity, rule_for_modality
from medsuite.data.transforms import intensity_transform, read_h5_volume, resize
from medsuite.errors import MedsuiteError


def test_mr_rule_is_monais_percentile_scaling_bit_for_bit():
    volume = MetaTensor(torch.as_tensor(np.random.default_rng(0).gamma(2.0, 50.0, size=(1, 20, 24, 6)).astype(np.float32)))
    volume[0, 0, 0, 0] = 5000.0  # an outlier the percentiles must ignore
    ours = intensity_transform("MR")({"image": volume})["image"]
    monai = ScaleIntensityRangePercentilesd("image", lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)({"image": volume})["image"]
    assert torch.equal(ours.as_tensor(), monai.as_tensor())
    assert float(ours.min()) == 0.0 and float(ours.max()) == 1.0


def test_numpy_and_torch_give_the_same_numbers():
    array = np.random.default_rng(1).normal(100, 30, size=(8, 9, 10)).astype(np.float32)
    rule = rule_for_modality("MR")
    np.testing.assert_allclose(normalise_intensity(array, rule), normalise_intensity(torch.from_numpy(array), rule).numpy(), atol=1e-6)


def test_nonzero_percentiles_and_overshoot_clip_in_numpys_arithmetic():
    """A skull-stripped brain (registration's rule): the zero background must not pull the low percentile
    down; numpy input is scaled in float64 exactly as the numpy formula does."""
    array = np.zeros((10, 10, 10), np.float32)
    array[2:8, 2:8, 2:8] = np.random.default_rng(2).gamma(2.0, 80.0, size=(6, 6, 6)) + 100
    array[4, 4, 4] = 5000.0  # far above the 99.5th percentile: clipped at 1.5, not at 1
    rule = IntensityRule(kind="percentile", lower=1.0, upper=99.5, nonzero=True, clip=(0.0, 1.5))
    low, high = np.percentile(array[array != 0], [1.0, 99.5])
    np.testing.assert_array_equal(normalise_intensity(array, rule), np.clip((array - low) / (high - low), 0.0, 1.5).astype(np.float32))
    assert normalise_intensity(array, rule)[0, 0, 0] == 0.0 and normalise_intensity(array, rule).max() == 1.5


def test_ct_window_minmax_none_and_constant_images():
    hu = np.array([-2000.0, -1000.0, 0.0, 1000.0, 3000.0], np.float32)
    np.testing.assert_allclose(normalise_intensity(hu, rule_for_modality("CT")), [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(normalise_intensity(np.array([2.0, 4.0, 6.0]), rule_for_modality("US")), [0, 0.5, 1])
    kept = np.array([0.2, 0.7], np.float32)
    np.testing.assert_array_equal(normalise_intensity(kept, IntensityRule(kind="none")), kept)
    assert not normalise_intensity(np.full((3, 3), 7.0), rule_for_modality("MR")).any()


def test_rule_forbids_unknown_keys():
    with pytest.raises(ValueError, match="percentil"):
        IntensityRule.model_validate({"kind": "percentile", "percentil": 1})


def test_resize_antialiases_keeps_type_and_nearest_keeps_labels():
    stripes = np.tile(np.array([0.0, 1.0], np.float32), (64, 32))  # 1-pixel stripes alias without a low-pass filter
    small = resize(stripes, (16, 16))
    assert isinstance(small, np.ndarray) and small.shape == (16, 16)
    assert np.allclose(small, 0.5, atol=0.05)
    labels = torch.randint(0, 4, (2, 1, 32, 32))
    out = resize(labels, (16, 16), labels=True)
    assert out.dtype == labels.dtype and set(out.unique().tolist()) <= {0, 1, 2, 3}
    same = torch.rand(3, 8, 8)
    assert resize(same, (8, 8)) is same


def test_h5_reader_reverses_the_simpleitk_axes(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # stored (z, y, x)
    with h5py.File(tmp_path / "case.h5", "w") as handle:
        handle["image"] = array
        handle["flat"] = np.zeros((3, 4))
    volume = read_h5_volume(str(tmp_path / "case.h5"), "image")
    assert volume.shape == (4, 3, 2) and volume[3, 2, 1] == array[1, 2, 3]
    with pytest.raises(MedsuiteError, match="not 3D"):
        read_h5_volume(str(tmp_path / "case.h5"), "flat")
    with pytest.raises(MedsuiteError, match="cannot read"):
        read_h5_volume(str(tmp_path / "case.h5"), "label")


def test_large_tensors_take_monais_numpy_percentile():
    """Above a million values MONAI's percentile hands tensors to numpy (torch.quantile's size limit); the
    MONAI-free rule must follow it there too, bit for bit."""
    volume = MetaTensor(torch.as_tensor(np.random.default_rng(3).gamma(2.0, 50.0, size=(1, 104, 104, 100)).astype(np.float32)))
    ours = intensity_transform("MR")({"image": volume})["image"]
    monai = ScaleIntensityRangePercentilesd("image", lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)({"image": volume})["image"]
    assert torch.equal(ours.as_tensor(), monai.as_tensor())
