"""GIRNet's trainer, in two stages: the velocity net alone on the plain images (``train.registration_warmup``
iterations), then the inpainter and the mask generator, each one step per iteration on the frozen net's guides.

Pairs come from the pipeline's data card (``medsuite.registration.data``: generated MNI152 pathological
pairs, or real pairs listed by a card). No label is used for training; a known lesion only reports the
mask generator's Dice in the log. A ``hebbian`` backbone first learns each module's encoder with SPHeRe's
local losses on the inputs that module sees, as every pipeline does for that kind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch

from medsuite import distributed
from medsuite.checkpoints import load_checkpoint, save_checkpoint
from medsuite.finite import require_finite_loss
from medsuite.io import check_output_dir
from medsuite.registration.config import RegistrationConfig
from medsuite.registration.data import Pair, training_pairs
from medsuite.registration.fields import warp
from medsuite.registration.instance import head_window, inside_head
from medsuite.registration.losses import dissimilarity_map, generation_loss, inpainting_loss, intensity_match, masked_lncc_loss, smoothness_loss
from medsuite.registration.networks import GIRNet
from medsuite.registration.spatial import resize_image

CHECKPOINT = "checkpoint.pt"
FINAL = "girnet.pt"


def _random_hole(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A random box to hide for the inpainter's self-supervised fill (drawn on the CPU generator: the same box on any device)."""
    hole = torch.zeros(1, 1, *shape, device=device)
    size = [max(2, int(n * 0.25)) for n in shape]
    start = [int(torch.randint(0, n - s, (1,), generator=generator)) for n, s in zip(shape, size)]
    hole[..., start[0] : start[0] + size[0], start[1] : start[1] + size[1], start[2] : start[2] + size[2]] = 1
    return hole


def training_step(model: GIRNet, optimisers: dict, batch, config: RegistrationConfig, generator: torch.Generator, *, registration: bool) -> dict[str, float]:
    """``registration`` (the first stage): one step of the velocity net on the plain patient image. An untrained
    generator's masks hide tissue from the registration loss (the inpainter fills it from the guide, which then
    matches any field), so the mask never joins this stage. Otherwise one step each of the inpainter and the mask
    generator, the velocity net frozen: it only provides the guide."""
    fixed, moving, _ = batch
    weights = config.losses
    window = head_window(config.train.resolution_mm)  # ~20 mm at any training resolution
    losses = {}

    with torch.set_grad_enabled(registration):
        velocity = model.velocity(moving, fixed)
        forward, inverse = model.flows(velocity)
        guide = warp(fixed, inverse)
    if registration:  # the registration loss: NCC both ways and a smooth velocity
        loss = weights.similarity * masked_lncc_loss(warp(moving, forward), fixed, window)
        loss = loss + weights.symmetric * masked_lncc_loss(guide, moving, window) + weights.smooth * smoothness_loss(velocity)
        optimisers["reg"].zero_grad(set_to_none=True)
        loss.backward()
        optimisers["reg"].step()
        return {"reg": float(loss.detach())}
    with torch.no_grad():
        mask = torch.sigmoid(model.lesion_logits(moving))

    # Inpainting: fill a random hidden box of the patient image from its surroundings and the guide.
    hole = _random_hole(tuple(moving.shape[2:]), generator, moving.device) * (1 - mask)
    filled = model.inpainter(torch.cat([moving * (1 - hole), hole, guide], dim=1))
    loss = inpainting_loss(filled, moving, hole, weights.inpaint_fore, weights.inpaint_back)
    optimisers["inp"].zero_grad(set_to_none=True)
    loss.backward()
    optimisers["inp"].step()
    losses["inp"] = float(loss.detach())

    # Generation: the mask covers what the atlas-guided fill cannot reproduce (the atlas matched to the
    # patient's contrast on the tissue the current mask calls healthy, as in instance optimisation).
    mask = torch.sigmoid(model.lesion_logits(moving))
    with torch.no_grad():
        head = inside_head(guide, window)
        gap = dissimilarity_map(moving, intensity_match(guide, moving, head * (1 - mask.detach()))) * head
    loss = weights.generation * generation_loss(mask, gap, config.instance.lesion_threshold, weights.mask_tv, balanced=True)
    optimisers["gen"].zero_grad(set_to_none=True)
    loss.backward()
    optimisers["gen"].step()
    losses["gen"] = float(loss.detach())
    if batch[2].any():  # evaluation only: the generator's Dice against the known lesion
        predicted, truth = mask.detach() >= 0.5, batch[2] > 0
        losses["lesion_dice"] = float(2 * (predicted & truth).sum() / (predicted.sum() + truth.sum()).clamp_min(1))
    return losses


