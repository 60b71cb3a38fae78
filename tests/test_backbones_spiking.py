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
