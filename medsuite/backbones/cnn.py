"""The plain convolutional encoder: per stage a (strided) conv block and a residual unit (MONAI blocks)."""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

from medsuite.backbones.base import Encoder, EncoderSpec, register_backbone


class CNNEncoder(Encoder):
    def __init__(self, spec: EncoderSpec):
        super().__init__()
        self.spec = spec
        self.out_channels = list(spec.channels)
        self.strides = list(spec.strides)
        stages, previous = [], spec.in_channels
        for channels, stride in zip(spec.channels, spec.strides):
            stages.append(
                nn.Sequential(
                    Convolution(spec.spatial_dims, previous, channels, strides=stride, kernel_size=3, norm=spec.norm, act="leakyrelu", dropout=spec.dropout),
                    ResidualUnit(spec.spatial_dims, channels, channels, subunits=1, norm=spec.norm, act="leakyrelu", dropout=spec.dropout),
                )
            )
            previous = channels
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


@register_backbone("cnn")
def build_cnn(spec: EncoderSpec) -> Encoder:
    return CNNEncoder(spec)
