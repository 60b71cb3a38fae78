"""Instance optimisation: GIRNet's modules fitted to one pair, coarse to fine, in a few seconds on CPU.

The velocity field (registration) and the lesion logits (generation) are optimised directly, starting
from the trained networks' predictions when a checkpoint is given (else identity and no lesion).
As in GIRNet's co-learning, each module follows its own loss with the others' outputs frozen
(``detach``): registration sees the inpainted patient image with the mask fixed, the mask sees the
atlas guide with the field fixed. Inpainting fills the mask from the atlas warped into the patient's
space (the trained inpainter refines the fill when a checkpoint is given).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medsuite.registration.config import RegistrationConfig
from medsuite.registration.losses import dissimilarity_map, generation_loss, masked_lncc_loss, smoothness_loss
from medsuite.registration.networks import GIRNet
from medsuite.registration.spatial import integrate, resize_field, resize_image, warp


@dataclass
class InstanceResult:
    forward: torch.Tensor  # (1, 3, X, Y, Z) voxels, fixed grid: fixed point x <- moving point x + forward(x)
    inverse: torch.Tensor
    lesion: torch.Tensor  # (1, 1, X, Y, Z) probability, pre-aligned moving space (fixed lattice)
    inpainted: torch.Tensor  # pre-aligned moving space
    losses: list[float]


def level_steps(config: RegistrationConfig, total: int | None) -> list[int]:
    """Steps per level; ``total`` (--steps) rescales the configured split."""
    steps = list(config.instance.steps)
    if total is None:
        return steps
    scale = total / max(sum(steps), 1)
    return [max(1, round(s * scale)) if total > 0 else 0 for s in steps]


def grid_shape(full_shape: tuple[int, ...], factor: int) -> tuple[int, ...]:
    return tuple(max(8, -(-n // factor)) for n in full_shape)


def inside_head(guide: torch.Tensor) -> torch.Tensor:
    """Where the atlas has tissue well inside its outline: scalp and field-of-view edges differ for
    reasons other than a lesion (a local minimum filter of the atlas intensity by max-pooling)."""
    return (-F.max_pool3d(-guide, 5, stride=1, padding=2) > 0.2).float()


def fill(model: GIRNet | None, moving: torch.Tensor, mask: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """The inpainted patient image: outside the mask the image, inside a healthy fill from the guide."""
    if model is None:
        return moving * (1 - mask) + guide * mask
    return model.inpaint(moving, mask, guide)


def optimise_pair(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    config: RegistrationConfig,
    *,
    model: GIRNet | None = None,
    steps: int | None = None,
    use_segmentation: bool = True,
    use_inpainting: bool = True,
) -> InstanceResult:
    """Register pre-aligned, intensity-normalised (1, 1, X, Y, Z) images on the same grid.

    ``use_segmentation``/``use_inpainting`` switch GIRNet's modules off for ablations: without
    segmentation no lesion is excluded; without inpainting the lesion is only excluded from the loss.
    """
    io, weights = config.instance, config.losses
    full_shape = tuple(fixed.shape[2:])
    velocity = logits = None
    history: list[float] = []
    for factor, n_steps in zip(io.levels, level_steps(config, steps)):
        shape = grid_shape(full_shape, factor)
        field_shape = grid_shape(full_shape, max(factor, io.field_factor))
        f, m = resize_image(fixed, shape), resize_image(moving, shape)
        if velocity is None:
            with torch.no_grad():
                velocity = model.velocity(m, f) if model is not None else torch.zeros(1, 3, *shape)
                # Floored at the prior, so the instance stage can still grow a lesion the generator missed.
                prior = torch.full((1, 1, *shape), io.lesion_prior_logit)
                logits = torch.maximum(model.lesion_logits(m), prior) if model is not None else prior
        velocity = resize_field(velocity, field_shape).detach().requires_grad_(True)
        logits = resize_image(logits, shape).detach().requires_grad_(use_segmentation)
        groups = [{"params": [velocity], "lr": io.learning_rate}]
        if use_segmentation:
            groups.append({"params": [logits], "lr": io.mask_learning_rate})
        optimiser = torch.optim.Adam(groups)
        # The mask learns on the finest level only: on coarse grids a lesion is a few blurred voxels.
        last = factor == io.levels[-1]
        warmup = int(io.lesion_warmup * n_steps) if last else n_steps
        for step in range(n_steps):
            forward = resize_field(integrate(velocity, io.integration_steps), shape)
            inverse = resize_field(integrate(-velocity, io.integration_steps), shape)
            guide = warp(f, inverse)  # the healthy atlas seen in the patient's space
            learning_mask = use_segmentation and step >= warmup
            mask = torch.sigmoid(logits) if learning_mask else torch.zeros_like(m)
            frozen_mask = mask.detach()
            patient = fill(model, m, frozen_mask, guide.detach()) if use_inpainting else m
            keep = None if use_inpainting else 1 - warp(frozen_mask, forward)
            loss = weights.similarity * masked_lncc_loss(warp(patient, forward), f, io.window, keep)
            if weights.symmetric:
                loss = loss + weights.symmetric * masked_lncc_loss(guide, patient, io.window, None if use_inpainting else 1 - frozen_mask)
            loss = loss + weights.smooth * smoothness_loss(velocity)
            if learning_mask:
                gap = dissimilarity_map(m, guide.detach()) * inside_head(guide.detach())
                loss = loss + weights.generation * generation_loss(mask, gap, io.lesion_threshold, weights.mask_tv)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            history.append(float(loss.detach()))
    with torch.no_grad():
        forward = resize_field(integrate(velocity, io.integration_steps), full_shape)
        inverse = resize_field(integrate(-velocity, io.integration_steps), full_shape)
        lesion = resize_image(torch.sigmoid(logits), full_shape) if use_segmentation else torch.zeros_like(moving)
        inpainted = fill(model, moving, lesion, warp(fixed, inverse))
    return InstanceResult(forward, inverse, lesion, inpainted, history)
