"""Fully spiking U-Net: the ``snn`` encoder plus a spike-driven decoder, so that every synaptic layer but the
first (which reads the analog image: direct encoding) is fed binary spikes and costs accumulates, not MACs.

This is the Spiking U-Net layout of the SNN segmentation literature (e.g. Kim et al., "Beyond classification:
directly training spiking neural networks for semantic segmentation", 2022; Spike-driven U-Nets): the decoder
keeps the time axis. Per skip level, the deeper spikes are upsampled by nearest neighbour (still binary),
concatenated with the skip stage's spikes (binary), and pass a 3x3 conv -> norm -> LIF. A 1x1 head reads the
last block's spikes at every time step; the prediction is the time average of those logits (rate decoding), and
``forward_steps`` keeps them per step for TET. Spec extra key ``head_readout: membrane`` lets the head read
the last block's membrane potentials instead (then the head, and only it, is charged MACs, once on the
time-averaged membranes at inference). Norms act per time step (time folded into the batch), so batch
norm folds into the conv weights at inference and the spike-driven property holds.

The decoder runs at the largest T among the encoder stages; stages with fewer steps (mixed time-step training)
have their spikes repeated, which keeps them binary. Neuron options come from the encoder spec's extra keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_norm_layer
from torch import nn

from medsuite.backbones.base import EncoderSpec, make_encoder
from medsuite.backbones.snn import LIF, fold, neuron_options, resample_time, unfold
from medsuite.errors import MedsuiteError


class SpikingUpBlock(nn.Module):
    """Upsample deep spikes to the skip's grid, concatenate, conv -> norm -> LIF; all over (T, B, C, ...)."""

    def __init__(self, dims: int, deep: int, skip: int, out: int, norm: str, neuron: dict, spike_input: bool):
        super().__init__()
        self.conv = Conv[Conv.CONV, dims](deep + skip, out, kernel_size=3, padding=1, bias=False)
        if spike_input:
            self.conv.energy_input = "spike"
        self.norm = get_norm_layer(norm, spatial_dims=dims, channels=out)
        self.lif = LIF(**neuron)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (spikes, membrane potentials), both (T, B, out, ...)."""
        steps = skip.shape[0]
        up = F.interpolate(fold(deep), size=skip.shape[3:], mode="nearest")  # nearest: spikes stay binary
        current = self.norm(self.conv(torch.cat([up, fold(skip)], 1)))
        return self.lif(unfold(current, steps))


class SpikingDecoder(nn.Module):
    """Spike-driven U-Net decoder over an encoder's per-stage spike trains (finest first)."""

    def __init__(
        self, spatial_dims: int, channels: Sequence[int], classes: int, norm: str = "batch", neuron: dict | None = None,
        spike_features: bool = True, head_readout: str = "spikes", head: nn.Module | None = None,
    ):
        """``spike_features``: the encoder hands over spikes (rate readout), not membrane potentials.
        ``head_readout``: the 1x1 head reads the last block's "spikes" (accumulates) or its "membrane" potentials
        (continuous, so the head alone costs MACs; a smoother output and gradient).
        ``head``: another head on the finest block's ``channels[0]`` (neU-Net: a sub-pixel head that also undoes
        a strided first stage); by default a 1x1 conv."""
        super().__init__()
        if head_readout not in ("spikes", "membrane"):
            raise MedsuiteError("backbone", f"spiking U-Net: head_readout {head_readout!r} not supported", "head_readout: spikes | membrane")
        self.head_readout = head_readout
        neuron = neuron or neuron_options({})
        channels = list(channels)
        self.blocks = nn.ModuleList(
            SpikingUpBlock(spatial_dims, deep, skip, skip, norm, neuron, spike_input=spike_features) for deep, skip in zip(channels[:0:-1], channels[-2::-1])
        )
        self.head = head if head is not None else Conv[Conv.CONV, spatial_dims](channels[0], classes, kernel_size=1)
        if head_readout == "spikes":
            for layer in self.head.modules():
                if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                    layer.energy_input = "spike"

    def _last_block(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The finest block's (spikes, membrane potentials), both ``(T, B, channels[0], ...)``."""
        steps = max(f.shape[0] for f in features)
        features = [resample_time(f, steps) for f in features]  # only ever repeats: binary stays binary
        h = mem = features[-1]
        for block, skip in zip(self.blocks, features[-2::-1]):
            h, mem = block(h, skip)
        return h, mem

    def forward_steps(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """``features``: per stage ``(T_stage, B, C, ...)`` -> per-step logits ``(T, B, classes, ...)``."""
        spikes, mem = self._last_block(features)
        return unfold(self.head(fold(spikes if self.head_readout == "spikes" else mem)), spikes.shape[0])

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """The time average of the per-step logits. A membrane head is linear, so it reads the time-averaged
        membranes once: the same logits at 1/T of its MACs (a spike head keeps per-step binary input: accumulates)."""
        if self.head_readout == "membrane":
            return self.head(self._last_block(features)[1].mean(0))
        return self.forward_steps(features).mean(0)


class SpikingUNet(nn.Module):
    """``make_encoder(spec)`` (a spiking kind) + :class:`SpikingDecoder`: image -> time-averaged logits.

    ``.encoder`` follows the encoder checkpoint contract; ``forward_steps(x)`` gives per-step logits for TET.
    """

    def __init__(self, spec: EncoderSpec | dict, classes: int):
        super().__init__()
        self.encoder = make_encoder(spec)
        if not hasattr(self.encoder, "forward_steps"):
            raise MedsuiteError("backbone", f"a spiking U-Net needs a spiking encoder, got kind {self.encoder.spec.kind!r}", "use backbone kind: snn")
        spec = self.encoder.spec
        extra = spec.model_extra or {}
        self.decoder = SpikingDecoder(
            spec.spatial_dims, spec.channels, classes, spec.norm, neuron_options(extra),
            spike_features=getattr(self.encoder, "readout", "rate") == "rate", head_readout=extra.get("head_readout", "spikes"),
        )

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder.forward_steps(self.encoder.forward_steps(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder.forward_steps(x))
