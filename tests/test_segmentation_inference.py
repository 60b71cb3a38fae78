"""Mirroring TTA, ensembles, saved probabilities, uncertainty and QC, cardiac function, folds and the
nnU-Net augmentation: small phantoms, untrained or hand-made models, no shared data."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from medsuite.checkpoints import save_checkpoint
from medsuite.data.cards import load_card
from medsuite.io import write_nifti
from medsuite.segmentation import cardiac
from medsuite.segmentation.config import SegmentationConfig
from medsuite.segmentation.data import fold_patients, slice_transform
from medsuite.segmentation.infer import segment_batch
from medsuite.segmentation.models import make_model
from medsuite.segmentation.predict import mirror_axes, predict_ensemble
from medsuite.segmentation.synthetic import synthetic_short_axis
from medsuite.segmentation.uncertainty import choose_threshold

torch.set_num_threads(1)


class Pointwise(nn.Module):
    """Class scores from each pixel's own intensity: a model that commutes with every flip, so mirroring TTA
    must give back exactly its plain prediction, on any image, if the flips are undone correctly."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[[[-8.0]]], [[[2.0]]], [[[6.0]]], [[[10.0]]]]))
            self.conv.bias.copy_(torch.tensor([4.0, 1.0, -1.0, -4.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def config(inplane: str = "native", flips: bool = True) -> SegmentationConfig:
    return SegmentationConfig.model_validate({"data": {"inplane": inplane, "image_size": [32, 32]}, "train": {"flips": flips}})


def symmetric_phantom() -> torch.Tensor:
    """Concentric rings centred on the grid: unchanged by either in-plane flip."""
    i, j = np.meshgrid(np.arange(40) - 19.5, np.arange(36) - 17.5, indexing="ij")
    radius = np.hypot(i, j)
    image = np.where(radius < 6, 1.0, np.where(radius < 9, 0.5, np.where(radius < 14, 0.25, 0.0)))
    return torch.as_tensor(np.repeat(image[..., None], 4, axis=2), dtype=torch.float32)


@pytest.mark.parametrize("inplane", ["native", "resize"])
def test_tta_changes_nothing_a_flip_commuting_model_should_not_change(inplane):
    model = Pointwise()
    symmetric = symmetric_phantom()
    assert torch.equal(symmetric, symmetric.flip(0)) and torch.equal(symmetric, symmetric.flip(1))
    asymmetric = torch.as_tensor(synthetic_short_axis(shape=(40, 36, 4))[0].array, dtype=torch.float32)
    asymmetric = (asymmetric - asymmetric.min()) / (asymmetric.max() - asymmetric.min())
    for image in (symmetric, asymmetric):  # the asymmetric one shows every flip is undone on the right axis
        plain = predict_ensemble([(model, config(inplane))], image, tta=False)
        mirrored = predict_ensemble([(model, config(inplane))], image, tta=True)
        assert len(mirrored.member_labels) == 4
        torch.testing.assert_close(mirrored.probabilities, plain.probabilities, atol=1e-5, rtol=0)
        assert torch.equal(mirrored.labels, plain.labels)
    unmirrored = predict_ensemble([(model, config(inplane, flips=False))], asymmetric, tta=True)
    assert len(unmirrored.member_labels) == 1  # a model never trained on mirrored hearts is not shown any


def test_mirrors_are_in_plane_only():
    assert mirror_axes(2, tta=True) == [(), (0,), (1,), (0, 1)]
    assert mirror_axes(0, tta=True) == [(), (1,), (2,), (1, 2)]  # the stack (base to apex) is never flipped
    assert mirror_axes(2, tta=False) == [()]


def test_an_ensemble_of_one_model_twice_is_that_model():
    torch.manual_seed(0)
    cfg = SegmentationConfig.model_validate({"data": {"image_size": [32, 32]}, "backbone": {"kind": "cnn", "spatial_dims": 2, "channels": [4, 8], "strides": [2, 2]}})
    model = make_model(cfg).eval()
    image = symmetric_phantom()
    one = predict_ensemble([(model, cfg)], image, tta=False)
    two = predict_ensemble([(model, cfg), (model, cfg)], image, tta=False)
    torch.testing.assert_close(two.probabilities, one.probabilities, atol=1e-6, rtol=0)
    assert torch.equal(two.labels, one.labels)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    cfg = SegmentationConfig.model_validate(
        {"data": {"image_size": [32, 32]}, "backbone": {"kind": "cnn", "spatial_dims": 2, "channels": [4, 8, 16], "strides": [2, 2, 2]}, "train": {"flips": True}}
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    return save_checkpoint(path, kind="segmentation", state=make_model(cfg).state_dict(), config=cfg.model_dump(mode="json"), card="acdc_h5")


def test_probabilities_sum_to_one_and_carry_the_input_geometry(tmp_path, tiny_checkpoint):
    vol, _ = synthetic_short_axis(shape=(40, 36, 5))
    path = write_nifti(tmp_path / "in" / "sax.nii.gz", vol.array, vol.affine)
    assert segment_batch([path], tmp_path / "out", checkpoint=[tiny_checkpoint, tiny_checkpoint], save_probabilities=True, quiet=True) == 0
    target = tmp_path / "out" / "sax_probabilities.nii.gz"
    image, source = sitk.ReadImage(str(target)), sitk.ReadImage(str(path))  # read back by another library than the writer
    probabilities = sitk.GetArrayFromImage(image)  # SimpleITK: a vector image (z, y, x, class)
    assert image.GetNumberOfComponentsPerPixel() == 4 and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), source.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), source.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(image.GetDirection(), source.GetDirection(), atol=1e-5)
    mask = np.asarray(nib.load(str(tmp_path / "out" / "sax_seg.nii.gz")).dataobj)
    assert mask.shape == probabilities.shape[:3][::-1]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    case = report["cases"]["sax"]
    assert case["probabilities"] == target.name and case["uncertainty"]["members"] == 8  # 2 models x 4 mirrors
    assert 0.0 <= case["uncertainty"]["entropy"] <= 1.0 and 0.0 <= case["uncertainty"]["disagreement"] <= 1.0
    assert report["qc"]["threshold"] >= 0 and isinstance(case["uncertainty"]["qc_flag"], bool)


def cylinder_mask(shape, radius_lv: float, radius_myo: float, rv_box: int) -> np.ndarray:
    i, j = np.meshgrid(np.arange(shape[0]) - shape[0] / 2, np.arange(shape[1]) - shape[1] / 2, indexing="ij")
    r = np.hypot(i, j)
    plane = np.zeros(shape[:2], np.uint8)
    plane[r < radius_myo] = 2
    plane[r < radius_lv] = 3
    plane[:rv_box, :rv_box] = 1
    return np.repeat(plane[..., None], shape[2], axis=2)


def test_cardiac_function_of_phantoms_of_known_size():
    spacing = (1.25, 1.25, 8.0)  # 12.5 ul voxels
    voxel_ml = float(np.prod(spacing)) / 1000
    names = {1: "rv_cavity", 2: "myocardium", 3: "lv_cavity"}
    ed, es = cylinder_mask((64, 64, 10), 12, 16, 10), cylinder_mask((64, 64, 10), 7, 13, 6)
    ed_ml = {n: float((ed == v).sum()) * voxel_ml for v, n in names.items()}
    es_ml = {n: float((es == v).sum()) * voxel_ml for v, n in names.items()}
    indices = cardiac.cardiac_indices(ed_ml, es_ml)
    assert indices["RVEDV"] == pytest.approx(100 * 10 * voxel_ml) and indices["RVESV"] == pytest.approx(36 * 10 * voxel_ml)
    assert indices["RVEF"] == pytest.approx(64.0) and indices["RVSV"] == pytest.approx(64 * 10 * voxel_ml)
    lv_ed, lv_es = (ed == 3).sum() * voxel_ml, (es == 3).sum() * voxel_ml
    assert indices["LVEDV"] == pytest.approx(lv_ed, abs=1e-3) and indices["LVEF"] == pytest.approx(100 * (lv_ed - lv_es) / lv_ed, abs=1e-3)
    assert indices["LV_mass"] == pytest.approx(1.05 * (ed == 2).sum() * voxel_ml, abs=1e-3)
    assert lv_ed == pytest.approx(np.pi * 12**2 * 10 * voxel_ml, rel=0.05)  # the disc's area, pixelated


def test_segment_pairs_ed_and_es_frames_and_writes_cardiac_function(tmp_path, tiny_checkpoint):
    affine = np.diag([1.5, 1.5, 9.0, 1.0])
    folder = tmp_path / "patient001"
    for frame in (1, 12):
        vol, _ = synthetic_short_axis(shape=(40, 36, 5), seed=frame, affine=affine)
        write_nifti(folder / f"patient001_frame{frame:02d}.nii.gz", vol.array, vol.affine)
    (folder / "Info.cfg").write_text("ED: 12\nES: 1\nGroup: NOR\n")  # Info.cfg wins over the frame order
    for name in ("scan_ed", "scan_es"):
        vol, _ = synthetic_short_axis(shape=(40, 36, 5), seed=len(name), affine=affine)
        write_nifti(tmp_path / "other" / f"{name}.nii.gz", vol.array, vol.affine)
    out = tmp_path / "out"
    assert segment_batch([folder, tmp_path / "other"], out, checkpoint=tiny_checkpoint, tta=False, quiet=True) == 0
    report = json.loads((out / "report.json").read_text())
    function = report["cardiac_function"]["patients"]
    assert set(function) == {"patient001", "scan"}
    assert (function["patient001"]["ed"], function["patient001"]["es"], function["patient001"]["pairing"]) == ("patient001_frame12", "patient001_frame01", "Info.cfg")
    ed = report["cases"]["patient001_frame12"]["label_volumes_ml"]
    assert function["patient001"]["indices"]["LVEDV"] == pytest.approx(ed["lv_cavity"], abs=1e-3)
    with open(out / "cardiac_function.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["patient"] for r in rows] == ["patient001", "scan"] and "LVEF_%" in rows[0] and "LV_mass_g" in rows[0]
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("patient,ed,es\nP1,patient001_frame01.nii.gz,patient001_frame12\n")
    assert segment_batch([folder], tmp_path / "out2", checkpoint=tiny_checkpoint, tta=False, pairs=pairs, quiet=True) == 0
    pairing = json.loads((tmp_path / "out2" / "report.json").read_text())["cardiac_function"]["patients"]
    assert pairing["P1"]["ed"] == "patient001_frame01" and pairing["P1"]["pairing"] == "--pairs"


def test_pairing_rules_without_info_cfg():
    pairs = cardiac.pair_phases({"patient007_frame01": None, "patient007_frame09": None, "patient008_frame01": None, "a_ED": None, "a_ES": None})
    assert pairs["patient007"]["ed"] == "patient007_frame01" and pairs["patient007"]["es"] == "patient007_frame09"
    assert "patient008" not in pairs and pairs["a"] == {"ed": "a_ED", "es": "a_ES", "source": "_ed/_es names"}


def test_agreement_figures():
    a = cardiac.agreement([52.0, 60.0, 71.0], [50.0, 61.0, 70.0])
    assert a["mae"] == pytest.approx(4 / 3) and a["bias"] == pytest.approx(2 / 3)
    sd = np.std([2.0, -1.0, 1.0], ddof=1)
    assert a["loa_high"] == pytest.approx(2 / 3 + 1.96 * sd) and 0.9 < a["correlation"] <= 1.0


def test_qc_threshold_separates_poor_volumes_on_validation():
    chosen = choose_threshold([0.05, 0.06, 0.07, 0.20, 0.30], [0.90, 0.91, 0.88, 0.70, 0.60])
    assert chosen["threshold"] == pytest.approx(0.07) and chosen["youden_j"] == pytest.approx(1.0)
    assert choose_threshold([0.05, 0.08], [0.9, 0.92])["threshold"] == pytest.approx(0.08)  # nothing poor: the largest


def test_folds_are_patient_level_disjoint_and_leave_val_and_test_alone():
    card = load_card("acdc_h5")
    records = [{"patient": f"{p:03d}", "case": f"patient{p:03d}_frame{f:02d}"} for p in range(1, 81) for f in (1, 12)]
    folds = [fold_patients(card, records, 5, k) for k in range(5)]
    vals = [set(f["val"]) for f in folds]
    union = set().union(*vals)
    assert sum(len(v) for v in vals) == len(union) == 56  # every train patient validates exactly once
    assert all(not (set(f["train"]) & set(f["val"])) and len(f["train"]) + len(f["val"]) == 56 for f in folds)
    from medsuite.data.datasets import split_records

    held_out = {r["patient"] for name in ("val", "test") for r in split_records(card, records)[name]}
    assert not union & held_out


@pytest.mark.parametrize("inplane", ["native", "resize"])
def test_nnunet_augmentation_keeps_image_and_label_aligned(inplane):
    cfg = SegmentationConfig.model_validate({"data": {"inplane": inplane, "image_size": [32, 32]}, "train": {"augmentation": "nnunet", "flips": True}})
    transform = slice_transform(cfg, train=True)
    transform.set_random_state(seed=0)
    label = np.zeros((1, 80, 70), np.int64)
    label[0, 30:50, 20:45] = 3
    changed = 0
    for _ in range(12):
        out = transform({"image": torch.as_tensor(label / 3.0, dtype=torch.float32), "label": torch.as_tensor(label)})
        image, lab = np.asarray(out["image"]), np.asarray(out["label"])
        assert image.shape == lab.shape == (1, 32, 32) and np.isfinite(image).all()
        assert set(np.unique(lab)) <= {0, 3}
        if (lab == 3).sum() > 20:  # intensity changes blur the edge; the bulk of the structure stays put
            changed += 1
            assert image[lab == 3].mean() > image[lab == 0].mean()
    assert changed >= 3
