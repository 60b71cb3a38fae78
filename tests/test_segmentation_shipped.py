"""The shipped default model on real data (skips without ../shared/data): held-out ACDC patients of the
card's split, and an M&Ms cine pair whose left ventricle must be larger at end-diastole than at end-systole."""

from __future__ import annotations

import json

import torch

from medsuite.data.cards import load_card
from medsuite.segmentation.data import split_volumes
from medsuite.segmentation.evaluate import evaluate_volumes
from medsuite.segmentation.infer import DEFAULT_CHECKPOINT, segment_batch
from medsuite.segmentation.models import load_trained

from .conftest import shared_path

torch.set_num_threads(1)


def test_shipped_model_on_held_out_acdc_patients():
    shared_path("acdc_h5")
    trained = load_trained(DEFAULT_CHECKPOINT)
    config = trained.config
    config.data.limit = 4  # two held-out patients, ED and ES (the full test split is in the model card)
    metrics = evaluate_volumes([(trained.model, config)], split_volumes(load_card("acdc_h5"), config, "test"), trained.labels)
    assert len(metrics["cases"]) == 4
    assert metrics["mean_dice"] > 0.8 and all(v["dice"] > 0.7 for v in metrics["per_class"].values())


def test_shipped_model_sees_the_heart_contract_on_an_mnms_cine_nifti(tmp_path):
    folder = shared_path("cardiac_multiview", "cinema_examples", "mnms")
    assert segment_batch([folder / "sax_ed.nii.gz", folder / "sax_es.nii.gz"], tmp_path, quiet=True) == 0
    cases = json.loads((tmp_path / "report.json").read_text())["cases"]
    ed, es = cases["sax_ed"]["label_volumes_ml"], cases["sax_es"]["label_volumes_ml"]
    assert ed["lv_cavity"] > 1.5 * es["lv_cavity"] > 0 and ed["rv_cavity"] > es["rv_cavity"] > 0  # ejection: both ventricles empty in systole
    assert 0.7 < ed["myocardium"] / es["myocardium"] < 1.3  # the muscle itself keeps its volume
