"""Instance optimisation: GIRNet's modules fitted to one pair, coarse to fine, in a few seconds on CPU.

The velocity field (registration) and the lesion logits (generation) are optimised directly, starting
from the trained velocity net's prediction when a checkpoint is given (else identity), and from the trained
mask generator's logits when ``generator_start`` is on (else the lesion prior).
As in GIRNet's co-learning, each module follows its own loss with the others' outputs frozen
(``detach``): registration sees the inpainted patient image with the mask fixed, the mask sees the
atlas guide with the field fixed. Inpainting fills the mask from the atlas warped into the patient's
space and matched to its contrast (the trained inpainter makes the final fill when a checkpoint is given).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from medsuite.registration.config import RegistrationConfig
from medsuite.registration.fields import integrate, warp
from medsuite.registration.losses import box_mean, dissimilarity_map, generation_loss, intensity_match, masked_lncc_loss, smoothness_loss
from medsuite.registration.spatial import content_box, downsample_image, resize_field, resize_image, uncrop

if TYPE_CHECKING:  # networks.py imports MONAI (~3 s): loaded only with a checkpoint, by medsuite.checkpoints
    from medsuite.registration.networks import GIRNet


@dataclass
class InstanceResult:
    forward: torch.Tensor  # (1, 3, X, Y, Z) voxels, fixed grid: fixed point x <- moving point x + forward(x)
    inverse: torch.Tensor
    lesion: torch.Tensor  # (1, 1, X, Y, Z) probability, pre-aligned moving space (fixed lattice)
    inpainted: torch.Tensor  # pre-aligned moving space
    losses: list[float]
    box: tuple[slice, ...] | None = None  # the region optimised (``optimise_in_content_box``); None: the whole grid


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread meanwhile. Vectorised transcendental kernels (sigmoid, exp) round the scalar
    tail of each thread's chunk differently, and convolutions may split their sums by thread: with more
    threads the same input gave other bits (measured 6e-8 on sigmoid), which Adam then amplifies. The ops
    kept here are small (mask logits, the networks' single passes on a coarse grid)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def mask_probability(logits: torch.Tensor) -> torch.Tensor:
    with one_thread():
        return torch.sigmoid(logits)


class Adam:
    """Adam (Kingma & Ba; torch's defaults: betas 0.9 / 0.999, eps 1e-8, bias-corrected) on a few tensors.

    Written out because ``torch.optim``'s first optimiser imports ``torch._dynamo`` (measured ~2.5 s on a
    quiet machine, once per process): a third of a whole 2 mm registration as a user runs it."""

    def __init__(self, groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.groups, self.betas, self.eps, self.step_count = groups, betas, eps, 0
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for g in groups for p in g["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.groups:
            for p in group["params"]:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.step_count += 1
        beta1, beta2 = self.betas
        correction1, correction2 = 1 - beta1**self.step_count, 1 - beta2**self.step_count
        params = [(p, g["lr"]) for g in self.groups for p in g["params"]]
        for (p, lr), (first, second) in zip(params, self.moments):
            if p.grad is None:
                continue
            first.lerp_(p.grad, 1 - beta1)
            second.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            p.addcdiv_(first, (second.sqrt() / math.sqrt(correction2)).add_(self.eps), value=-lr / correction1)


def level_steps(config: RegistrationConfig, total: int | None) -> list[int]:
    """Steps per level; ``total`` (--steps) rescales the configured split."""
    steps = list(config.instance.steps)
    if total is None:
        return steps
    scale = total / max(sum(steps), 1)
    return [max(1, round(s * scale)) if total > 0 else 0 for s in steps]


def grid_shape(full_shape: tuple[int, ...], factor: int) -> tuple[int, ...]:
    return tuple(max(8, -(-n // factor)) for n in full_shape)


def working_scale(working_mm: float, voxel_mm: float) -> int:
    """How many input voxels one voxel of the finest optimised grid spans (``instance.working_mm``)."""
    return max(1, round(working_mm / voxel_mm)) if working_mm > 0 else 1


def model_grid(model: GIRNet, full_shape: tuple[int, ...], voxel_mm: float) -> tuple[int, ...]:
    """The grid of ``voxel_mm`` inputs at the resolution ``model`` was trained on: where its networks run."""
    return grid_shape(full_shape, max(1, round(model.resolution_mm / voxel_mm)))


def head_window(voxel_mm: float) -> int:
    """An odd window spanning ~20 mm: the brain-interior test must mean the same at every resolution."""
    return max(3, 2 * round(10.0 / voxel_mm) + 1)


def outline_window(voxel_mm: float, margin_mm: float = 4.0) -> int:
    """The odd ``inside_head`` window of instance optimisation: ``margin_mm`` in from the brain's outline, where
    a one-voxel misalignment of the outline already shows a gap; a wider margin hides cortical lesions."""
    return 2 * max(1, round(margin_mm / voxel_mm)) + 1


def inside_head(guide: torch.Tensor, window: int = 5) -> torch.Tensor:
    """Inside the atlas's outline, ``window // 2`` voxels in from it (and from the field of view's edges): the
    scalp and the outline differ for reasons other than a lesion. Holes are filled, so ventricles, sulci and
    the tissue beside them count as inside: a minimum filter of the atlas intensity (the earlier rule) dropped
    everything within half a window of CSF, where cortical, periventricular and infratentorial lesions lie."""
    from scipy import ndimage

    filled = np.stack([ndimage.binary_fill_holes(g > 0.05) for g in guide.detach()[:, 0].cpu().numpy()])
    outside = torch.from_numpy(~filled).float()[:, None].to(guide.device)
    outside = F.max_pool3d(F.pad(outside, [window // 2] * 6, value=1.0), window, stride=1)
    return 1 - outside


def healthy_fill(moving: torch.Tensor, mask: torch.Tensor, guide: torch.Tensor, head: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(inpainted patient image, contrast-matched guide): outside the mask the image, inside the guide
    matched to the patient's contrast on healthy tissue inside the head; the mask is judged against it too."""
    healthy = intensity_match(guide, moving, head * (1 - mask))
    return moving * (1 - mask) + healthy * mask, healthy


