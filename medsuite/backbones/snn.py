"""Spiking encoder (kind ``snn``): the CNN encoder's stage layout with leaky integrate-and-fire neurons.

Per stage: a (strided) conv -> norm -> LIF, then a residual conv -> norm whose current is added to the
stage's first spikes before a second LIF (a membrane shortcut keeps every conv spike-fed, so synaptic
operations are accumulates). Neurons are snntorch ``Leaky`` cells (surrogate-gradient spikes). Multi-step
mode: the input is presented unchanged at every time step (direct encoding, the first conv is analog); time
is folded into the batch for convs/norms and unrolled for the neurons. Membranes start at zero on every
call, so the encoder is stateless between samples.

Outputs follow the Encoder contract: per stage the time-averaged spike rate (``readout: rate``) or the
time-averaged membrane potential (``readout: membrane``), shape ``(B, C, *spatial)``.
``forward_steps`` keeps the time axis (``(T, B, C, ...)``) for per-time-step losses such as TET.

Spec extra keys: ``time_steps`` (4), ``beta`` (membrane decay, 0.5), ``threshold`` (1.0),
``readout`` ("rate"), ``surrogate`` ("atan" | "fast_sigmoid" | "sigmoid" | "triangular"),
``reset`` ("subtract" | "zero").
"""

from __future__ import annotations

from collections.abc import Sequence

import snntorch
import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_norm_layer
from snntorch import surrogate
from torch import nn

from medsuite.backbones.base import Encoder, EncoderSpec, register_backbone
from medsuite.errors import MedsuiteError

_SURROGATES = {"atan": surrogate.atan, "fast_sigmoid": surrogate.fast_sigmoid, "sigmoid": surrogate.sigmoid, "triangular": surrogate.triangular}


def fold(x: torch.Tensor) -> torch.Tensor:
    """(T, B, ...) -> (T*B, ...): time into batch, for stateless layers."""
    return x.reshape(-1, *x.shape[2:])


def unfold(x: torch.Tensor, steps: int) -> torch.Tensor:
    return x.reshape(steps, -1, *x.shape[1:])


def resample_time(x: torch.Tensor, steps: int) -> torch.Tensor:
    """Change the number of time steps between stages (mixed time steps): repeat to grow, average to shrink."""
    current = x.shape[0]
    if current == steps:
        return x
    if steps > current:
        index = torch.arange(steps, device=x.device) * current // steps
        return x[index]
    flat = x.reshape(current, -1).transpose(0, 1).unsqueeze(0)
    return F.adaptive_avg_pool1d(flat, steps).squeeze(0).transpose(0, 1).reshape(steps, *x.shape[1:])


def neuron_options(extra: dict) -> dict:
    """LIF keyword arguments from spec extra keys (``beta``, ``threshold``, ``surrogate``, ``reset``)."""
    name = extra.get("surrogate", "atan")
    if name not in _SURROGATES:
        raise MedsuiteError("backbone", f"snn: surrogate {name!r} not supported", f"surrogate: {' | '.join(_SURROGATES)}")
    return {"beta": float(extra.get("beta", 0.5)), "threshold": float(extra.get("threshold", 1.0)), "spike_grad": _SURROGATES[name](), "reset": extra.get("reset", "subtract")}


