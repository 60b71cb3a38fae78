"""GIRNet's three modules, each an encoder (from ``make_encoder``) with a small U-Net decoder.

- ``mask_generator``: pathological image -> lesion logits (where correspondence is absent).
- ``inpainter``: (image with a hole, hole mask, atlas warped into the patient) -> filled image.
- ``velocity_net``: (moving, fixed) -> stationary velocity. Made symmetric SYM-Net style by
  antisymmetrising, v = (f(m, x) - f(x, m)) / 2, so exp(v) and exp(-v) are the forward and inverse maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torch import nn

from medsuite.backbones import make_encoder
from medsuite.backbones.base import EncoderSpec
from medsuite.registration.config import RegistrationConfig
from medsuite.registration.fields import integrate, warp


class EncoderDecoder(nn.Module):
    """Backbone encoder + upsample/concat/conv decoder back to the input grid, then a 1x1x1 head."""

    def __init__(self, backbone: EncoderSpec, in_channels: int, out_channels: int, decoder_channels: list[int], zero_head: bool = False):
        super().__init__()
        self.encoder = make_encoder(backbone, in_channels=in_channels)
        dims = backbone.spatial_dims
        skips = self.encoder.out_channels[::-1]  # coarse first
        blocks, previous = [], skips[0]
        for skip, channels in zip(skips[1:], decoder_channels):
            blocks.append(Convolution(dims, previous + skip, channels, kernel_size=3, norm=None, act="leakyrelu"))
            previous = channels
        self.decoder = nn.ModuleList(blocks)
        self.head = Convolution(dims, previous, out_channels, kernel_size=1, conv_only=True)
        if zero_head:  # a velocity net starts at the identity transform
            nn.init.zeros_(self.head.conv.weight)
            nn.init.zeros_(self.head.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self._forward(x)
        # Inference: CPU 3D convolutions sum in an order that depends on the thread count, so a trained model's
        # field would differ in its last bits between --threads 1 and 2. One thread keeps the bytes (issue #14).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._forward(x)
        finally:
            torch.set_num_threads(threads)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)[::-1]
        y = features[0]
        for block, skip in zip(self.decoder, features[1:]):
            y = F.interpolate(y, size=skip.shape[2:], mode="trilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        if y.shape[2:] != x.shape[2:]:
            y = F.interpolate(y, size=x.shape[2:], mode="trilinear", align_corners=False)
        return self.head(y)


class GIRNet(nn.Module):
    def __init__(self, config: RegistrationConfig):
        super().__init__()
        spec, decoder = config.backbone, list(config.decoder_channels)
        self.integration_steps = config.instance.integration_steps
        self.resolution_mm = config.train.resolution_mm  # the grid it learned on: a warm start runs there
        self.mask_generator = EncoderDecoder(spec, 1, 1, decoder)
        self.inpainter = EncoderDecoder(spec, 3, 1, decoder)
        self.velocity_net = EncoderDecoder(spec, 2, 3, decoder, zero_head=True)

    def forward(self, pair: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One pass of all three modules on a (B, 2, X, Y, Z) moving/fixed stack: (velocity, lesion logits,
        inpainted moving with the atlas warped into its space as guide). What a warm start runs once."""
        moving, fixed = pair[:, :1], pair[:, 1:]
        velocity = self.velocity(moving, fixed)
        logits = self.lesion_logits(moving)
        guide = warp(fixed, integrate(-velocity, self.integration_steps))
        return velocity, logits, self.inpaint(moving, torch.sigmoid(logits), guide)

    def velocity(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        forward = self.velocity_net(torch.cat([moving, fixed], dim=1))
        backward = self.velocity_net(torch.cat([fixed, moving], dim=1))
        return 0.5 * (forward - backward)

    def flows(self, velocity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(forward, inverse) voxel displacements by scaling and squaring."""
        return integrate(velocity, self.integration_steps), integrate(-velocity, self.integration_steps)

    def lesion_logits(self, moving: torch.Tensor) -> torch.Tensor:
        return self.mask_generator(moving)

    def inpaint(self, image: torch.Tensor, hole: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """Fill ``hole`` of ``image`` guided by the atlas in the patient's space; outside the hole, the image."""
        filled = self.inpainter(torch.cat([image * (1 - hole), hole, guide], dim=1))
        return image * (1 - hole) + filled * hole
