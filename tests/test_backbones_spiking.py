"""Spiking and Hebbian encoders: contract shapes, statelessness, spike counts, TET/MTT, conversion."""

import random

import pytest
import torch

from medsuite.backbones import make_encoder
from medsuite.backbones.energy import estimate_energy
from medsuite.backbones.snn import resample_time
from medsuite.backbones.training import mtt_step, reestimate_batchnorm, tet_loss

torch.set_num_threads(1)
SPEC = {"in_channels": 1, "channels": [4, 8, 16], "strides": [1, 2, 2]}


@pytest.mark.parametrize("kind", ["snn", "hebbian"])
@pytest.mark.parametrize("dims", [2, 3])
def test_shapes_match_cnn(kind, dims):
    x = torch.randn(2, 1, *([8] * dims))
    reference = make_encoder(SPEC, spatial_dims=dims)(x)
    encoder = make_encoder(SPEC, kind=kind, spatial_dims=dims, time_steps=2)
    features = encoder(x)
    assert [f.shape for f in features] == [f.shape for f in reference]
    assert encoder.out_channels == [4, 8, 16]


def test_snn_stateless_and_spike_counts_bounded():
    torch.manual_seed(0)
    encoder = make_encoder(SPEC, kind="snn", spatial_dims=2, time_steps=4, norm="batch").train()
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        first, second = encoder(x), encoder(x)
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    steps = encoder.forward_steps(x)
    for rates, spikes in zip(first, steps):
        assert set(torch.unique(spikes).tolist()) <= {0.0, 1.0}  # binary spikes
        assert 0.0 < float(rates.mean()) < 1.0  # some neurons fire, none saturate everywhere
        assert spikes.shape[0] == 4


def test_snn_energy_first_layer_macs_then_acs():
    encoder = make_encoder(SPEC, kind="snn", spatial_dims=2, time_steps=3, norm="batch")
    result = estimate_energy(encoder, torch.rand(1, 1, 8, 8))
    first = result["per_layer"][0]
    # direct encoding: the first conv sees the analog image at each of 3 steps: 3 x (4*8*8) x 9 MACs
    assert first["name"] == "stages.0.conv1" and first["macs"] == 3 * 4 * 64 * 9 and first["acs"] == 0
    assert all(row["spike_input"] for row in result["per_layer"][1:])
    assert result["macs"] == first["macs"]


def test_surrogate_gradients_flow():
    encoder = make_encoder(SPEC, kind="snn", spatial_dims=2, time_steps=2, norm="batch")
    sum(f.sum() for f in encoder(torch.rand(2, 1, 8, 8))).backward()
    assert encoder.stages[0].conv1.weight.grad.abs().sum() > 0


def test_resample_time_repeat_and_average():
    x = torch.arange(4.0).reshape(4, 1)
    assert resample_time(x, 2).flatten().tolist() == [0.5, 2.5]
    assert resample_time(x[:2], 4).flatten().tolist() == [0.0, 0.0, 1.0, 1.0]


def test_tet_loss_formula():
    outputs = torch.tensor([[[2.0]], [[0.0]]])  # T=2, B=1, 1 output
    target = torch.tensor([[1.0]])
    mse = torch.nn.functional.mse_loss
    # task: mean(1, 1) = 1; regulariser: mean((2-1)^2, (0-1)^2) = 1
    assert float(tet_loss(outputs, target, mse, lam=0.25)) == pytest.approx(0.75 * 1 + 0.25 * 1)


def test_mtt_step_and_bn_reestimation():
    encoder = make_encoder(SPEC, kind="snn", spatial_dims=2, time_steps=4, norm="batch")
    head = torch.nn.Conv2d(4, 1, 1)
    optimiser = torch.optim.SGD([*encoder.parameters(), *head.parameters()], lr=0.1)
    x, y = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    before = encoder.stages[0].conv1.weight.clone()
    loss = mtt_step(encoder, lambda: torch.nn.functional.mse_loss(head(encoder(x)[0]), y), optimiser, t_max=4, rng=random.Random(0))
    assert loss > 0 and not torch.equal(before, encoder.stages[0].conv1.weight)
    assert all(1 <= t <= 4 for t in encoder.stage_steps)
    encoder.set_time_steps(2)
    bn = encoder.stages[0].norm1
    assert reestimate_batchnorm(encoder, [x, x]) == 6
    # stage-0 BN sees conv1 of the (repeated) image: its mean equals the mean conv response
    expected = encoder.stages[0].conv1(x).mean((0, 2, 3))
    assert torch.allclose(bn.running_mean, expected, atol=1e-5) and not encoder.training


def test_conversion_approximates_ann_and_calibration_helps():
    from medsuite.backbones.conversion import convert_to_snn

    torch.manual_seed(0)
    ann = make_encoder(SPEC, spatial_dims=2, norm="batch").train()
    with torch.no_grad():
        for _ in range(3):
            ann(torch.rand(4, 1, 16, 16))
    ann.eval()
    batches = [torch.rand(4, 1, 16, 16)]
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        target = torch.relu(ann(x)[-1])
        errors = {T: float(torch.mean((convert_to_snn(ann, batches, time_steps=T)(x)[-1] - target) ** 2) / target.pow(2).mean()) for T in (4, 32)}
    assert errors[32] < errors[4] and errors[32] < 0.1


