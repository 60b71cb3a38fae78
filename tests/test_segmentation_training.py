"""Training on two ACDC volumes (skips without ../shared/data): resumable checkpoints with config and
card id, then ``evaluate segmentation`` writes metrics.json; every pipeline YAML validates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medsuite.checkpoints import load_checkpoint
from medsuite.config import PIPELINES_DIR, load_pipeline
from medsuite.segmentation.config import SegmentationConfig
from medsuite.segmentation.evaluate import evaluate_checkpoint
from medsuite.segmentation.train import train

from .conftest import shared_path

torch.set_num_threads(1)


@pytest.mark.parametrize("path", sorted(PIPELINES_DIR.glob("segmentation_*.yaml")), ids=lambda p: p.name)
def test_pipeline_yaml_validates(path):
    config = load_pipeline(path, SegmentationConfig)
    assert config.backbone.kind == ("snn" if "spiking" in path.name else "cnn") and config.data.card


def test_train_resume_and_evaluate(tmp_path):
    shared_path("acdc_h5")
    config = SegmentationConfig.model_validate(
        {
            "data": {"card": "acdc_h5", "image_size": [32, 32], "limit": 1},
            "backbone": {"kind": "cnn", "spatial_dims": 2, "channels": [4, 8, 16], "strides": [2, 2, 2]},
            "train": {"epochs": 2, "batch_size": 8, "augment": False},
        }
    )
    first = train(config, tmp_path / "run", max_epochs=1, quiet=True)
    assert first["epochs"] == 1
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt", kind="segmentation")
    assert ckpt["card"] == "acdc_h5" and ckpt["config"]["model"]["name"] == "neunet" and ckpt["epoch"] == 1
    resumed = train(config, tmp_path / "run", quiet=True)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    metrics, target = evaluate_checkpoint([tmp_path / "run"], split="val", output=tmp_path / "eval")
    saved = json.loads(target.read_text())
    assert target.name == "metrics.json" and saved["mean_dice"] == pytest.approx(metrics["mean_dice"])
    assert set(saved["per_class"]) == {"rv_cavity", "myocardium", "lv_cavity"} and 0.0 <= saved["mean_dice"] <= 1.0


def _phantom_acdc(root):
    """ACDC's NIfTI layout (patientNNN/patientNNN_frameFF.nii.gz + _gt), five phantom patients."""
    from medsuite.io import write_nifti
    from medsuite.segmentation.synthetic import synthetic_short_axis

    for p in range(1, 6):
        vol, labels = synthetic_short_axis(shape=(40, 36, 4), seed=p, affine=np.diag([1.5, 1.5, 10.0, 1.0]))
        folder = root / f"patient{p:03d}"
        write_nifti(folder / f"patient{p:03d}_frame01.nii.gz", vol.array, vol.affine)
        write_nifti(folder / f"patient{p:03d}_frame01_gt.nii.gz", labels, vol.affine)


def test_acdc_nifti_layout_trains_through_the_same_card_interface(tmp_path):
    """ACDC's NIfTI layout (patientNNN/patientNNN_frameFF.nii.gz + _gt), faked with phantoms: no shared data needed."""
    _phantom_acdc(tmp_path / "acdc")
    config = SegmentationConfig.model_validate(
        {
            "data": {"card": "acdc_nifti", "root": str(tmp_path / "acdc"), "image_size": [32, 32]},
            "backbone": {"kind": "cnn", "spatial_dims": 2, "channels": [4, 8, 16], "strides": [2, 2, 2]},
            "train": {"epochs": 1, "batch_size": 4, "augment": False},
        }
    )
    result = train(config, tmp_path / "run", quiet=True)
    assert result["epochs"] == 1 and 0.0 <= result["best_val_mean_dice"] <= 1.0
    metrics, _ = evaluate_checkpoint([tmp_path / "run"], split="test", root=tmp_path / "acdc", output=tmp_path / "eval")
    assert len(metrics["cases"]) == 1 and list(metrics["cases"]) == [n for n in metrics["cases"] if n.endswith("_frame01")]


@pytest.mark.parametrize("kind", ["hebbian", "cnn"])
def test_a_fresh_run_warms_up_the_encoder_its_kind_pretrains(tmp_path, kind):
    """``backbone: hebbian`` in segmentation is SPHeRe-pretrained on the training patches before its supervised
    steps, as in the other pipelines (it trained as a plain CNN before); a cnn encoder has nothing to warm up."""
    from rich.console import Console

    _phantom_acdc(tmp_path / "acdc")
    config = SegmentationConfig.model_validate(
        {
            "data": {"card": "acdc_nifti", "root": str(tmp_path / "acdc"), "image_size": [32, 32]},
            "backbone": {"kind": kind, "spatial_dims": 2, "channels": [4, 8, 16], "strides": [2, 2, 2]},
            "train": {"epochs": 1, "batch_size": 4, "augment": False},
        }
    )
    console = Console(record=True, width=200)
    train(config, tmp_path / "run", quiet=True, console=console)
    said = console.export_text()
    if kind == "cnn":
        assert "warm-up" not in said
        return
    from medsuite.segmentation.data import training_slices
    from medsuite.data.cards import load_card

    patches = len(training_slices(load_card("acdc_nifti"), config.model_copy(update={"data": config.data.model_copy(update={"root": str(tmp_path / "acdc")})})))
    assert f"encoder warm-up (hebbian) on {patches} patches: loss" in said


def test_evaluate_command_writes_into_the_current_folder_never_beside_the_checkpoint(tmp_path, monkeypatch, capsys):
    """The common runtime options, and a default results folder in the current folder (the shipped model lies
    inside the installed package, where nothing may be written)."""
    import torch

    from medsuite.cli import main
    _phantom_acdc(tmp_path / "acdc")
    config = SegmentationConfig.model_validate(
        {
            "data": {"card": "acdc_nifti", "root": str(tmp_path / "acdc"), "image_size": [32, 32]},
            "backbone": {"kind": "cnn", "spatial_dims": 2, "channels": [4, 8], "strides": [2, 2]},
            "train": {"epochs": 1, "batch_size": 4, "augment": False},
        }
    )
    train(config, tmp_path / "run", quiet=True)
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    command = ["evaluate", "segmentation", str(tmp_path / "run"), "--split", "test", "--root", str(tmp_path / "acdc"), "--threads", "1", "--seed", "3", "--quiet"]
    with pytest.raises(SystemExit) as exited:
        main([*command, "--device", "cuda"])
    assert exited.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exited:
        main([*command, "--device", "auto"])
    assert exited.value.code == 0
    saved = json.loads((tmp_path / "empty" / "medsuite_results" / "evaluate_segmentation" / "metrics.json").read_text())
    assert saved["parameters"]["device"] == "cpu" and len(saved["cases"]) == 1
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_time_budget_is_checked_before_each_epoch():
    from medsuite.segmentation.train import _budget_spent

    history = [{"minutes": 4.0}, {"minutes": 8.0}]  # 4 min per epoch
    assert not _budget_spent(history, 12.5) and _budget_spent(history, 11.5)
    assert not _budget_spent([], 0.1) and not _budget_spent(history, None)


def test_early_stopping_counts_validations_since_the_best_from_the_history():
    from medsuite.segmentation.train import _stale

    history = [{"val_mean_dice": 0.5}, {"loss": 1.0}, {"val_mean_dice": 0.7}, {"val_mean_dice": 0.6}, {"val_mean_dice": 0.7}]
    assert _stale(history, 2) and not _stale(history, 3)  # a tie does not beat the best
    assert not _stale(history, None) and not _stale([], 1) and not _stale(history[:3], 1)
