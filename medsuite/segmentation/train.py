"""Train a segmentation model from a pipeline YAML: DiceCE on 2D slices of a card's train split,
validation Dice per epoch on whole volumes, resumable checkpoints carrying config and card id."""

from __future__ import annotations

import math
import random
import time
from collections import deque
from pathlib import Path
from typing import Any

import torch
from monai.losses import DiceCELoss
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from medsuite import distributed
from medsuite.backbones.base import Encoder
from medsuite.backbones.training import mtt_step, set_time_steps, tet_loss
from medsuite.checkpoints import load_checkpoint, save_checkpoint
from medsuite.data.cards import load_card
from medsuite.data.datasets import discover_records, make_loader
from medsuite.errors import MedsuiteError
from medsuite.finite import require_finite_loss
from medsuite.io import check_output_dir, write_json
from medsuite.runtime import seed_everything
from medsuite.segmentation.config import SegmentationConfig
from medsuite.segmentation.data import (
    fold_patients,
    intensity_rule,
    split_volumes,
    training_slices,
)
from medsuite.segmentation.evaluate import evaluate_volumes
from medsuite.segmentation.labels import card_labels
from medsuite.segmentation.models import make_model

KIND = "segmentation"


def load_init(model: torch.nn.Module, path: str | Path) -> None:
    """``--init``: pretrained encoder weights (the pretext pipeline's ``kind="encoder"`` checkpoints) into
    ``model.encoder``, or a whole segmentation checkpoint of the same architecture to fine-tune (the shipped
    model on a hospital's own labels). Optimiser and schedule start fresh either way."""
    ckpt = load_checkpoint(path, kind=("encoder", KIND))
    if ckpt["kind"] == KIND:
        target, fix = model, "fine-tune a checkpoint of the same model and backbone as this pipeline"
    elif hasattr(model, "encoder"):
        target, fix = model.encoder, "pretrain with the same backbone channels"
    else:
        raise MedsuiteError(path, "this model builds its own encoder and cannot take encoder weights", "use model: neunet")
    try:
        target.load_state_dict(ckpt["state"])
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise MedsuiteError(path, f"weights do not fit this model ({first})", fix) from exc


def _cosine_lr(optimiser: torch.optim.Optimizer, base: float, step_fraction: float, time_fraction: float) -> None:
    """Cosine decay over whichever runs out first, the epochs or the wall-clock budget (``max_minutes``):
    on a shared CPU the number of epochs that fit is unknown, and a schedule cut short never anneals."""
    progress = min(max(step_fraction, time_fraction), 1.0)
    for group in optimiser.param_groups:
        group["lr"] = base * 0.5 * (1.0 + math.cos(math.pi * progress))


def _stale(history: list[dict], patience: int | None) -> bool:
    """Whether the last ``patience`` validations all missed the best one; read from the history, so a resumed
    run keeps its count."""
    scores = [entry["val_mean_dice"] for entry in history if "val_mean_dice" in entry]
    return patience is not None and bool(scores) and len(scores) - 1 - scores.index(max(scores)) >= patience


class _PerStepLogits(torch.nn.Module):
    """A spiking model whose forward is its per-step logits (TET), so DDP wraps the call the loss reads."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_steps(x)


def _budget_spent(history: list[dict], max_minutes: float | None) -> bool:
    """Checked before each epoch (so a resumed run whose budget is spent trains no more): would the next
    epoch, at the mean epoch time so far, end past ``max_minutes``?"""
    if max_minutes is None or not history:
        return False
    return history[-1]["minutes"] * (1 + 1 / len(history)) > max_minutes


def _checkpoint(path: Path, model, config: SegmentationConfig, card_id: str, labels: dict[int, str], epoch: int, metrics: dict, **extra: Any) -> None:
    labels_json = {str(k): v for k, v in labels.items()}
    save_checkpoint(path, kind=KIND, state=model.state_dict(), config=config.model_dump(mode="json"), card=card_id, labels=labels_json, epoch=epoch, metrics=metrics, **extra)


def _warm_up_encoder(model: torch.nn.Module, loader, config: SegmentationConfig, ctx: distributed.DistributedContext, console: Console) -> None:
    """``Encoder.warm_up`` on one pass of the training patches, labels unused (most kinds have none: nothing runs).
    Under torchrun every rank warms up on its own patients and the main rank's weights are kept by all."""
    encoder = getattr(model, "encoder", None)  # MONAI's U-Nets build their own CNN encoders
    if not isinstance(encoder, Encoder) or type(encoder).warm_up is Encoder.warm_up:
        return
    images = torch.cat([batch["image"] for batch in loader]).to(ctx.device)
    history = encoder.warm_up(images, batch_size=config.train.batch_size, seed=config.seed)
    if ctx.enabled:
        ctx.broadcast_weights(encoder)
    if history:
        console.print(f"encoder warm-up ({config.backbone.kind}) on {len(images)} patches: loss {history[0]:.3f} -> {history[-1]:.3f}")


