"""The multitask pretext network: a 2D U-Net whose decoder draws line heatmaps and whose bottleneck regresses slice location.

The encoder comes from ``make_encoder`` and is saved alone, so the segmentation pipeline's
``--init`` can load exactly these weights into its own ``model.encoder``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution, UpSample
from torch import nn

from medsuite.backbones import Encoder, EncoderSpec, make_encoder


def _is_unit(stride: int | Sequence[int]) -> bool:
    return all(s == 1 for s in (stride if isinstance(stride, Sequence) else [stride]))


class UNetDecoder(nn.Module):
    """Upsample the coarsest features stage by stage, concatenating each finer stage (skip connections)."""

    def __init__(self, encoder: Encoder, spatial_dims: int, out_channels: int, norm: str = "instance"):
        super().__init__()
        channels, strides = list(encoder.out_channels), list(encoder.strides)
        self.ups, self.blocks = nn.ModuleList(), nn.ModuleList()
        for level in range(len(channels) - 1, 0, -1):
            self.ups.append(UpSample(spatial_dims, channels[level], channels[level - 1], scale_factor=strides[level], mode="deconv"))
            self.blocks.append(Convolution(spatial_dims, 2 * channels[level - 1], channels[level - 1], kernel_size=3, norm=norm, act="leakyrelu"))
        # A strided first stage leaves the finest features below input resolution.
        self.final_up = UpSample(spatial_dims, channels[0], channels[0], scale_factor=strides[0], mode="deconv") if not _is_unit(strides[0]) else nn.Identity()
        self.head = Convolution(spatial_dims, channels[0], out_channels, kernel_size=1, conv_only=True)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        for up, block, skip in zip(self.ups, self.blocks, reversed(features[:-1])):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(self.final_up(x))


class PretextNet(nn.Module):
    """encoder -> (heatmaps (B, K, H, W), location (B,), rotation logits (B, 4) or None) for task 1, task 2 and,
    with ``rotation``, the generic baseline (Gidaris et al. 2018: which multiple of 90 degrees the slice was turned)."""

    def __init__(self, backbone: EncoderSpec | dict, heatmap_channels: int = 4, hidden: int = 64, rotation: bool = False):
        super().__init__()
        self.encoder = make_encoder(backbone)
        dims = self.encoder.spec.spatial_dims
        self.decoder = UNetDecoder(self.encoder, dims, heatmap_channels, norm=self.encoder.spec.norm)
        pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
        width = self.encoder.out_channels[-1]
        self.location_head = nn.Sequential(pool, nn.Flatten(), nn.Linear(width, hidden), nn.LeakyReLU(), nn.Linear(hidden, 1), nn.Sigmoid())
        self.rotation_head = nn.Sequential(pool, nn.Flatten(), nn.Linear(width, hidden), nn.LeakyReLU(), nn.Linear(hidden, 4)) if rotation else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        features = self.encoder(x)
        rotation = self.rotation_head(features[-1]) if self.rotation_head is not None else None
        return self.decoder(features), self.location_head(features[-1])[:, 0], rotation
