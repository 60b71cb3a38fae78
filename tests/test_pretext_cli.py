"""`pretext targets` and `pretrain` on the synthetic exam; the encoder checkpoint contract; the loss."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from medsuite.cli import _build
from medsuite.pretext.pretrain import CNN_2D, pretext_loss
from medsuite.pretext.synthetic import write_synthetic_exam

runner = CliRunner()
PIPELINE = Path(__file__).resolve().parents[1] / "medsuite" / "pipelines" / "pretext_cardiac.yaml"


@pytest.fixture(scope="module")
def exam(tmp_path_factory) -> Path:
    return write_synthetic_exam(tmp_path_factory.mktemp("exam") / "synthetic", n_sax=4, size=40)


def test_targets_cli_writes_views_heatmaps_lines_and_overlays(exam, tmp_path):
    out = tmp_path / "targets"
    result = runner.invoke(_build(), ["pretext", "targets", str(exam), "-o", str(out), "--sigma-mm", "3"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["kind"] == "pretext"
    assert report["long_axis_meeting_spread_mm"]["max"] < 1e-3
    # The phantom stacks its slices along (0.6, -0.5, 0.62): right/posterior/superior, towards the base, so
    # the anatomical base-to-apex location runs against the storage order.
    assert report["views"]["sax_ed"]["slice_locations"] == pytest.approx([1, 2 / 3, 1 / 3, 0], abs=1e-4)
    assert report["views"]["sax_ed"]["slice_spacing_mm"] == pytest.approx(8.0, abs=1e-4)
    for name in ("sax_ed", "lax_2c_ed", "lax_3c_ed", "lax_4c_ed"):
        source = nib.load(str(exam / f"{name}.nii.gz"))
        image, heat = nib.load(str(out / f"{name}.nii.gz")), nib.load(str(out / f"{name}_heatmaps.nii.gz"))
        np.testing.assert_allclose(image.affine, source.affine, atol=1e-5)  # outputs keep the input's affine
        np.testing.assert_allclose(heat.affine, source.affine, atol=1e-5)
        assert heat.shape == (*source.shape[:3], 4)
        assert (out / f"{name}_overlay.png").stat().st_size > 1000
    # SAX heatmaps: no SAX channel (parallel), a 1.0 ridge for each long-axis line.
    heat = np.asarray(nib.load(str(out / "sax_ed_heatmaps.nii.gz")).dataobj)
    assert heat[..., 0].max() == 0.0
    assert all(heat[:, :, s, c].max() > 0.95 for s in range(4) for c in (1, 2, 3))
    lines = json.loads((out / "lines.json").read_text())["lines"]
    four_in_sax = next(e for e in lines if e["view"] == "sax_ed" and e["slice"] == 2 and e["other_kind"] == "4CH")
    assert set(four_in_sax["endpoints_px"]) == {"sax_ed", "lax_4c_ed"}  # the line lies in both images
    assert four_in_sax["endpoints_px"]["sax_ed"]["2"] is not None


def test_targets_cli_errors_are_one_line(tmp_path):
    result = runner.invoke(_build(), ["pretext", "targets", str(tmp_path / "missing"), "-o", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "is not a folder" in str(result.exception)


def test_pretext_loss_masks_missing_lines_and_locations():
    heat_pred = torch.zeros(2, 4, 3, 3)
    heat = torch.ones(2, 4, 3, 3)
    mask = torch.tensor([[0.0, 1, 0, 0], [0, 0, 0, 0]])  # one line in the whole batch
    heat[0, 0] = 5.0  # masked: must not count
    loc_pred, loc = torch.tensor([0.5, 0.0]), torch.tensor([0.0, 9.0])
    has_loc = torch.tensor([1.0, 0.0])
    total, orientation, location, _ = pretext_loss(heat_pred, loc_pred, heat, mask, loc, has_loc, {"orientation": 1.0, "location": 2.0})
    assert float(orientation) == pytest.approx(1.0)
    assert float(location) == pytest.approx(0.25)
    assert float(total) == pytest.approx(1.5)


def test_pretrain_cli_writes_an_encoder_segmentation_can_load(exam, tmp_path):
    pipeline = yaml.safe_load(PIPELINE.read_text())
    pipeline.update(sources=[{"card": "mnms_multiview", "root": str(exam.parent)}], image_size=32, iterations=3, batch_size=2, max_phases=1)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    run = tmp_path / "run"
    result = runner.invoke(_build(), ["pretrain", "--pipeline", str(path), "-o", str(run), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "report.json").read_text())
    assert report["kind"] == "pretrain" and report["n_samples"] == 7  # 4 SAX slices + 3 long-axis views
    assert report["tasks_per_source"] == {"mnms_multiview": ["orientation", "location"]}
    assert np.isfinite(report["loss_last"]["total"])
    from medsuite.backbones import make_encoder
    from medsuite.checkpoints import load_checkpoint

    checkpoint = load_checkpoint(run / "encoder.pt", kind="encoder")
    assert checkpoint["config"]["backbone"]["channels"] == CNN_2D["channels"]
    encoder = make_encoder(checkpoint["config"]["backbone"])
    encoder.load_state_dict(checkpoint["state"])  # strict: the exact encoder the segmentation model holds
    assert [f.shape[1] for f in encoder(torch.zeros(1, 1, 32, 32))] == CNN_2D["channels"]


def test_pipeline_template_validates():
    from medsuite.config import load_pipeline
    from medsuite.pretext.pretrain import PretextConfig

    config = load_pipeline(PIPELINE, PretextConfig)
    assert config.backbone.model_dump(include=set(CNN_2D)) == CNN_2D
    assert [s.card for s in config.sources] == ["cmr_plan_dicom", "mnms_multiview", "acdc_h5"]  # cards, never paths
    assert config.weights == {"orientation": 1.0, "location": 1.0}


def test_quarter_turns_turn_image_and_line_heatmaps_together():
    from medsuite.pretext.pretrain import quarter_turns

    x = torch.zeros(32, 1, 5, 5)
    x[:, :, 0, 4] = 1.0  # a bright corner: where it goes tells the turn
    heat = x.repeat(1, 4, 1, 1)
    turned, turned_heat, turns = quarter_turns(x, heat, torch.Generator().manual_seed(1))
    assert set(turns.tolist()) == {0, 1, 2, 3}
    for image, lines, k in zip(turned, turned_heat, turns.tolist()):
        assert torch.equal(image, torch.rot90(x[0], k, dims=(-2, -1)))
        assert torch.equal(lines, image.repeat(4, 1, 1))  # task 1's targets stay on the image


@pytest.mark.parametrize("weights", [{"rotation": 1.0, "orientation": 0.0, "location": 0.0}, {"orientation": 1.0, "location": 0.0}])
def test_one_task_alone_or_the_rotation_baseline_pretrains_with_the_same_command(exam, tmp_path, weights):
    """The arms of benchmarks/pretext.py: a task's weight 0 switches it off; rotation adds its own head."""
    from medsuite.checkpoints import load_model

    pipeline = yaml.safe_load(PIPELINE.read_text())
    pipeline.update(sources=[{"card": "mnms_multiview", "root": str(exam.parent)}], image_size=32, iterations=3, batch_size=2, max_phases=1, weights=weights)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(pipeline))
    result = runner.invoke(_build(), ["pretrain", "--pipeline", str(path), "-o", str(tmp_path / "run"), "--device", "cpu", "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    rotation = weights.get("rotation", 0.0) > 0
    assert report["task_weights"]["rotation"] == (1.0 if rotation else 0.0)
    assert (report["loss_last"]["rotation"] > 0) == rotation
    assert set(report["loss_last"]) >= {"orientation", "location"}  # every task's loss is still reported
    model = load_model(tmp_path / "run" / "pretext_model.pt", "pretext").model
    assert (model.rotation_head is not None) == rotation
    heat, location, turn = model(torch.zeros(1, 1, 32, 32))
    assert heat.shape == (1, 4, 32, 32) and location.shape == (1,) and (turn is None or turn.shape == (1, 4))


def test_pretrain_on_a_users_own_card_as_the_readme_walks_through(exam, tmp_path):
    """README: `cards show` a shipped card as a template, set id and root, validate it, `pretrain --card PATH`."""
    shown = runner.invoke(_build(), ["cards", "show", "mnms_multiview"])
    assert shown.exit_code == 0, shown.output
    card = yaml.safe_load(shown.output)
    card.update(id="my_cines", name="our cine exams")
    card["layout"]["root"] = str(exam.parent)
    path = tmp_path / "my_cines.yaml"
    path.write_text(yaml.safe_dump(card))
    assert runner.invoke(_build(), ["cards", "validate", str(path)]).exit_code == 0
    result = runner.invoke(_build(), ["pretrain", "--card", str(path), "-o", str(tmp_path / "run"), "--iterations", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "tasks per source: my_cines: orientation, location" in result.output
    assert json.loads((tmp_path / "run" / "report.json").read_text())["tasks_per_source"] == {"my_cines": ["orientation", "location"]}