def train(
    config: SegmentationConfig,
    out_dir: str | Path,
    *,
    max_epochs: int | None = None,
    device: str = "auto",
    init: str | Path | None = None,
    resume: bool = False,
    quiet: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """Train (or resume from ``out_dir/last.pt``); writes last.pt, best.pt (by validation mean Dice), history.json."""
    out_dir = Path(out_dir)
    check_output_dir(out_dir, 256 << 20)  # before any training: last.pt and best.pt with optimiser state
    last = out_dir / "last.pt"
    if last.exists() and init is not None and not resume:
        raise MedsuiteError(last, "exists, so --init would be ignored and the run resumed", "add --resume to continue this run, or give a new -o folder to start from --init")
    out_dir.mkdir(parents=True, exist_ok=True)
    console = console or Console(stderr=True)
    seed_everything(config.seed)
    ctx = distributed.init(device)  # torchrun: one rank per device; alone: the chosen device, nothing else changes
    dev = ctx.device
    card = load_card(config.data.card)
    labels = card_labels(card)
    config = config.model_copy(update={"data": config.data.model_copy(update={"intensity": intensity_rule(config, card)})})  # the checkpoint holds the rule
    if config.model.out_channels != max(labels) + 1:
        raise MedsuiteError("model.out_channels", f"is {config.model.out_channels} but card {card.id!r} has labels 0..{max(labels)}", f"set model.out_channels: {max(labels) + 1}")
    if config.data.fold is not None:  # the folds written to the run: which patients trained and which selected the model
        folds = fold_patients(card, discover_records(card, config.data.root), config.data.folds, config.data.fold)
        write_json(out_dir / "folds.json", {"card": card.id, "folds": config.data.folds, "fold": config.data.fold, "patients": folds})
    slices = training_slices(card, config)
    val = split_volumes(card, config, "val")
    if ctx.enabled:
        loader = ctx.patient_loader(slices, [slices.volumes[v]["patient"] for v, _ in slices.index], batch_size=config.train.batch_size, seed=config.seed)
    else:
        loader = make_loader(slices, batch_size=config.train.batch_size, shuffle=True, seed=config.seed, num_workers=config.train.workers)
    model = make_model(config).to(dev)
    epochs = max_epochs or config.train.epochs
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.train.lr, weight_decay=config.train.weight_decay)
    total_steps = epochs * len(loader)
    budget_s = config.train.max_minutes * 60 if config.train.max_minutes else None
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    start_epoch, best, history = 0, -1.0, []
    if last.exists():  # resume
        ckpt = load_checkpoint(last, kind=KIND, map_location=dev)
        model.load_state_dict(ckpt["state"])
        optimiser.load_state_dict(ckpt["optimiser"])
        start_epoch, best, history = ckpt["epoch"], ckpt["best"], ckpt["history"]
        console.print(f"resuming {last} after epoch {start_epoch}")
    elif init is not None:
        load_init(model, init)
    tet, mixed = config.train.loss == "tet", config.train.time_steps == "mixed"
    full_steps = list(model.encoder.stage_steps) if mixed else None  # MTT samples below these; validation runs at them
    mtt_rng = random.Random(config.seed)
    calibration: deque[torch.Tensor] = deque(maxlen=4)  # the epoch's last batches: BatchNorm statistics at the full T after MTT
    net = ctx.wrap(_PerStepLogits(model) if tet else model)  # trains through DDP under torchrun; ``model`` is what is saved and validated
    began = time.perf_counter() - (history[-1]["minutes"] * 60 if history else 0.0)
    if start_epoch == 0 and init is None:  # a fresh run: the backbone's own pretraining (hebbian: SPHeRe), inside the budget
        _warm_up_encoder(model, loader, config, ctx, console)
    step = start_epoch * len(loader)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console, disable=quiet or not ctx.is_main) as progress:
        task = progress.add_task("train", total=epochs * len(loader), completed=start_epoch * len(loader), info="")
        for epoch in range(start_epoch, epochs):
            if _budget_spent(history, config.train.max_minutes):
                console.print(f"stopping before epoch {epoch + 1} ({history[-1]['minutes']:.1f} min): another epoch would pass max_minutes {config.train.max_minutes}")
                break
            if _stale(history, config.train.patience):
                console.print(f"stopping before epoch {epoch + 1}: {config.train.patience} validations without a better validation Dice (best.pt holds the best)")
                break
            model.train()
            if ctx.enabled:
                loader.sampler.set_epoch(epoch)
            total = 0.0
            for batch in loader:
                _cosine_lr(optimiser, config.train.lr, step / total_steps, ctx.from_main(time.perf_counter() - began) / budget_s if budget_s else 0.0)
                step += 1
                image, label = batch["image"].to(dev), batch["label"].to(dev)

                def compute_loss(image=image, label=label, batch=batch, step=step) -> torch.Tensor:
                    out = net(image)
                    loss = tet_loss(out, label, loss_fn, lam=config.train.tet_lambda) if tet else loss_fn(out, label)
                    require_finite_loss(loss.item(), step=step, cases=[f"{c} slice {int(s)}" for c, s in zip(batch["case"], batch["slice"])], run=out_dir, kept=last)
                    return loss

                if mixed:
                    value = mtt_step(model.encoder, compute_loss, optimiser, t_max=max(full_steps), configs=config.train.mtt_configs, rng=mtt_rng)
                    calibration.append(image)
                else:
                    optimiser.zero_grad(set_to_none=True)
                    loss = compute_loss()
                    loss.backward()
                    optimiser.step()
                    value = loss.item()
                total += value
                progress.update(task, advance=1, description=f"epoch {epoch + 1}/{epochs}", info=f"loss {value:.3f}")
            if mixed:
                set_time_steps(model, full_steps, calibration)
            entry = {"epoch": epoch + 1, "loss": ctx.mean(total / len(loader)), "minutes": ctx.from_main((time.perf_counter() - began) / 60)}
            last_epoch = epoch + 1 == epochs or _budget_spent([*history, entry], config.train.max_minutes)
            if (epoch + 1) % config.train.val_every == 0 or last_epoch:
                metrics = ctx.on_main(lambda: evaluate_volumes([(model, config)], val, labels))
                entry["val_mean_dice"] = metrics["mean_dice"]
                progress.update(task, info=f"val Dice {metrics['mean_dice']:.3f}")
                if metrics["mean_dice"] > best:
                    best = metrics["mean_dice"]
                    if ctx.is_main:
                        _checkpoint(out_dir / "best.pt", model, config, card.id, labels, epoch + 1, {"val": {k: metrics[k] for k in ("per_class", "mean_dice", "mean_hd95")}})
            history.append(entry)
            if ctx.is_main:
                _checkpoint(last, model, config, card.id, labels, epoch + 1, {"val_mean_dice": entry.get("val_mean_dice")}, optimiser=optimiser.state_dict(), best=best, history=history)
                write_json(out_dir / "history.json", {"card": card.id, "config": config.model_dump(mode="json"), "history": history})
    if ctx.enabled:
        distributed.record_run(out_dir, ctx, model)
    return {"best_val_mean_dice": best, "epochs": len(history), "history": history}
