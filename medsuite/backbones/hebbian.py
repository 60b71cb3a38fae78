"""Hebbian encoder (kind ``hebbian``): the CNN stage layout pretrained with SPHeRe's purely local losses.

SPHeRe (arXiv 2510.14810): every block learns on its own. Its input is detached from the block before it
(no gradient crosses blocks), and a light auxiliary projection (1x1 conv, BatchNorm, ReLU, global average
pooling, linear to 256) maps its output to ``z``. The block's loss is ``L_struct + 0.8 * L_orth``:

- ``L_struct``: MSE between the batch cosine-similarity matrix of the block's input (flattened per sample)
  and that of ``z``: the block preserves the neighbourhood structure of what it receives;
- ``L_orth``: MSE between the feature correlation matrix of ``z`` (standardised over the batch) and the
  identity: the projected features are decorrelated, so they do not collapse.

All blocks train at once, each with its own loss. After pretraining the encoder is a normal CNN encoder:
fine-tune it or linear-probe it in any pipeline. Spec extra key: ``pretrain_epochs`` (2), read by
:func:`pretrain_on_images`, which ``Encoder.warm_up`` runs: every trainer calls that hook before its supervised steps.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Norm, Pool
from torch import nn

from medsuite.backbones.base import Encoder, EncoderSpec, register_backbone
from medsuite.backbones.cnn import CNNEncoder

ORTH_WEIGHT = 0.8


class HebbianEncoder(CNNEncoder):
    """A CNN encoder whose stages can also run block-locally (inputs detached) for SPHeRe pretraining."""

    def local_forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per stage ``(input, output)``, each stage fed the detached output of the previous one."""
        pairs = []
        for stage in self.stages:
            x = x.detach()
            y = stage(x)
            pairs.append((x, y))
            x = y
        return pairs

    def warm_up(self, images: torch.Tensor, *, batch_size: int, seed: int) -> list[float]:
        return pretrain_on_images(self, images, batch_size=batch_size, seed=seed)


class Projection(nn.Module):
    """SPHeRe's auxiliary head: 1x1 conv, BN, ReLU, global average pooling, linear to ``dim``."""

    def __init__(self, spatial_dims: int, channels: int, dim: int = 256):
        super().__init__()
        self.body = nn.Sequential(
            Conv[Conv.CONV, spatial_dims](channels, channels, kernel_size=1),
            Norm[Norm.BATCH, spatial_dims](channels),
            nn.ReLU(),
            Pool[Pool.ADAPTIVEAVG, spatial_dims](1),
            nn.Flatten(),
            nn.Linear(channels, dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def cosine_similarity_matrix(x: torch.Tensor) -> torch.Tensor:
    flat = F.normalize(x.reshape(x.shape[0], -1), dim=1)
    return flat @ flat.t()


def structure_loss(block_input: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(cosine_similarity_matrix(z), cosine_similarity_matrix(block_input))


def orthogonality_loss(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    standard = (z - z.mean(0)) / (z.std(0, unbiased=False) + eps)
    correlation = standard.t() @ standard / z.shape[0]
    return F.mse_loss(correlation, torch.eye(z.shape[1], dtype=z.dtype, device=z.device))


def sphere_losses(encoder: HebbianEncoder, projections: nn.ModuleList, x: torch.Tensor) -> list[torch.Tensor]:
    """One SPHeRe loss per block (each depends on that block and its projection only)."""
    losses = []
    for (block_input, block_output), projection in zip(encoder.local_forward(x), projections):
        z = projection(block_output)
        losses.append(structure_loss(block_input, z) + ORTH_WEIGHT * orthogonality_loss(z))
    return losses


def make_projections(encoder: Encoder, dim: int = 256) -> nn.ModuleList:
    return nn.ModuleList(Projection(encoder.spec.spatial_dims, c, dim) for c in encoder.out_channels)


def pretrain_hebbian(encoder: HebbianEncoder, loader: Iterable, epochs: int = 1, lr: float = 1e-3, dim: int = 256, max_steps: int | None = None, key: str = "image") -> list[float]:
    """SPHeRe pretraining of ``encoder`` on unlabelled batches (tensors or dicts with ``key``).

    All blocks train at once; their losses are summed only for one optimiser call, no gradient crosses
    blocks. Returns the per-step total loss. Batches need at least 2 samples (similarities across the batch).
    """
    projections = make_projections(encoder, dim)
    optimiser = torch.optim.Adam([*encoder.parameters(), *projections.parameters()], lr=lr)
    encoder.train()
    projections.train()
    history: list[float] = []
    for _ in range(epochs):
        for batch in loader:
            x = batch[key] if isinstance(batch, dict) else batch
            if x.shape[0] < 2:
                continue
            loss = torch.stack(sphere_losses(encoder, projections, x)).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            history.append(float(loss.detach()))
            if max_steps is not None and len(history) >= max_steps:
                return history
    return history


def pretrain_on_images(encoder: HebbianEncoder, images: torch.Tensor, *, batch_size: int, seed: int, epochs: int | None = None, lr: float = 1e-3) -> list[float]:
    """SPHeRe pretraining on an ``(N, C, ...)`` tensor of unlabelled images in seeded shuffled minibatches.

    ``epochs`` defaults to the spec's ``pretrain_epochs`` (2), so a pipeline's ``backbone`` section sets it.
    """
    epochs = epochs if epochs is not None else int((encoder.spec.model_extra or {}).get("pretrain_epochs", 2))
    generator = torch.Generator().manual_seed(seed)
    batches = (images[index] for _ in range(epochs) for index in torch.randperm(len(images), generator=generator).split(batch_size))
    return pretrain_hebbian(encoder, batches, lr=lr)


@register_backbone("hebbian")
def build_hebbian(spec: EncoderSpec) -> Encoder:
    return HebbianEncoder(spec)