def inpaint_around(model: GIRNet, image: torch.Tensor, lesion: torch.Tensor, guide: torch.Tensor, margin: int = 12) -> torch.Tensor:
    """The trained inpainter on the lesion's bounding box plus ``margin`` voxels of context: only the fill
    inside the mask (probability >= 0.5, as the written mask) is used, and a full-grid 3D pass costs ten times more."""
    if not bool((lesion >= 0.5).any()):
        return image
    box = (slice(None), slice(None), *content_box([lesion], margin, threshold=0.5))
    filled = image.clone()
    with one_thread():
        filled[box] = model.inpaint(image[box], lesion[box], guide[box])
    return filled


def plateaued(history: list[float], tolerance: float, window: int = 5) -> bool:
    """The mean loss of the last ``window`` steps improved by less than ``tolerance`` on the window before."""
    if tolerance <= 0 or len(history) < 2 * window:
        return False
    recent, before = sum(history[-window:]) / window, sum(history[-2 * window : -window]) / window
    return before - recent < tolerance * abs(before)


def warm_start(model: GIRNet | None, fixed: torch.Tensor, moving: torch.Tensor, shape: tuple[int, ...], prior_logit: float | None, voxel_mm: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(velocity, lesion logits or None) on ``shape`` to start from: identity without a model; else the trained
    nets run on the grid they were trained on (their voxel size), resampled to ``shape``. Logits come only
    when ``prior_logit`` is given and are floored there, so the instance stage can still grow a missed lesion."""
    if model is None:
        return torch.zeros(1, 3, *shape, device=fixed.device), None
    own = model_grid(model, tuple(fixed.shape[2:]), voxel_mm)
    f, m = resize_image(fixed, own), resize_image(moving, own)
    with torch.no_grad(), one_thread():
        velocity = resize_field(model.velocity(m, f), shape)
        if prior_logit is None:
            return velocity, None
        return velocity, resize_image(torch.clamp_min(model.lesion_logits(m), prior_logit), shape)


def grow_lesion(moving: torch.Tensor, lesion: torch.Tensor, guide: torch.Tensor, threshold: float, voxel_mm: float) -> torch.Tensor:
    """The final mask, on the final field at full resolution: every connected region where the contrast-matched
    atlas still cannot reproduce the image (gap above ``threshold``) and that touches the learned mask or
    holds a strong gap (twice the threshold). The coarse mask level misses small lesions and rims, and its
    blurred mask spills over the lesion's edge: the learned mask only seeds the regions.

    The gap here is the local mean of the *absolute* difference: a mean of the signed difference (the
    loop's ``dissimilarity_map``) cancels a bright tumour against the dark oedema around it, and lost the
    oedema of small metastases. The 3-voxel mean spreads a strong edge one voxel outwards, so a voxel also
    needs its own difference above 0.75 ``threshold`` (holes that rule opens in a textured lesion are filled)."""
    from scipy import ndimage

    head = inside_head(guide, outline_window(voxel_mm))
    seeds = lesion >= 0.5
    _, healthy = healthy_fill(moving, seeds.float(), guide, head)
    difference = (moving - healthy).abs() * head
    gap, own = box_mean(difference, 3)[0, 0].cpu().numpy(), difference[0, 0].cpu().numpy()  # scipy labels on the CPU
    regions, _ = ndimage.label(gap > threshold)
    strong = seeds[0, 0].cpu().numpy() | (gap > 2 * threshold)
    keep = np.unique(regions[strong & (regions > 0)])
    grown = ndimage.binary_fill_holes(np.isin(regions, keep) & (regions > 0) & (own > 0.75 * threshold))
    return torch.from_numpy(grown.astype(np.float32))[None, None].to(lesion.device)


def optimise_pair(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    config: RegistrationConfig,
    *,
    model: GIRNet | None = None,
    steps: int | None = None,
    use_segmentation: bool = True,
    use_inpainting: bool = True,
    voxel_mm: float = 2.0,
    given_lesion: torch.Tensor | None = None,
) -> InstanceResult:
    """Register pre-aligned, intensity-normalised (1, 1, X, Y, Z) images on the same grid of ``voxel_mm`` voxels.

    ``use_segmentation``/``use_inpainting`` switch GIRNet's modules off for ablations: without
    segmentation no lesion is excluded; without inpainting the lesion is only excluded from the loss.
    ``given_lesion`` (a user's mask on the same grid, 0/1): cost-function masking as ANTs' and elastix'
    masks, no mask generation; the mask is filled from the atlas (or left out with ``use_inpainting`` off).
    """
    io, weights = config.instance, config.losses
    full_shape = tuple(fixed.shape[2:])
    velocity = logits = None
    history: list[float] = []
    scale = working_scale(io.working_mm, voxel_mm)
    for level, n_steps in zip(io.levels, level_steps(config, steps)):
        factor = level * scale
        shape = grid_shape(full_shape, factor)
        field_shape = grid_shape(full_shape, max(factor, io.field_factor * scale))
        f, m = downsample_image(fixed, shape), downsample_image(moving, shape)
        window = outline_window(voxel_mm * max(n / k for n, k in zip(full_shape, shape)))
        if velocity is None:
            velocity, logits = warm_start(model, fixed, moving, shape, io.lesion_prior_logit if io.generator_start else None, voxel_mm)
            logits = logits if logits is not None else torch.full((1, 1, *shape), io.lesion_prior_logit, device=fixed.device)
        velocity = resize_field(velocity, field_shape).detach().requires_grad_(True)
        # The mask learns on one level (coarser, a lesion is a few blurred voxels; finer, the generation
        # terms cost most of a full-resolution step) and stays fixed on the finer levels after it.
        learns_mask = use_segmentation and level == io.mask_level and given_lesion is None
        keeps_mask = (use_segmentation and level < io.mask_level) or given_lesion is not None
        logits = resize_image(logits, shape).detach().requires_grad_(learns_mask)
        given = None if given_lesion is None else downsample_image(given_lesion, shape)
        groups = [{"params": [velocity], "lr": io.learning_rate}]
        if learns_mask:
            groups.append({"params": [logits], "lr": io.mask_learning_rate})
        optimiser = Adam(groups)
        head = None
        level_history: list[float] = []
        for step in range(n_steps):
            forward = resize_field(integrate(velocity, io.integration_steps), shape)
            inverse = resize_field(integrate(-velocity, io.integration_steps), shape)
            guide = warp(f, inverse)  # the healthy atlas seen in the patient's space
            mask = given if given is not None else mask_probability(logits) if learns_mask or keeps_mask else torch.zeros_like(m)
            frozen_mask = mask.detach()
            if head is None or not keeps_mask:  # with a fixed mask the brain interior is taken once per level
                head = inside_head(guide.detach(), window)
            patient, healthy = healthy_fill(m, frozen_mask, guide.detach(), head)
            patient = patient if use_inpainting else m
            keep = None if use_inpainting else 1 - warp(frozen_mask, forward)
            loss = weights.similarity * masked_lncc_loss(warp(patient, forward), f, io.window, keep)
            if weights.symmetric:
                loss = loss + weights.symmetric * masked_lncc_loss(guide, patient, io.window, None if use_inpainting else 1 - frozen_mask)
            loss = loss + weights.smooth * smoothness_loss(velocity)
            if learns_mask:
                gap = dissimilarity_map(m, healthy) * head
                loss = loss + weights.generation * generation_loss(mask, gap, io.lesion_threshold, weights.mask_tv)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            level_history.append(float(loss.detach()))
            # Stop a level once its loss has flattened.
            if step >= io.min_steps and plateaued(level_history, io.plateau_tolerance):
                break
        history.extend(level_history)
    with torch.no_grad():
        forward = resize_field(integrate(velocity, io.integration_steps), full_shape)
        inverse = resize_field(integrate(-velocity, io.integration_steps), full_shape)
        lesion = given_lesion if given_lesion is not None else resize_image(mask_probability(logits), full_shape) if use_segmentation else torch.zeros_like(moving)
        guide = warp(fixed, inverse)
        if given_lesion is None and use_segmentation:
            lesion = grow_lesion(moving, lesion, guide, io.lesion_threshold, voxel_mm)
        # The trained inpainter (when given) refines the final fill; inside the loop the matched guide is
        # as good for the registration loss and costs no network pass per step.
        inpainted = inpaint_around(model, moving, lesion, guide) if model is not None else healthy_fill(moving, lesion, guide, inside_head(guide, outline_window(voxel_mm)))[0]
    return InstanceResult(forward, inverse, lesion, inpainted, history)


def optimise_in_content_box(fixed: torch.Tensor, moving: torch.Tensor, config: RegistrationConfig, *, voxel_mm: float = 2.0, margin_mm: float = 10.0, **options) -> InstanceResult:
    """``optimise_pair`` on the box holding both images' content (plus ``margin_mm``), its results padded
    back to the full grid: a brain fills about half of its volume's bounding grid, background costs a
    full-resolution step as much as tissue does, and where both images are background the similarity
    has no gradient."""
    box = content_box([fixed, moving], margin=max(1, round(margin_mm / voxel_mm)))
    inner = (slice(None), slice(None), *box)
    if options.get("given_lesion") is not None:
        options["given_lesion"] = options["given_lesion"][inner].contiguous()
    result = optimise_pair(fixed[inner].contiguous(), moving[inner].contiguous(), config, voxel_mm=voxel_mm, **options)
    shape = tuple(fixed.shape[2:])
    inpainted = moving.clone()
    inpainted[inner] = result.inpainted
    return InstanceResult(
        forward=uncrop(result.forward, box, shape, "replicate"),
        inverse=uncrop(result.inverse, box, shape, "replicate"),
        lesion=uncrop(result.lesion, box, shape, "constant"),
        inpainted=inpainted,
        losses=result.losses,
        box=box,
    )