def test_conversion_rejects_instance_norm():
    from medsuite.backbones.conversion import convert_to_snn
    from medsuite.errors import MedsuiteError

    with pytest.raises(MedsuiteError):
        convert_to_snn(make_encoder(SPEC, spatial_dims=2, norm="instance"), [torch.rand(2, 1, 8, 8)])


def test_sphere_pretraining_lowers_local_loss_without_crossing_blocks():
    from medsuite.backbones.hebbian import make_projections, orthogonality_loss, pretrain_hebbian, sphere_losses

    torch.manual_seed(0)
    encoder = make_encoder(SPEC, kind="hebbian", spatial_dims=2)
    # perfectly decorrelated, standardised features give zero orthogonality loss
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert float(orthogonality_loss(z)) == pytest.approx(0.0, abs=1e-6)
    # block 2's loss must not send gradients into block 1
    projections = make_projections(encoder, dim=16)
    sphere_losses(encoder, projections, torch.rand(4, 1, 8, 8))[1].backward()
    assert encoder.stages[0][0].conv.weight.grad is None and encoder.stages[1][0].conv.weight.grad is not None
    data = [torch.rand(8, 1, 16, 16) for _ in range(2)]
    history = pretrain_hebbian(encoder, data * 10, dim=32, lr=3e-3)
    assert len(history) == 20 and history[-1] < history[0]


def test_spiking_unet_is_spike_driven_after_the_first_conv():
    from medsuite.backbones.spiking_unet import SpikingUNet

    torch.manual_seed(0)
    model = SpikingUNet({**SPEC, "kind": "snn", "spatial_dims": 2, "time_steps": 3, "norm": "batch"}, classes=4)
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        steps, logits = model.forward_steps(x), model(x)
    assert steps.shape == (3, 2, 4, 16, 16) and torch.allclose(logits, steps.mean(0))
    with torch.no_grad():
        assert torch.equal(model(x), logits)  # stateless: membranes start from zero on every call
    result = estimate_energy(model, x)
    rows = {row["name"]: row for row in result["per_layer"]}
    # only the direct-encoding conv multiplies: 3 steps x 2 images x (4 channels x 16x16) outputs x 9 taps
    assert result["macs"] == rows["encoder.stages.0.conv1"]["macs"] == 3 * 2 * 4 * 256 * 9
    assert all(row["spike_input"] and row["macs"] == 0 for name, row in rows.items() if name != "encoder.stages.0.conv1")
    assert {"decoder.blocks.0.conv", "decoder.blocks.1.conv", "decoder.head"} <= set(rows) and result["acs"] > 0
    # each decoder conv and the head run once per time step on the folded (T*B) batch
    assert rows["decoder.head"]["calls"] == 1 and rows["decoder.head"]["acs"] == int(rows["decoder.head"]["input_rate"] * 3 * 2 * 4 * 256) * 4


def test_spiking_unet_trains_with_tet_and_any_time_steps():
    from medsuite.backbones.spiking_unet import SpikingUNet

    torch.manual_seed(0)
    model = SpikingUNet({**SPEC, "kind": "snn", "spatial_dims": 2, "time_steps": 2, "norm": "batch"}, classes=2)
    x, y = torch.rand(2, 1, 8, 8), torch.randint(0, 2, (2, 8, 8))
    tet_loss(model.forward_steps(x), y, torch.nn.functional.cross_entropy).backward()
    assert model.encoder.stages[0].conv1.weight.grad.abs().sum() > 0 and model.decoder.blocks[0].conv.weight.grad.abs().sum() > 0
    model.encoder.set_time_steps([1, 3, 2])  # mixed time steps: the decoder runs at the largest T, spikes repeated
    with torch.no_grad():
        assert model.forward_steps(x).shape[0] == 3


def test_spiking_unet_needs_a_spiking_encoder():
    from medsuite.backbones.spiking_unet import SpikingUNet
    from medsuite.errors import MedsuiteError

    with pytest.raises(MedsuiteError):
        SpikingUNet({**SPEC, "spatial_dims": 2}, classes=2)


def test_pretrain_on_images_runs_seeded_epochs():
    from medsuite.backbones.hebbian import pretrain_on_images

    images = torch.rand(20, 1, 16, 16)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        runs.append(pretrain_on_images(make_encoder(SPEC, kind="hebbian", spatial_dims=2, pretrain_epochs=3), images, batch_size=8, seed=0))
    first, second = runs
    assert first == second and len(first) == 3 * 3  # 3 epochs of 20 images in batches of 8, 8, 4
    assert first[6] < first[0]  # the first full batch of the last epoch vs of the first (equal batch sizes)


def test_spiking_unet_membrane_head_is_the_only_extra_mac_layer():
    from medsuite.backbones.spiking_unet import SpikingUNet

    torch.manual_seed(0)
    model = SpikingUNet({**SPEC, "kind": "snn", "spatial_dims": 2, "time_steps": 2, "norm": "batch", "head_readout": "membrane"}, classes=3)
    rows = {row["name"]: row for row in estimate_energy(model, torch.rand(1, 1, 8, 8))["per_layer"]}
    # the head reads continuous membrane potentials, once on their time average (it is linear, so the logits are
    # the per-step logits' mean): (3 classes x 8x8) outputs x 4 input channels, not 2 steps' worth
    assert rows["decoder.head"]["macs"] == 3 * 64 * 4 and rows["decoder.head"]["acs"] == 0
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), model.forward_steps(x).mean(0), atol=1e-6)
    assert [name for name, row in rows.items() if row["macs"]] == ["encoder.stages.0.conv1", "decoder.head"]
