"""``medsuite segment``: geometry kept exactly, --continue, failing cases, determinism, exit codes, metrics."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medsuite.checkpoints import save_checkpoint
from medsuite.cli import main
from medsuite.io import write_nifti
from medsuite.segmentation.config import SegmentationConfig
from medsuite.segmentation.metrics import volume_metrics
from medsuite.segmentation.infer import segment_batch, stack_axis
from medsuite.segmentation.models import make_model
from medsuite.segmentation.synthetic import synthetic_short_axis

from .conftest import shared_path

torch.set_num_threads(1)


@pytest.fixture
def phantom_file(tmp_path):
    vol, _ = synthetic_short_axis(shape=(40, 36, 5))
    return write_nifti(tmp_path / "in" / "sax.nii.gz", vol.array, vol.affine), vol


def test_mask_keeps_oblique_affine_and_shape_exactly(tmp_path, tiny_checkpoint, phantom_file):
    path, vol = phantom_file
    assert segment_batch([path], tmp_path / "out", checkpoint=tiny_checkpoint, quiet=True) == 0
    mask = nib.load(str(tmp_path / "out" / "sax_seg.nii.gz"))
    source = nib.load(str(path))  # the affine as the input file stores it (float32 sform)
    assert mask.shape == vol.array.shape
    assert not np.allclose(source.affine[:3, :3], np.diag(np.diag(source.affine[:3, :3])))  # truly oblique
    np.testing.assert_array_equal(mask.affine, source.affine)
    np.testing.assert_array_equal(mask.get_sform(), source.get_sform())
    np.testing.assert_allclose(mask.get_qform(), source.get_qform(), atol=1e-5)  # quaternion-coded: float32 exact only to ~1e-7
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2, 3}
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    case = report["cases"]["sax"]
    assert report["kind"] == "segment" and report["labels"] == {"1": "rv_cavity", "2": "myocardium", "3": "lv_cavity"}  # the card's label_map
    # a CNN's multiply-accumulates do not depend on the input: the real-slice estimate equals a blank one's
    from medsuite.backbones.energy import estimate_energy
    from medsuite.segmentation.infer import Segmenter

    blank = estimate_energy(Segmenter(tiny_checkpoint).model, torch.zeros(1, 1, 32, 32))
    assert report["energy"]["macs"] == blank["macs"] > 0 and report["energy"]["energy_mj"] > 0
    assert set(report["energy"]["energy_mj_by_convention"]) == set(report["energy"]["conventions"]) == {"45nm", "darwinwafer", "45nm+memory"}
    assert "estimate, not a measurement" in report["energy"]["note"]
    assert case["status"] == "done" and len(case["sha256"]) == 64
    counts = np.bincount(np.asarray(mask.dataobj).ravel(), minlength=4)
    assert case["label_volumes_ml"]["lv_cavity"] == pytest.approx(counts[3] * vol.voxel_volume_ml, abs=1e-3)


def test_real_mnms2_oblique_stack_keeps_its_affine(tmp_path, tiny_checkpoint):
    sax = shared_path("cardiac_multiview", "cinema_examples", "mnms2", "sax_ed.nii.gz")
    assert segment_batch([sax], tmp_path, checkpoint=tiny_checkpoint, quiet=True) == 0
    source, mask = nib.load(str(sax)), nib.load(str(tmp_path / "sax_ed_seg.nii.gz"))
    assert mask.shape == source.shape[:3]
    np.testing.assert_array_equal(mask.affine, source.affine)


def test_continue_skips_done_cases(tmp_path, tiny_checkpoint, phantom_file):
    path, _ = phantom_file
    out = tmp_path / "out"
    segment_batch([path], out, checkpoint=tiny_checkpoint, quiet=True)
    stamp = (out / "sax_seg.nii.gz").stat().st_mtime_ns
    assert segment_batch([path], out, checkpoint=tiny_checkpoint, resume=True, quiet=True) == 0
    assert (out / "sax_seg.nii.gz").stat().st_mtime_ns == stamp
    assert json.loads((out / "report.json").read_text())["cases"]["sax"]["status"] == "skipped (done)"


def test_bad_cases_fail_alone_with_clear_lines(tmp_path, tiny_checkpoint, phantom_file):
    path, vol = phantom_file
    folder = path.parent
    (folder / "broken.nii.gz").write_bytes(b"not a nifti at all")
    write_nifti(folder / "cine.nii.gz", np.repeat(vol.array[..., None], 3, axis=3), vol.affine)
    nan = vol.array.copy()
    nan[0, 0, 0] = np.nan
    write_nifti(folder / "nan.nii.gz", nan, vol.affine)
    out = tmp_path / "out"
    assert segment_batch([folder], out, checkpoint=tiny_checkpoint, quiet=True) == 1
    assert (out / "sax_seg.nii.gz").exists() and not (out / "broken_seg.nii.gz").exists()
    errors = (out / "errors.tsv").read_text().splitlines()
    assert errors[0] == "case\tinput\terror" and len(errors) == 4
    text = "\n".join(errors)
    assert "cannot read as NIfTI" in text and "--frame" in text and "NaN" in text
    assert segment_batch([folder / "cine.nii.gz"], tmp_path / "f", checkpoint=tiny_checkpoint, frame=1, quiet=True) == 0


def test_two_runs_give_identical_bytes(tmp_path, tiny_checkpoint, phantom_file):
    path, _ = phantom_file
    for run in ("a", "b"):
        segment_batch([path], tmp_path / run, checkpoint=tiny_checkpoint, quiet=True)
    assert (tmp_path / "a" / "sax_seg.nii.gz").read_bytes() == (tmp_path / "b" / "sax_seg.nii.gz").read_bytes()


def _cli(*args) -> int:
    with pytest.raises(SystemExit) as stop:
        main(["segment", *map(str, args)])
    return stop.value.code


def test_cli_exit_codes(tmp_path, tiny_checkpoint, phantom_file, capsys):
    path, _ = phantom_file
    (path.parent / "broken.nii.gz").write_bytes(b"junk")
    assert _cli(path.parent, "-o", tmp_path / "out", "--model", tiny_checkpoint, "--quiet") == 1
    assert (tmp_path / "out" / "sax_seg.nii.gz").exists()
    assert _cli(tmp_path / "missing.nii.gz", "-o", tmp_path / "out2", "--model", tiny_checkpoint) == 2
    assert "no such file" in capsys.readouterr().err


def test_stack_axis_is_the_thick_one():
    vol, _ = synthetic_short_axis(shape=(20, 18, 4))
    assert stack_axis(vol) == 2
    assert stack_axis(vol.with_array(vol.array)) == 2


def test_dice_and_hd95_on_known_masks():
    label = torch.zeros(10, 10, 3, dtype=torch.long)
    label[2:6, 2:6] = 3  # 16 voxels per slice
    pred = label.clone()
    pred[2:6, 5] = 0  # one column of 4 missing per slice: Dice = 2*12/(12+16)
    metrics = volume_metrics(pred, label, spacing=(1.0, 1.0, 1.0), labels={1: "RV", 2: "Myo", 3: "LV"})
    assert metrics["LV"]["dice"] == pytest.approx(24 / 28, abs=1e-6)
    assert metrics["LV"]["hd95"] == pytest.approx(1.0, abs=1e-6)
    assert np.isnan(metrics["RV"]["dice"]) and np.isnan(metrics["RV"]["hd95"])


def test_dicom_series_folder_gets_its_geometry(tmp_path, tiny_checkpoint):
    from pydicom.data import get_testdata_file

    from medsuite.io import read_image

    series = get_testdata_file("CT5N", download=False)  # a 5-slice series inside pydicom's wheel
    if series is None:
        pytest.skip("pydicom test series not installed")
    assert segment_batch([series], tmp_path, checkpoint=tiny_checkpoint, quiet=True) == 0
    mask, source = nib.load(str(tmp_path / "CT5N_seg.nii.gz")), read_image(series)
    assert mask.shape == source.array.shape
    np.testing.assert_allclose(mask.affine, source.affine, atol=1e-5)  # the float32 NIfTI header of a float64 DICOM geometry


def test_demo_part_segments_the_generated_volume(tmp_path):
    from rich.console import Console

    from medsuite.commands.segment import run_demo

    run_demo(tmp_path, Console(quiet=True))
    report = json.loads((tmp_path / "segmentation" / "report.json").read_text())
    assert report["kind"] == "segment" and report["cases"]["synthetic_sax"]["status"] == "done"
    phantom = json.loads((tmp_path / "segmentation" / "phantom_metrics.json").read_text())
    assert phantom["lv_cavity"]["dice"] > 0.7  # the shipped ACDC model finds the phantom's LV (0.93 measured)
    mask = nib.load(str(tmp_path / "segmentation" / "synthetic_sax_seg.nii.gz"))
    source = nib.load(str(tmp_path / "segmentation" / "inputs" / "synthetic_sax.nii.gz"))
    np.testing.assert_array_equal(mask.affine, source.affine)
    assert mask.shape == source.shape


def test_masks_written_into_the_input_folder_are_not_new_cases(tmp_path, tiny_checkpoint, phantom_file):
    path, _ = phantom_file
    for _ in range(2):
        assert segment_batch([path.parent], path.parent, checkpoint=tiny_checkpoint, quiet=True) == 0
    assert list(json.loads((path.parent / "report.json").read_text())["cases"]) == ["sax"]
    assert not (path.parent / "sax_seg_seg.nii.gz").exists()


def test_a_3d_model_segments_in_the_input_geometry_and_reports_energy(tmp_path):
    config = SegmentationConfig.model_validate(
        {"model": {"spatial_dims": 3, "roi_size": [32, 32, 8]}, "backbone": {"kind": "cnn", "spatial_dims": 3, "channels": [4, 8], "strides": [[1, 2, 2], [1, 2, 2]]}}
    )
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "m3d.pt", kind="segmentation", state=make_model(config).state_dict(), config=config.model_dump(mode="json"), card="acdc_h5")
    vol, _ = synthetic_short_axis(shape=(40, 36, 5))
    path = write_nifti(tmp_path / "in" / "sax.nii.gz", vol.array, vol.affine)
    assert segment_batch([path], tmp_path / "out", checkpoint=checkpoint, quiet=True) == 0
    mask = nib.load(str(tmp_path / "out" / "sax_seg.nii.gz"))
    assert mask.shape == vol.array.shape and np.array_equal(mask.affine, nib.load(str(path)).affine)
    assert json.loads((tmp_path / "out" / "report.json").read_text())["energy"]["macs"] > 0
