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


def test_blank_input_costs_macs_unless_the_layer_is_marked_spike_fed():
    # a blank image through a CNN still costs every multiply: 4 x 5x5 outputs x 9 taps = 900 MACs
    conv = nn.Conv2d(1, 4, 3, padding=1)
    assert estimate_energy(conv, torch.zeros(1, 1, 5, 5))["macs"] == 900
    # a spiking layer whose input is silent costs nothing
    conv.energy_input = "spike"
    silent = estimate_energy(conv, torch.zeros(1, 1, 5, 5))
    assert silent["macs"] == 0 and silent["acs"] == 0 and silent["per_layer"][0]["spike_input"]


def test_spiking_backbones_mark_every_layer_behind_a_neuron():
    from medsuite.backbones import make_encoder
    from medsuite.backbones.conversion import convert_to_snn
    from medsuite.backbones.spiking_unet import SpikingUNet

    spec = {"spatial_dims": 2, "in_channels": 1, "channels": [4, 8], "strides": [1, 2], "norm": "batch"}
    model = SpikingUNet({**spec, "kind": "snn", "time_steps": 2}, classes=3)
    converted = convert_to_snn(make_encoder(spec).eval(), [torch.rand(2, 1, 8, 8)], time_steps=2)
    for net in (model, converted):
        marks = [getattr(m, "energy_input", None) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        assert marks[0] is None and set(marks[1:]) == {"spike"}  # only the image-reading conv is analog
    # a blank image: the first conv is charged in full at each of the 2 steps, 2 x (4 x 8x8) x 9 MACs
    assert estimate_energy(model, torch.zeros(1, 1, 8, 8))["macs"] == 2 * 4 * 64 * 9


def test_every_convention_priced_from_hand_counted_operations():
    from medsuite.backbones.energy import CONVENTIONS

    # analog conv 1->2, k=3, pad 1 on 4x4: 2*16 outputs x 9 = 288 MACs; memory: 288 weights + 16 inputs + 32 outputs
    analog = estimate_energy(nn.Conv2d(1, 2, 3, padding=1), torch.randn(1, 1, 4, 4) + 5.0)
    assert (analog["macs"], analog["acs"], analog["memory_accesses"], analog["neuron_updates"]) == (288, 0, 336, 0)
    by = analog["energy_mj_by_convention"]
    assert set(by) == set(CONVENTIONS) == set(analog["conventions"])
    assert by["45nm"] == pytest.approx(288 * 4.6e-9) == analog["energy_mj"]
    assert by["darwinwafer"] == pytest.approx(288 * 4.6e-9)  # a CNN layer does not run on the neuromorphic chip
    assert by["45nm+memory"] == pytest.approx((288 * 4.6 + 336 * 5.0) * 1e-9)
    # two spikes into conv 1->4 on 5x5: 52 synaptic operations (see above); memory: 52 weights + 2 events + 100 outputs
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = x[0, 0, 0, 0] = 1.0
    spiking = estimate_energy(nn.Conv2d(1, 4, 3, padding=1), x)
    assert (spiking["acs"], spiking["memory_accesses"]) == (52, 154)
    by = spiking["energy_mj_by_convention"]
    assert by["45nm"] == pytest.approx(52 * 0.9e-9)
    assert by["darwinwafer"] == pytest.approx(52 * 4.9e-9)
    assert by["45nm+memory"] == pytest.approx((52 * 0.9 + 154 * 5.0) * 1e-9)


def test_neuron_updates_cost_two_memory_accesses_each():
    pytest.importorskip("snntorch")
    from medsuite.backbones.energy import combine_estimates
    from medsuite.backbones.snn import LIF, neuron_options

    lif = LIF(**neuron_options({}))
    result = estimate_energy(lif, torch.rand(3, 1, 2, 4, 4))  # T=3 steps of 2x4x4 neurons: 96 updates
    assert (result["macs"], result["acs"], result["neuron_updates"]) == (0, 0, 96)
    assert result["energy_mj_by_convention"]["45nm+memory"] == pytest.approx(2 * 96 * 5.0e-9)
    both = combine_estimates([result, result])
    assert both["neuron_updates"] == 192 and both["energy_mj_by_convention"]["45nm+memory"] == pytest.approx(4 * 96 * 5.0e-9)


def test_a_hand_counted_tiny_spiking_network_under_every_convention():
    """analog 1x1 conv -> LIF -> spike-fed 3x3 conv, one time step, on a 3x3 image whose centre and corner fire."""
    pytest.importorskip("snntorch")
    from medsuite.backbones.energy import CONVENTIONS
    from medsuite.backbones.snn import LIF, neuron_options

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 1, 1, bias=False)
            self.conv1.weight.data.fill_(1.0)  # identity: the image is the LIF's input current
            self.lif = LIF(**neuron_options({}))  # threshold 1: pixels at 2.0 fire, pixels at 0.5 do not
            self.conv2 = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            spikes, _ = self.lif(self.conv1(x)[None])
            return self.conv2(spikes[0])

    image = torch.full((1, 1, 3, 3), 0.5)
    image[0, 0, 1, 1] = image[0, 0, 0, 0] = 2.0
    result = estimate_energy(Tiny(), image)
    # by hand:
    # conv1 (analog): 9 outputs x 1 input channel x 1 tap = 9 MACs; memory 9 weights + 9 inputs + 9 outputs = 27
    # lif: 9 neuron updates (2 memory accesses each: 18); 2 spikes (centre, corner)
    # conv2 (spike-fed): the centre spike reaches 9 taps x 2 channels = 18 synapses, the corner one 4 x 2 = 8: 26 ACs;
    #   memory 26 weights + 2 events + 18 outputs = 46
    # 45nm: 9 x 4.6 + 26 x 0.9 = 64.8 pJ; darwinwafer: 9 x 4.6 + 26 x 4.9 = 168.8 pJ;
    # 45nm+memory: 64.8 + (27 + 46 + 18) x 5 = 519.8 pJ
    assert (result["macs"], result["acs"], result["memory_accesses"], result["neuron_updates"]) == (9, 26, 73, 9)
    by = result["energy_mj_by_convention"]
    assert set(by) == set(CONVENTIONS)
    assert by["45nm"] == pytest.approx(64.8e-9) == result["energy_mj"]
    assert by["darwinwafer"] == pytest.approx(168.8e-9)
    assert by["45nm+memory"] == pytest.approx(519.8e-9)
    assert "estimate, not a measurement" in result["note"] and set(result["conventions"]) == set(CONVENTIONS)