class LIF(nn.Module):
    """Multi-step LIF layer: unrolls an snntorch ``Leaky`` cell over the leading time axis from a zero membrane."""

    energy_neurons = True  # the energy estimate counts one membrane update per element of the input current

    def __init__(self, beta: float, threshold: float, spike_grad, reset: str):
        super().__init__()
        self.cell = snntorch.Leaky(beta=beta, threshold=threshold, spike_grad=spike_grad, reset_mechanism=reset)

    def forward(self, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not torch.jit.is_tracing():
            return self._unroll(current)
        # tracing (the TorchScript model.ts of a bundle) cannot record the surrogate's autograd Function; its
        # forward is the Heaviside step, so the traced network computes the same spikes with that step
        surrogate, self.cell.spike_grad = self.cell.spike_grad, _heaviside
        try:
            return self._unroll(current)
        finally:
            self.cell.spike_grad = surrogate

    def _unroll(self, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mem = torch.zeros_like(current[0])  # fresh membrane every call: no state leaks between samples
        spikes, mems = [], []
        for step in current:
            spk, mem = self.cell(step, mem)
            spikes.append(spk)
            mems.append(mem)
        return torch.stack(spikes), torch.stack(mems)


def _heaviside(x: torch.Tensor) -> torch.Tensor:
    """The forward pass of every snntorch surrogate: a spike where the membrane exceeds the threshold."""
    return (x > 0).to(x.dtype)


class SpikingStage(nn.Module):
    def __init__(self, dims: int, in_ch: int, out_ch: int, stride, norm: str, dropout: float, neuron: dict, spike_input: bool):
        super().__init__()
        conv = Conv[Conv.CONV, dims]
        self.conv1 = conv(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)
        if spike_input:  # every stage but the first reads the previous stage's spikes (for the energy estimate)
            self.conv1.energy_input = "spike"
        self.norm1 = get_norm_layer(norm, spatial_dims=dims, channels=out_ch)
        self.lif1 = LIF(**neuron)
        self.conv2 = conv(out_ch, out_ch, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv2.energy_input = "spike"
        self.norm2 = get_norm_layer(norm, spatial_dims=dims, channels=out_ch)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.lif2 = LIF(**neuron)

    def forward(self, x: torch.Tensor, current: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (T, B, C, ...) spikes (or the analog image) -> (spikes, membranes), both (T, B, C', ...).
        ``current``: an extra input current ``(B, C', ...)`` into the first LIF at every step (neU-Net's wavelet bands)."""
        steps = x.shape[0]
        drive = unfold(self.norm1(self.conv1(fold(x))), steps)
        s1, _ = self.lif1(drive if current is None else drive + current)
        residual = self.drop(self.norm2(self.conv2(fold(s1))))
        return self.lif2(unfold(residual, steps) + s1)  # membrane shortcut: the add is a current, not a synapse


class SNNEncoder(Encoder):
    def __init__(self, spec: EncoderSpec):
        super().__init__()
        extra = spec.model_extra or {}
        self.spec = spec
        self.out_channels = list(spec.channels)
        self.strides = list(spec.strides)
        self.readout = extra.get("readout", "rate")
        if self.readout not in ("rate", "membrane"):
            raise MedsuiteError("backbone", f"snn: readout {self.readout!r} not supported", "readout: rate | membrane")
        neuron = neuron_options(extra)
        self.set_time_steps(int(extra.get("time_steps", 4)))
        stages, previous = [], spec.in_channels
        for channels, stride in zip(spec.channels, spec.strides):
            stages.append(SpikingStage(spec.spatial_dims, previous, channels, stride, spec.norm, spec.dropout, neuron, spike_input=bool(stages)))
            previous = channels
        self.stages = nn.ModuleList(stages)

    def set_time_steps(self, steps: int | Sequence[int]) -> None:
        """One T for every stage, or one per stage (mixed time-step training)."""
        steps = [steps] * len(self.spec.channels) if isinstance(steps, int) else list(steps)
        if len(steps) != len(self.spec.channels) or min(steps) < 1:
            raise MedsuiteError("backbone", f"snn: time steps {steps} do not fit {len(self.spec.channels)} stages", "give one positive integer, or one per stage")
        self.stage_steps = steps

    def forward_steps(self, x: torch.Tensor, currents: dict[int, torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Per stage the readout at every time step, ``(T_stage, B, C, *spatial)``. ``currents``: per stage index
        an analog current ``(B, C, ...)`` added to that stage's first LIF input at every step (direct encoding
        of extra inputs, such as neU-Net's wavelet bands; the spikes stay binary)."""
        h = x.unsqueeze(0)  # direct encoding: the analog image is the input current at every step
        features = []
        for index, (stage, steps) in enumerate(zip(self.stages, self.stage_steps)):
            h = resample_time(h, steps) if h.shape[0] > 1 else h.expand(steps, *h.shape[1:])
            spikes, mems = stage(h, (currents or {}).get(index))
            features.append(spikes if self.readout == "rate" else mems)
            h = spikes
        return features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [f.mean(0) for f in self.forward_steps(x)]


@register_backbone("snn")
def build_snn(spec: EncoderSpec) -> Encoder:
    return SNNEncoder(spec)
