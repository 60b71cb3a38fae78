"""The spiking neU-Net (``model.decoder: spiking``) through the segmentation pipeline: config checks, the same
``train()`` with TET and mixed time steps on phantom ACDC volumes, the checkpoint reloaded for inference,
MTT evaluation at fewer time steps, and the spike-driven property (only the analog-reading convs multiply)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("snntorch")

from medsuite.backbones.energy import estimate_energy  # noqa: E402
from medsuite.backbones.training import set_time_steps  # noqa: E402
from medsuite.segmentation.config import SegmentationConfig  # noqa: E402
from medsuite.segmentation.models import make_model  # noqa: E402

from .test_segmentation_training import _phantom_acdc  # noqa: E402

torch.set_num_threads(1)

TINY = {
    "data": {"image_size": [32, 32]},
    "model": {"decoder": "spiking"},
    "backbone": {"kind": "snn", "spatial_dims": 2, "channels": [4, 8, 16], "strides": [2, 2, 2], "norm": "batch", "time_steps": 2},
}


def _config(**sections) -> SegmentationConfig:
    data = {key: dict(value) for key, value in TINY.items()}
    for key, value in sections.items():
        data[key] = data.get(key, {}) | value
    return SegmentationConfig.model_validate(data)


@pytest.mark.parametrize(
    "sections, words",
    [
        ({"model": {"decodr": "spiking"}}, "decodr"),  # unknown keys are refused
        ({"backbone": {"kind": "cnn", "time_steps": 2}}, "backbone.kind: snn"),
        ({"model": {"decoder": "analog", "head_readout": "membrane"}}, "head_readout"),
        ({"model": {"decoder": "analog"}, "train": {"loss": "tet"}}, "tet"),
        ({"backbone": {"head_readout": "membrane"}}, "model.head_readout"),
        ({"train": {"loss": "tets"}}, "loss"),
    ],
)
def test_misplaced_spiking_options_are_refused(sections, words):
    with pytest.raises(ValueError, match=words):
        _config(**sections)


@pytest.mark.parametrize("readout", ["spikes", "membrane"])
def test_spiking_neunet_is_spike_driven_behind_its_analog_inputs(readout):
    torch.manual_seed(0)
    model = make_model(_config(model={"head_readout": readout})).eval()
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        steps, logits = model.forward_steps(x), model(x)
    assert steps.shape == (2, 2, 4, 32, 32) and torch.allclose(logits, steps.mean(0), atol=1e-6)
    rows = {row["name"]: row for row in estimate_energy(model, x)["per_layer"]}
    analog = {"encoder.stages.0.conv1", "proj.0", "proj.1", "proj.2"} | ({"decoder.head.conv_block"} if readout == "membrane" else set())
    assert {name for name, row in rows.items() if row["macs"]} == analog  # the image, its wavelet bands, a membrane head
    assert all(row["spike_input"] for name, row in rows.items() if name not in analog)


def test_mtt_model_runs_at_fewer_time_steps_after_batchnorm_reestimation():
    torch.manual_seed(0)
    model = make_model(_config(backbone={"time_steps": 4}, train={"time_steps": "mixed"})).eval()
    calibration = [torch.rand(4, 1, 32, 32) for _ in range(2)]
    for steps in (1, 2):
        set_time_steps(model, steps, calibration)
        assert model.encoder.stage_steps == [steps] * 3 and not model.training
        with torch.no_grad():
            assert model.forward_steps(calibration[0]).shape[0] == steps
            logits = model(torch.rand(1, 1, 32, 32))
        assert logits.shape == (1, 4, 32, 32) and torch.isfinite(logits).all()
    norm = model.encoder.stages[0].norm1
    assert norm.num_batches_tracked == len(calibration)  # statistics recomputed for the last T, not the training mix


def test_spiking_neunet_trains_with_tet_and_mixed_steps_and_its_checkpoint_predicts(tmp_path):
    from medsuite.checkpoints import load_checkpoint
    from medsuite.io import read_3d
    from medsuite.segmentation.evaluate import evaluate_checkpoint
    from medsuite.segmentation.infer import Segmenter
    from medsuite.segmentation.train import train

    _phantom_acdc(tmp_path / "acdc")
    config = _config(
        data={"card": "acdc_nifti", "root": str(tmp_path / "acdc"), "inplane": "native", "limit": 1},
        model={"head_readout": "membrane"},
        train={"epochs": 1, "batch_size": 2, "augment": True, "loss": "tet", "time_steps": "mixed", "mtt_configs": 2},
    )
    result = train(config, tmp_path / "run", quiet=True)
    assert result["epochs"] == 1 and 0.0 <= result["best_val_mean_dice"] <= 1.0
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt", kind="segmentation")
    assert ckpt["config"]["model"]["decoder"] == "spiking" and ckpt["config"]["train"]["loss"] == "tet"
    segmenter = Segmenter(tmp_path / "run", tta=False)
    assert segmenter.model.encoder.stage_steps == [2, 2, 2]  # the checkpoint runs at the full T, whatever MTT sampled last
    volume = read_3d(tmp_path / "acdc" / "patient005" / "patient005_frame01.nii.gz")
    prediction, _ = segmenter(volume)
    assert tuple(prediction.labels.shape) == volume.array.shape and set(prediction.labels.unique().tolist()) <= {0, 1, 2, 3}
    metrics, _ = evaluate_checkpoint([tmp_path / "run"], split="test", root=tmp_path / "acdc", output=tmp_path / "eval")
    assert 0.0 <= metrics["mean_dice"] <= 1.0


def test_spiking_neunet_exports_as_a_bundle_whose_torchscript_matches(tmp_path):
    from medsuite.checkpoints import save_checkpoint
    from medsuite.export.bundle import TORCHSCRIPT_TOLERANCE, export_bundle

    config = _config(model={"head_readout": "membrane"})
    torch.manual_seed(0)
    model = make_model(config).eval()
    checkpoint = save_checkpoint(tmp_path / "spiking.pt", kind="segmentation", state=model.state_dict(), config=config.model_dump(mode="json"), card="acdc_h5")
    export_bundle(checkpoint, tmp_path / "bundle")  # traced: the surrogate spike functions become Heaviside steps
    scripted = torch.jit.load(str(tmp_path / "bundle" / "models" / "model.ts"))
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=0, atol=TORCHSCRIPT_TOLERANCE)