def pretrain_hebbian_encoders(model: GIRNet, pairs: list[Pair], seed: int) -> None:
    """SPHeRe local pretraining of each module's encoder on the inputs it sees (fixed grid of the first pair)."""
    from medsuite.backbones.hebbian import pretrain_on_images

    shape = tuple(pairs[0][0].shape[2:])
    fixed = torch.cat([resize_image(p[0], shape) for p in pairs])
    moving = torch.cat([resize_image(p[1], shape) for p in pairs])
    inputs = {"mask_generator": moving, "inpainter": torch.cat([moving, torch.zeros_like(moving), fixed], dim=1), "velocity_net": torch.cat([moving, fixed], dim=1)}
    for name, images in inputs.items():
        pretrain_on_images(getattr(model, name).encoder, images, batch_size=min(4, len(pairs)), seed=seed)


def train(
    config: RegistrationConfig, run_dir: Path, *, resume: bool = False, progress: Callable[[int, dict], None] | None = None, root: Path | None = None, device: str = "cpu"
) -> Path:
    """Train into ``run_dir``: checkpoint.pt (resumable), girnet.pt (final), log.jsonl. ``root``: the card's data folder.

    ``device`` (auto | cpu | cuda): the shipped model trained on the CPU; under torchrun, gloo ranks on the CPU
    or one nccl rank per GPU."""
    check_output_dir(run_dir, 64 << 20)  # before any training: two checkpoints and a log
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = distributed.init(device)
    torch.manual_seed(config.train.seed)
    generator = torch.Generator().manual_seed(config.train.seed + ctx.rank)  # ranks draw their own pairs and holes
    model = GIRNet(config).to(ctx.device)
    optimisers = {
        name: torch.optim.AdamW(module.parameters(), lr=config.train.learning_rate, weight_decay=config.train.weight_decay)
        for name, module in (("reg", model.velocity_net), ("inp", model.inpainter), ("gen", model.mask_generator))
    }
    for optimiser in optimisers.values():  # the trainer steps modules through methods, not forward(): no DDP hooks
        ctx.average_gradients(optimiser)
    start = 0
    if resume and (run_dir / CHECKPOINT).is_file():
        payload = load_checkpoint(run_dir / CHECKPOINT, kind="registration", map_location=ctx.device)
        model.load_state_dict(payload["state"])
        for name, state in payload["optimisers"].items():
            optimisers[name].load_state_dict(state)
        start = payload["iteration"]
    pairs = [tuple(t.to(ctx.device) for t in pair) for pair in ctx.shard(training_pairs(config, root))]  # a pair is one patient: each rank trains on its own
    if start == 0 and config.backbone.kind == "hebbian":
        pretrain_hebbian_encoders(model, pairs, config.train.seed)
        ctx.broadcast_weights(model)  # each rank pretrained on its own pairs: start every rank from rank 0's
    log = (run_dir / "log.jsonl").open("a") if ctx.is_main else None  # rank 0 logs its own losses
    began = time.perf_counter()
    for iteration in range(start, config.train.iterations):
        pair = int(torch.randint(len(pairs), (1,), generator=generator))
        batch = pairs[pair]
        losses = training_step(model, optimisers, batch, config, generator, registration=iteration < config.train.registration_warmup)
        for value in losses.values():
            require_finite_loss(value, step=iteration + 1, cases=[f"pair {pair}"], run=run_dir, kept=run_dir / CHECKPOINT)
        record = {"iteration": iteration + 1, **losses, "seconds": round(time.perf_counter() - began, 2)}
        if log is not None:
            log.write(json.dumps(record) + "\n")
            log.flush()
        if progress is not None:
            progress(iteration + 1, losses)
        if ctx.is_main and ((iteration + 1) % config.train.checkpoint_every == 0 or iteration + 1 == config.train.iterations):
            state = {name: opt.state_dict() for name, opt in optimisers.items()}
            save_checkpoint(run_dir / CHECKPOINT, kind="registration", state=model.state_dict(), config=config.model_dump(mode="json"), optimisers=state, iteration=iteration + 1)
    if log is not None:
        log.close()
        save_checkpoint(run_dir / FINAL, kind="registration", state=model.state_dict(), config=config.model_dump(mode="json"), iteration=config.train.iterations)
    if ctx.enabled:
        distributed.record_run(run_dir, ctx, model)
    return run_dir / FINAL
