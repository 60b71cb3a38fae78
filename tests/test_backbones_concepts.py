"""The concept pipeline trains and classifies with ``backbone: snn`` and ``backbone: hebbian`` (tiny runs)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from medsuite.concepts import generate_cohort, load_vocabulary, write_cohort
from medsuite.config import PIPELINES_DIR

SIZE, T = 32, 2


def _train(tmp_path, backbone: dict) -> dict:
    from medsuite.concepts.train import train_concepts

    config = yaml.safe_load((PIPELINES_DIR / "concepts_choroid.yaml").read_text())
    config["synthetic"].update(patients=30, test_patients=20, image_size=SIZE)
    config["image_size"] = SIZE
    config["backbone"].update(backbone)
    config["train"].update(encoder_epochs=1, joint_epochs=0, bottleneck_steps=10)
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump(config))
    return train_concepts(pipeline, tmp_path / "run")


def _classify(tmp_path) -> dict:
    from medsuite.concepts.infer import classify_cases

    write_cohort(generate_cohort(load_vocabulary(), 2, size=SIZE, seed=7), tmp_path / "cases")
    assert classify_cases([tmp_path / "cases"], tmp_path / "out", model_path=tmp_path / "run" / "model.pt", quiet=True) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    for case in report["cases"].values():
        prediction = json.loads((tmp_path / "out" / case["prediction"]).read_text())
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    return report


def test_concepts_with_snn_backbone_report_spiking_energy(tmp_path):
    torch.set_num_threads(1)
    report = _train(tmp_path, {"kind": "snn", "time_steps": T, "norm": "batch"})
    assert report["parameters"]["backbone"]["kind"] == "snn"
    test = report["test"]
    assert 0.0 < test["concept_auc_sequential"] <= 1.0 and 0.0 <= test["f1_cbm_sequential"] <= 1.0
    energy = _classify(tmp_path)["energy"]
    # direct encoding: only the first conv (1 -> 8 channels, stride 2: 16x16 outputs, 3x3) is analog, at each of T steps
    assert energy["macs"] == 7 * T * 8 * 16 * 16 * 9
    # every other conv is spike-fed: the patient's 7 images make neurons fire
    assert energy["per"] == "patient" and energy["images"] == 7 and energy["acs"] > 0
    assert energy["energy_mj"] == pytest.approx((energy["macs"] * 4.6 + energy["acs"] * 0.9) * 1e-9)


def test_concepts_with_hebbian_backbone_pretrains_then_fine_tunes(tmp_path):
    from medsuite.backbones import make_encoder
    from medsuite.backbones.energy import estimate_energy

    torch.set_num_threads(1)
    report = _train(tmp_path, {"kind": "hebbian", "pretrain_epochs": 1})
    assert 0.0 < report["test"]["concept_auc_sequential"] <= 1.0
    energy = _classify(tmp_path)["energy"]
    # a Hebbian encoder is a CNN at inference: the same MACs as the cnn kind, no accumulates
    cnn = estimate_energy(make_encoder({k: v for k, v in report["parameters"]["backbone"].items() if k != "pretrain_epochs"} | {"kind": "cnn"}), torch.rand(7, 1, SIZE, SIZE))  # analog input: MACs do not depend on the values
    assert energy["macs"] == cnn["macs"] > 0 and energy["acs"] == 0
