"""Training from a data card, every backbone kind end to end, the lesion found, the energy estimate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from medsuite.data.samples import make_pathological_pair, write_pair
from medsuite.registration.config import RegistrationConfig
from medsuite.registration.data import training_pairs
from medsuite.registration.inference import load_model, register_volumes
from medsuite.registration.losses import intensity_match
from medsuite.registration.train import FINAL, train

torch.set_num_threads(1)


def tiny_config(**backbone) -> RegistrationConfig:
    config = RegistrationConfig()
    config.backbone = config.backbone.model_copy(update=backbone)
    config.train.pairs, config.train.resolution_mm, config.train.iterations, config.train.checkpoint_every = 2, 12.0, 2, 2
    config.train.registration_warmup = 1  # one iteration of each stage
    config.instance.levels, config.instance.steps = [2, 1], [4, 3]
    config.prealign_iterations = 10
    return config


def test_intensity_match_recovers_the_contrast_on_weighted_voxels():
    guide = torch.rand(1, 1, 6, 6, 6)
    target = 0.6 * guide + 0.3
    weight = torch.ones_like(guide)
    weight[..., :2, :, :] = 0
    target[..., :2, :, :] = 5.0  # a "lesion" the fit must ignore
    torch.testing.assert_close(intensity_match(guide, target, weight)[..., 2:, :, :], target[..., 2:, :, :])


def test_instance_optimisation_finds_the_tumour():
    pair = make_pathological_pair(7, resolution_mm=4.0)
    config = RegistrationConfig()
    config.instance.levels, config.instance.steps = [2, 1], [20, 20]
    result = register_volumes(pair.fixed, pair.moving, config)
    truth = pair.lesion_mask.array > 0
    dice = 2 * (result.lesion & truth).sum() / (result.lesion.sum() + truth.sum())
    assert dice > 0.6  # measured 0.7-0.8 at 4 mm; 0 when the mask collapses
    assert result.energy["macs"] == 0 and "no network" in result.energy["note"]


@pytest.mark.parametrize("kind", ["snn", "hebbian"])
def test_every_backbone_kind_trains_and_registers(tmp_path, kind):
    extra = {"time_steps": 2} if kind == "snn" else {"pretrain_epochs": 1}
    config = tiny_config(kind=kind, **extra)
    final = train(config, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and np.isfinite(lines[0]["reg"]) and 0 <= lines[1]["lesion_dice"] <= 1
    model, trained = load_model(final, RegistrationConfig())
    assert trained.backbone.kind == kind
    pair = make_pathological_pair(3, resolution_mm=12.0)
    result = register_volumes(pair.fixed, pair.moving, trained, model=model)
    assert np.isfinite(result.ddf_lps).all() and result.folding_percent < 1.0
    energy = result.energy
    assert energy["macs"] > 0 and energy["energy_mj"] > 0
    if kind == "snn":
        assert energy["acs"] > 0  # spike-fed convolutions count accumulates


def _pairs_card(tmp_path) -> tuple[str, object]:
    """Two generated pairs laid out as a user's folders: one atlas, moving scans, lesion maps."""
    root = tmp_path / "data"
    for seed in (11, 12):
        files = write_pair(make_pathological_pair(seed, resolution_mm=8.0), tmp_path / f"pair{seed}")
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(exist_ok=True)
        files["moving"].rename(root / "images" / f"case{seed}.nii.gz")
        files["lesion_mask"].rename(root / "labels" / f"case{seed}.nii.gz")
        files["fixed"].replace(root / "atlas.nii.gz")
    card = yaml.safe_load(open(__import__("medsuite.data.cards", fromlist=["CARDS_DIR"]).CARDS_DIR / "mni152_sample.yaml"))
    card.update({"id": "test_pairs", "layout": {"kind": "nifti_folders", "root": str(root), "keys": {"fixed": "atlas.nii.gz"}}})
    path = tmp_path / "test_pairs.yaml"
    path.write_text(yaml.safe_dump(card))
    return str(path), root


def test_training_reads_pairs_from_a_data_card(tmp_path):
    card, root = _pairs_card(tmp_path)
    config = tiny_config()
    config.data_card, config.train.resolution_mm = card, 8.0
    pairs = training_pairs(config)
    assert len(pairs) == 2
    for fixed, moving, lesion in pairs:
        assert fixed.shape == moving.shape == lesion.shape and fixed.shape[2:] == (25, 30, 24)
        assert 0 < lesion.sum() < 0.05 * lesion.numel()  # the lesion map, pre-aligned onto the atlas grid
        assert np.corrcoef(fixed.ravel(), moving.ravel())[0, 1] > 0.8  # pre-aligned: same anatomy
    train(config, tmp_path / "run")  # the second iteration: the lesion modules' stage
    assert "lesion_dice" in json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[1])
    assert (tmp_path / "run" / FINAL).is_file()
