"""Energy estimate: counts match a hand-computed tiny network."""

import pytest
import torch
from torch import nn

from medsuite.backbones.energy import CONVENTION, estimate_energy


def test_analog_conv_and_linear_macs_hand_computed():
    # conv 2->3, k=3, pad 1 on 4x4: 3*4*4 outputs x (2*9) = 864 MACs; linear 48->5: 5 x 48 = 240 MACs
    net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Flatten(), nn.Linear(48, 5))
    result = estimate_energy(net, torch.randn(1, 2, 4, 4) + 5.0)
    assert result["macs"] == 864 + 240
    assert result["acs"] == 0
    assert result["energy_mj"] == pytest.approx((864 + 240) * 4.6e-9)
    assert result["convention"] == CONVENTION and "estimate" in result["note"]
    assert [row["macs"] for row in result["per_layer"]] == [864, 240]


def test_spike_input_counts_exact_fan_out():
    # one spike in the centre of 5x5 reaches all 9 taps x 4 output channels = 36 synapses;
    # one in the corner only 4 taps (zero padding) x 4 = 16; linear: 2 spikes x 7 outputs = 14
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    x[0, 0, 0, 0] = 1.0
    conv = estimate_energy(nn.Conv2d(1, 4, 3, padding=1), x)
    assert conv["acs"] == 52 and conv["macs"] == 0
    assert conv["per_layer"][0]["input_rate"] == pytest.approx(2 / 25)
    linear = estimate_energy(nn.Linear(25, 7), x.reshape(1, 25) * 0.5)  # scaled spikes count as spikes
    assert linear["acs"] == 14
    assert linear["energy_mj"] == pytest.approx(14 * 0.9e-9)


def test_hooks_charge_every_call_and_restore_mode():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x) + self.fc(x)

    model = Twice().train()
    result = estimate_energy(model, torch.tensor([[1.0, 2.0, 3.0]]))
    assert result["per_layer"][0]["calls"] == 2 and result["macs"] == 2 * 6
    assert model.training
