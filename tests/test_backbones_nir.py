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


def _checkpoint(tmp_path, **sections):
    """A segmentation checkpoint with an snn encoder (zero reset, firing) whose batch norms hold statistics."""
    from medsuite.checkpoints import save_checkpoint
    from medsuite.segmentation.config import SegmentationConfig
    from medsuite.segmentation.models import make_model

    backbone = {"kind": "snn", "spatial_dims": 2, "channels": [4, 8], "strides": [1, 2], "norm": "batch", "time_steps": 2, "reset": "zero", "threshold": 0.5}
    config = SegmentationConfig.model_validate({"data": {"image_size": [32, 32]}, "backbone": backbone | sections.get("backbone", {}), "model": sections.get("model", {})})
    torch.manual_seed(0)
    model = make_model(config).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 1, 32, 32))
    return save_checkpoint(tmp_path / "snn.pt", kind="segmentation", state=model.state_dict(), config=config.model_dump(mode="json"), card="acdc_h5")


def _export(checkpoint, out, *extra: str) -> int:
    from medsuite.cli import main

    with pytest.raises(SystemExit) as done:
        main(["models", "export", str(checkpoint), "-o", str(out), "--format", "nir", *extra])
    return done.value.code or 0


def test_models_export_nir_names_the_host_layers_and_exits_2_unless_allowed(tmp_path, capsys):
    import json

    checkpoint = _checkpoint(tmp_path)  # neU-Net with the analog decoder: only the encoder is spiking
    assert _export(checkpoint, tmp_path / "nir") == 2
    line = capsys.readouterr().err.strip()
    assert len(line.splitlines()) == 1 and checkpoint.name in line and "analog decoder" in line and "--allow-host-layers" in line
    assert not (tmp_path / "nir").exists()  # refused before anything is written
    assert _export(checkpoint, tmp_path / "nir", "--allow-host-layers") == 0
    report = json.loads((tmp_path / "nir" / "nir_report.json").read_text())
    assert report["exact"] and report["spikes_nir"] == report["spikes_native"] and "head" in report["host_layers"]
    assert nir.read(str(tmp_path / "nir" / "encoder.nir")).metadata["time_steps"] == 2


def test_spiking_neunet_exports_its_wavelet_inputs_and_round_trips_exactly(tmp_path, capsys):
    import json

    checkpoint = _checkpoint(tmp_path, model={"decoder": "spiking", "head_readout": "membrane"}, backbone={"channels": [4, 8, 16], "strides": [2, 2, 2]})
    assert _export(checkpoint, tmp_path / "nir") == 2
    assert "decoder.blocks, decoder.head would run on the host" in capsys.readouterr().err
    assert _export(checkpoint, tmp_path / "nir", "--allow-host-layers") == 0
    report = json.loads((tmp_path / "nir" / "nir_report.json").read_text())
    assert all(count > 0 for count in report["spikes_native"]), "every stage must fire for the check to mean anything"
    assert report["spikes_nir"] == report["spikes_native"] and report["spikes_differing"] == [0, 0, 0]
    assert report["max_abs_logit_difference"] == 0.0 and report["exact"]  # the re-imported spikes through the native decoder
    graph = nir.read(str(tmp_path / "nir" / "encoder.nir"))
    assert {f"stage{i}.bands" for i in range(3)} <= set(graph.nodes) and ("stage1.bands", "stage1.lif1") in graph.edges
