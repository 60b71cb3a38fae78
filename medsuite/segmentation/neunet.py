"""neU-Net (Yang et al. 2023, "More complex encoder is not all you need"): a plain U-Net whose encoder
receives multi-scale Haar wavelet bands at every downsampled scale, and whose decoder upsamples by
sub-pixel convolution (conv to r^d x channels, then pixel shuffle) instead of transposed convolution.

The encoder comes from ``medsuite.backbones.make_encoder`` (kept as ``self.encoder`` so pretrained
encoder checkpoints load into it). For the plain CNN encoder the bands are added to each strided
stage's output, so deeper stages see them (the paper's design); for any other backbone the encoder
runs as a black box and the bands are fused into its outputs (skips and bottleneck).

``decoder="spiking"`` (a spiking neU-Net; needs the ``snn`` encoder) replaces the analog decoder by the
spike-driven one of ``medsuite.backbones.spiking_unet``: the bands then enter each strided stage as an extra input
current into its first LIF (direct encoding, like the image into the first conv), so every stage hands binary
spikes to the decoder, and the head is a sub-pixel conv on the finest block's spikes (or membrane potentials,
``head_readout``) that also undoes a strided first stage. ``forward_steps`` gives the per-step logits for TET.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, SubpixelUpsample, UnetBasicBlock
from monai.networks.layers import Conv
from torch import nn

from medsuite.backbones import CNNEncoder, make_encoder
from medsuite.errors import MedsuiteError
from medsuite.segmentation.wavelets import haar_pyramid


def per_axis(stride: int | Sequence[int], dims: int) -> tuple[int, ...]:
    return tuple(stride) if isinstance(stride, Sequence) else (int(stride),) * dims


class AnisotropicSubpixelUpsample(nn.Module):
    """Sub-pixel upsampling by per-axis factors such as (1, 2, 2); MONAI's block takes one integer."""

    def __init__(self, dims: int, in_channels: int, out_channels: int, factors: Sequence[int]):
        super().__init__()
        self.factors = tuple(factors)
        self.conv = Conv[Conv.CONV, dims](in_channels, out_channels * math.prod(self.factors), kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        b, dims = y.shape[0], len(self.factors)
        spatial = y.shape[2:]
        y = y.reshape(b, -1, *self.factors, *spatial)  # (B, C, r1..rd, s1..sd)
        order = [0, 1] + [i for axis in range(dims) for i in (2 + dims + axis, 2 + axis)]
        return y.permute(order).reshape(b, y.shape[1], *(s * r for s, r in zip(spatial, self.factors)))


def subpixel_upsample(dims: int, in_channels: int, out_channels: int, factors: Sequence[int]) -> nn.Module:
    if all(f == 1 for f in factors):
        return Convolution(dims, in_channels, out_channels, kernel_size=1, conv_only=True)
    if len(set(factors)) == 1:
        return SubpixelUpsample(dims, in_channels, out_channels, scale_factor=factors[0])
    return AnisotropicSubpixelUpsample(dims, in_channels, out_channels, factors)


def _crop_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x[(slice(None), slice(None), *(slice(0, s) for s in like.shape[2:]))]


class NeUNet(nn.Module):
    def __init__(self, backbone: dict, out_channels: int, bands: str = "all", decoder: str = "analog", head_readout: str = "spikes"):
        super().__init__()
        self.encoder = make_encoder(backbone)
        spec = self.encoder.spec if hasattr(self.encoder, "spec") else None
        self.dims = spec.spatial_dims if spec is not None else int(backbone.get("spatial_dims", 2))
        self.factors = [per_axis(s, self.dims) for s in self.encoder.strides]
        self.bands = bands
        channels = list(self.encoder.out_channels)
        in_channels = int(backbone.get("in_channels", 1))
        self.proj = nn.ModuleDict()
        for stage, factors in enumerate(self.factors):
            if any(f > 1 for f in factors):
                self.proj[str(stage)] = Conv[Conv.CONV, self.dims](in_channels * self._band_count(factors), channels[stage], kernel_size=1)
        self.spiking = decoder == "spiking"
        if self.spiking:
            self._spiking_decoder(channels, out_channels, head_readout)
            return
        self.up = nn.ModuleList(subpixel_upsample(self.dims, channels[i + 1], channels[i], self.factors[i + 1]) for i in range(len(channels) - 1))
        self.fuse = nn.ModuleList(
            UnetBasicBlock(self.dims, 2 * channels[i], channels[i], kernel_size=3, stride=1, norm_name="instance", act_name="leakyrelu") for i in range(len(channels) - 1)
        )
        # a strided first stage (cheaper on the CPU) is undone by one more sub-pixel step before the head
        self.head = nn.Sequential(subpixel_upsample(self.dims, channels[0], channels[0], self.factors[0]), Conv[Conv.CONV, self.dims](channels[0], out_channels, kernel_size=1))

    def _spiking_decoder(self, channels: list[int], out_channels: int, head_readout: str) -> None:
        from medsuite.backbones.snn import neuron_options
        from medsuite.backbones.spiking_unet import SpikingDecoder

        if not hasattr(self.encoder, "forward_steps"):
            raise MedsuiteError("model.decoder", f"a spiking decoder needs a spiking encoder, got backbone kind {self.encoder.spec.kind!r}", "set backbone kind: snn")
        spec = self.encoder.spec
        head = subpixel_upsample(self.dims, channels[0], out_channels, self.factors[0])
        self.decoder = SpikingDecoder(
            self.dims, channels, out_channels, spec.norm, neuron_options(spec.model_extra or {}),
            spike_features=self.encoder.readout == "rate", head_readout=head_readout, head=head,
        )

    def _band_count(self, factors: Sequence[int]) -> int:
        n = 2 ** sum(f == 2 for f in factors)
        return {"all": n, "approx": 1, "detail": n - 1}[self.bands]

    def _select(self, bands: list[torch.Tensor]) -> torch.Tensor:
        chosen = {"all": bands, "approx": bands[:1], "detail": bands[1:]}[self.bands]
        return torch.cat(chosen, dim=1)

    def wavelet_inputs(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Sub-bands at each strided stage's resolution, keyed by stage index."""
        pyramid = haar_pyramid(x, self.factors)
        return {stage: self._select(bands) for stage, bands in enumerate(pyramid) if str(stage) in self.proj}

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        waves = self.wavelet_inputs(x)
        if isinstance(self.encoder, CNNEncoder):
            features, h = [], x
            for stage, block in enumerate(self.encoder.stages):
                h = block(h)
                if stage in waves:
                    h = h + self.proj[str(stage)](waves[stage])
                features.append(h)
            return features
        return [f + self.proj[str(s)](waves[s]) if s in waves else f for s, f in enumerate(self.encoder(x))]

    def band_convs(self) -> dict[int, nn.Module]:
        """Per strided stage, its wavelet input (the Haar bands through ``proj``) as one conv of the image whose
        kernel and stride are the stage's cumulative downsampling: the same linear map, for exporters without a
        Haar node (NIR). Exact on images whose size that factor divides (odd sizes pad differently)."""
        in_channels = self.encoder.spec.in_channels
        convs: dict[int, nn.Module] = {}
        for key, proj in self.proj.items():
            stage = int(key)
            cell = tuple(math.prod(f[axis] for f in self.factors[: stage + 1]) for axis in range(self.dims))
            n = in_channels * math.prod(cell)
            deltas = torch.eye(n, dtype=proj.weight.dtype, device=proj.weight.device).reshape(n, in_channels, *cell)
            with torch.no_grad():
                bands = self.wavelet_inputs(deltas)[stage].reshape(n, -1)  # each input pixel of one cell -> its band values
                weight = proj.weight.reshape(proj.out_channels, -1) @ bands.T
            conv = Conv[Conv.CONV, self.dims](in_channels, proj.out_channels, kernel_size=cell, stride=cell)
            conv.weight.data = weight.reshape(proj.out_channels, in_channels, *cell)
            conv.bias.data = proj.bias.detach().clone()
            convs[stage] = conv
        return convs

    def encode_steps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Spiking neU-Net: per stage the spikes (or membranes) at every step, the bands as input currents."""
        return self.encoder.forward_steps(x, {s: self.proj[str(s)](w) for s, w in self.wavelet_inputs(x).items()})

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """Spiking neU-Net: per-step logits ``(T, B, classes, *spatial)`` on the input grid (TET supervises each)."""
        logits = self.decoder.forward_steps(self.encode_steps(x))
        return logits[(slice(None), slice(None), slice(None), *(slice(0, s) for s in x.shape[2:]))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.spiking:
            return _crop_to(self.decoder(self.encode_steps(x)), x)  # rate decoding: the time average of the per-step logits
        features = self.encode(x)
        h = features[-1]
        for i in reversed(range(len(features) - 1)):
            skip = features[i]
            h = self.fuse[i](torch.cat([_crop_to(self.up[i](h), skip), skip], dim=1))
        return _crop_to(self.head(h), x)


__all__ = ["AnisotropicSubpixelUpsample", "NeUNet", "subpixel_upsample"]
