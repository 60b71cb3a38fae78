"""``evaluate segmentation``: a checkpoint on a card split -> per-case and mean Dice / HD95, metrics.json and a printed table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from rich.table import Table

from medsuite.data.cards import load_card
from medsuite.data.datasets import make_dataset
from medsuite.errors import MedsuiteError
from medsuite.io import write_json
from medsuite.provenance import new_report
from medsuite.segmentation.config import SegmentationPipeline
from medsuite.segmentation.metrics import summarise, volume_metrics
from medsuite.segmentation.models import load_trained
from medsuite.segmentation.predict import predict_volume


def case_of(image: Any, index: int) -> str:
    return Path(str(image.meta.get("filename_or_obj", index))).name.split(".")[0]


def evaluate_volumes(model: torch.nn.Module, volumes, config: SegmentationPipeline, labels: dict[int, str]) -> dict[str, Any]:
    """Every volume of a loaded split (MetaTensors from the data layer): per-case metrics and their summary.

    HD95 is in the volume's own spacing (for index-space cards, the card's nominal spacing).
    """
    per_case = {}
    for i in range(len(volumes)):
        image, label = volumes[i]["image"], volumes[i]["label"]
        pred = predict_volume(model, image[0].as_tensor(), config)
        per_case[case_of(image, i)] = volume_metrics(pred, label[0].as_tensor(), image.pixdim[:3].tolist(), labels)
    return {"cases": per_case, **summarise(per_case)}


def checkpoint_of(run: str | Path) -> Path:
    run = Path(run)
    return run / "best.pt" if run.is_dir() else run


def evaluate_checkpoint(run: str | Path, *, card: str | None = None, split: str = "test", root: str | Path | None = None, output: str | Path | None = None) -> tuple[dict[str, Any], Path]:
    if split not in {"train", "val", "test", "all"}:
        raise MedsuiteError("--split", f"unknown split {split!r}", "use train, val, test or all")
    path = checkpoint_of(run)
    trained = load_trained(path)
    data_card = load_card(card or trained.card or trained.config.data.card)
    volumes = make_dataset(data_card, None if split == "all" else split, root=root or trained.config.data.root, orientation=None)
    metrics = evaluate_volumes(trained.model, volumes, trained.config, trained.labels)
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
