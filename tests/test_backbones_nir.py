"""NIR export of the spiking encoder: an exact round trip through NIR's file and nirtorch's interpreter."""

import pytest
import torch

pytest.importorskip("snntorch")
nir = pytest.importorskip("nir")
pytest.importorskip("nirtorch")

from medsuite.backbones import make_encoder  # noqa: E402
from medsuite.backbones.nir_export import encoder_to_nir, round_trip, write_nir  # noqa: E402
from medsuite.backbones.spiking_unet import SpikingUNet  # noqa: E402
from medsuite.errors import MedsuiteError  # noqa: E402

SPEC = {"kind": "snn", "spatial_dims": 2, "in_channels": 1, "channels": [4, 8], "strides": [1, 2], "norm": "batch", "time_steps": 3}


def _trained_like(reset: str) -> SpikingUNet:
    """A spiking U-Net whose batch norms hold non-trivial statistics and whose every stage fires."""
    torch.manual_seed(0)
    model = SpikingUNet(SPEC | {"reset": reset, "threshold": 0.5}, classes=3)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 1, 16, 16) * 3)
    return model.eval()


def test_zero_reset_model_round_trips_exactly_through_the_file(tmp_path):
    model = _trained_like("zero")
    graph = encoder_to_nir(model.encoder, (16, 16))
    reread = nir.read(str(write_nir(graph, tmp_path / "encoder.nir")))
    report = round_trip(model, torch.rand(1, 1, 16, 16) * 3, reread)
    assert all(count > 0 for count in report["spikes_native"]), "every stage must fire for the check to mean anything"
    assert report["spikes_nir"] == report["spikes_native"] and report["spikes_differing"] == [0, 0]
    assert report["max_abs_logit_difference"] == 0.0 and report["exact"]


def test_subtractive_reset_is_reported_as_not_exact():
    model = _trained_like("subtract")  # NIR's LIF resets to a value: the export says what that changes
    report = round_trip(model, torch.rand(1, 1, 16, 16) * 3, encoder_to_nir(model.encoder, (16, 16)))
    assert not report["exact"] and sum(report["spikes_differing"]) > 0


def _mixed_time_steps():
    encoder = make_encoder(SPEC)
    encoder.set_time_steps([2, 3])
    return encoder


@pytest.mark.parametrize(
    "build, words",
    [
        (lambda: make_encoder(SPEC | {"norm": "instance"}), "no NIR form"),
        (lambda: make_encoder(SPEC | {"spatial_dims": 3}), "2D spiking encoder"),
        (lambda: make_encoder(SPEC | {"kind": "cnn"}), "2D spiking encoder"),
        (_mixed_time_steps, "time steps"),
    ],
)
def test_models_without_a_nir_form_are_refused_with_one_line(build, words):
    with pytest.raises(MedsuiteError, match=words):
        encoder_to_nir(build(), (16, 16))


def test_models_export_nir_writes_the_graph_and_an_exact_round_trip_report(tmp_path):
    import json

    from medsuite.checkpoints import save_checkpoint
    from medsuite.cli import main
    from medsuite.segmentation.config import SegmentationConfig
    from medsuite.segmentation.models import make_model

    config = SegmentationConfig.model_validate(
        {"data": {"image_size": [32, 32]}, "backbone": {"kind": "snn", "spatial_dims": 2, "channels": [4, 8], "strides": [1, 2], "norm": "batch", "time_steps": 2, "reset": "zero", "threshold": 0.5}}
    )
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "snn.pt", kind="segmentation", state=make_model(config).state_dict(), config=config.model_dump(mode="json"), card="acdc_h5")
    with pytest.raises(SystemExit) as done:
        main(["models", "export", str(checkpoint), "-o", str(tmp_path / "nir"), "--format", "nir"])
    assert done.value.code in (0, None)
    report = json.loads((tmp_path / "nir" / "nir_report.json").read_text())
    assert report["exact"] and report["spikes_nir"] == report["spikes_native"]
    assert nir.read(str(tmp_path / "nir" / "encoder.nir")).metadata["time_steps"] == 2
