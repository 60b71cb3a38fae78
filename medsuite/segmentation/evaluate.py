"""``evaluate segmentation``: a checkpoint on a card split -> metrics.json and a printed table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from medsuite.checkpoints import load_checkpoint
from medsuite.data.cards import load_card
from medsuite.data.datasets import make_dataset
from medsuite.errors import MedsuiteError
from medsuite.io import write_json
from medsuite.provenance import new_report
from medsuite.segmentation.config import SegmentationPipeline
from medsuite.segmentation.evaluate import evaluate_volumes
from medsuite.segmentation.models import make_model


def checkpoint_of(run: str | Path) -> Path:
    run = Path(run)
    return run / "best.pt" if run.is_dir() else run


def load_model(path: str | Path) -> tuple[torch.nn.Module, SegmentationPipeline, dict[str, Any]]:
    ckpt = load_checkpoint(path, kind="segmentation")
    config = SegmentationPipeline.model_validate(ckpt["config"])
    model = make_model(config)
    model.load_state_dict(ckpt["state"])
    return model.eval(), config, ckpt


def evaluate_checkpoint(run: str | Path, *, card: str | None = None, split: str = "test", root: str | Path | None = None, output: str | Path | None = None) -> tuple[dict[str, Any], Path]:
    if split not in {"train", "val", "test", "all"}:
        raise MedsuiteError("--split", f"unknown split {split!r}", "use train, val, test or all")
    path = checkpoint_of(run)
    model, config, ckpt = load_model(path)
    data_card = load_card(card or ckpt.get("card") or config.data.card)
    volumes = make_dataset(data_card, None if split == "all" else split, root=root or config.data.root, orientation=None)
    metrics = evaluate_volumes(model, volumes, config)
    report = new_report("evaluate segmentation", parameters={"checkpoint": str(path), "card": data_card.id, "split": split})
    report.update(metrics)
    target = Path(output) / "metrics.json" if output else (path.parent / "metrics.json")
    write_json(target, report)
    return report, target


def metrics_table(metrics: dict[str, Any]) -> Table:
    table = Table(title=f"{len(metrics['cases'])} volumes")
    for column in ("class", "Dice", "HD95 (mm)"):
        table.add_column(column)
    for name, values in metrics["per_class"].items():
        table.add_row(name, f"{values['dice']:.4f}", f"{values['hd95']:.2f}")
    table.add_row("mean", f"{metrics['mean_dice']:.4f}", f"{metrics['mean_hd95']:.2f}")
    return table
