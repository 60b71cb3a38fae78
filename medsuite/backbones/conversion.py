"""ANN-to-SNN conversion with layer-wise calibration (after Li et al. 2022, arXiv 2205.10121).

A trained CNN encoder (BatchNorm or no norm: both are affine at inference, so they act per time step) is
copied; each activation becomes an integrate-and-fire neuron whose threshold is a high percentile of that
activation in the ANN, and each stage output gets one more IF neuron (a no-op ReLU in the ANN, it keeps
every conv spike-fed). Neurons start at half threshold and reset by subtraction, so the firing rate x
threshold approximates the ANN activation. Calibration then walks the neurons in execution order and
shifts each one's input by the per-channel mean gap between the ANN activation and the SNN's average
output (bias calibration), so the error of earlier layers is corrected before later layers are fitted.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from medsuite.backbones.base import Encoder
from medsuite.backbones.energy import SYNAPTIC_LAYERS
from medsuite.errors import MedsuiteError

_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.ReLU6)
_PER_SAMPLE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm)


class IFNeuron(nn.Module):
    """Single-step integrate-and-fire neuron with a calibrated input shift; emits ``spike * threshold``."""

    def __init__(self, threshold: float):
        super().__init__()
        self.register_buffer("threshold", torch.tensor(float(threshold)))
        self.register_buffer("shift", torch.zeros(0))  # per-channel, sized on first calibration
        self.mem: torch.Tensor | None = None

    def reset(self) -> None:
        self.mem = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift.numel():
            x = x + self.shift.view(1, -1, *([1] * (x.dim() - 2)))
        if self.mem is None:
            self.mem = torch.full_like(x, float(self.threshold) / 2)
        self.mem = self.mem + x
        spikes = (self.mem >= self.threshold).to(x.dtype)
        self.mem = self.mem - spikes * self.threshold
        return spikes * self.threshold


class ConvertedSNN(Encoder):
    """The converted encoder: runs its stages ``time_steps`` times and returns time-averaged outputs."""

    def __init__(self, stages: nn.ModuleList, out_channels: list[int], strides: list, time_steps: int):
        super().__init__()
        self.stages = stages
        self.out_channels = out_channels
        self.strides = strides
        self.time_steps = time_steps

    def neurons(self) -> list[IFNeuron]:
        return [m for m in self.modules() if isinstance(m, IFNeuron)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        for neuron in self.neurons():
            neuron.reset()
        sums: list[torch.Tensor | float] = [0.0] * len(self.stages)
        for _ in range(self.time_steps):
            h = x
            for index, stage in enumerate(self.stages):
                h = stage(h)
                sums[index] = sums[index] + h
        return [s / self.time_steps for s in sums]


def _replace_activations(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, _ACTIVATIONS):
            setattr(module, name, IFNeuron(1.0))
        else:
            _replace_activations(child)


def _activation_modules(root: nn.Module) -> list[nn.Module]:
    return [m for m in root.modules() if isinstance(m, (*_ACTIVATIONS, IFNeuron))]


@torch.no_grad()
def _record(model: nn.Module, points: Sequence[nn.Module], batches: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Outputs of ``points`` (per batch) while ``model`` runs on ``batches``."""
    recorded: list[list[torch.Tensor]] = [[] for _ in points]
    handles = [p.register_forward_hook(lambda m, i, o, k=k: recorded[k].append(o.detach())) for k, p in enumerate(points)]
    try:
        for batch in batches:
            model(batch)
    finally:
        for h in handles:
            h.remove()
    return recorded


def _channel_mean(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.transpose(0, 1).reshape(t.shape[1], -1) for t in tensors], dim=1).mean(1)


@torch.no_grad()
def convert_to_snn(encoder: Encoder, batches: Sequence[torch.Tensor], time_steps: int = 16, percentile: float = 99.9, calibrate: bool = True) -> ConvertedSNN:
    """Convert a trained CNN encoder (with ``.stages``) into a :class:`ConvertedSNN`, calibrated on ``batches``."""
    if any(isinstance(m, _PER_SAMPLE_NORMS) for m in encoder.modules()):
        raise MedsuiteError("backbone", "ANN-to-SNN conversion needs batch norm (or none): instance/group/layer norm is not linear per time step", 'train the CNN with backbone norm: "batch"')
    ann = copy.deepcopy(encoder).eval()
    ann_stages = nn.ModuleList([nn.Sequential(stage, nn.ReLU()) for stage in ann.stages])  # ReLU: the stage-output neuron's ANN twin
    ann.stages = ann_stages
    snn_stages = copy.deepcopy(ann_stages)
    _replace_activations(snn_stages)
    snn = ConvertedSNN(snn_stages, list(encoder.out_channels), list(encoder.strides), time_steps).eval()
    # in the CNN encoder's layout every synaptic layer but the first (the image's) follows an activation, now a neuron
    for layer in [m for m in snn_stages.modules() if isinstance(m, SYNAPTIC_LAYERS)][1:]:
        layer.energy_input = "spike"

    ann_points = _activation_modules(ann_stages)  # same order as the SNN's neurons (identical structure)
    neurons = snn.neurons()
    targets = _record(ann, ann_points, batches)
    for neuron, acts in zip(neurons, targets):
        flat = torch.cat([a.reshape(-1) for a in acts]).clamp_min(0)
        sample = flat[torch.randperm(flat.numel())[: 1_000_000]] if flat.numel() > 1_000_000 else flat
        neuron.threshold.fill_(max(float(torch.quantile(sample, percentile / 100)), 1e-6))
    if calibrate:
        for k, neuron in enumerate(neurons):
            # the neuron's time-averaged output over T steps = recorded outputs summed per batch / T
            outputs = _record(snn, [neuron], batches)[0]
            per_batch = [torch.stack(outputs[b * time_steps : (b + 1) * time_steps]).mean(0) for b in range(len(batches))]
            gap = _channel_mean([t.clamp_min(0) for t in targets[k]]) - _channel_mean(per_batch)
            neuron.shift = (neuron.shift if neuron.shift.numel() else torch.zeros_like(gap)) + gap
    return snn
