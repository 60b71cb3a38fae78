"""``evaluate segmentation``: checkpoints (one, several, or a folder of folds) on a card split -> per-case and
mean Dice / HD95, the worst case, seconds per volume, per-case uncertainty, and the clinical indices against
those of the reference masks; metrics.json and a printed table."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.table import Table

from medsuite.data.cards import load_card
from medsuite.data.datasets import make_dataset
from medsuite.data.transforms import load_transforms
from medsuite.errors import MedsuiteError
from medsuite.io import check_output_dir, write_json
from medsuite.provenance import new_report
from medsuite.segmentation import cardiac
from medsuite.segmentation.metrics import (
    class_volumes_ml,
    nanmean,
    summarise,
    volume_metrics,
)
from medsuite.segmentation.models import load_ensemble, resolve_checkpoints
from medsuite.segmentation.orientation import predict_oriented
from medsuite.segmentation.predict import Member
from medsuite.segmentation.uncertainty import (
    SHIPPED_QC_ENTROPY,
    case_uncertainty,
    choose_threshold,
)


def case_of(image: Any, index: int) -> str:
    return Path(str(image.meta.get("filename_or_obj", index))).name.split(".")[0]


def evaluate_volumes(members: Sequence[Member], volumes, labels: dict[int, str], *, tta: bool = False, orientation_search: bool = False, qc_threshold: float = SHIPPED_QC_ENTROPY) -> dict[str, Any]:
    """Every volume of a loaded split (MetaTensors from the data layer, stack axis last): per-case metrics,
    uncertainty and class volumes, their summary, and the clinical indices' agreement where ED/ES pairs exist.

    HD95 and volumes are in the volume's own spacing (for index-space cards, the card's nominal spacing).
    """
    per_case, uncertainty, class_ml, orientation, seconds = {}, {}, {}, {}, []
    for i in range(len(volumes)):
        image, label = volumes[i]["image"], volumes[i]["label"]
        start = time.perf_counter()
        prediction, chosen = predict_oriented(members, image[0].as_tensor(), slice_axis=2, tta=tta, search=orientation_search)
        seconds.append(time.perf_counter() - start)
        case = case_of(image, i)
        orientation[case] = chosen["chosen"]
        spacing = image.pixdim[:3].tolist()
        per_case[case] = volume_metrics(prediction.labels, label[0].as_tensor(), spacing, labels)
        uncertainty[case] = case_uncertainty(prediction, qc_threshold)
        voxel_ml = float(np.prod(spacing)) / 1000.0
        class_ml[case] = {"predicted": class_volumes_ml(prediction.labels.numpy(), voxel_ml, labels), "reference": class_volumes_ml(label[0].numpy(), voxel_ml, labels)}
    summary = summarise(per_case)
    case_dice = {case: nanmean([v["dice"] for v in m.values()]) for case, m in per_case.items()}
    worst = min(case_dice, key=case_dice.get) if case_dice else None
    return {
        "cases": per_case,
        **summary,
        "worst_case": {"case": worst, "mean_dice": case_dice.get(worst)} if worst else None,
        "seconds_per_volume": float(np.median(seconds)) if seconds else math.nan,
        "uncertainty": uncertainty,
        "orientation": orientation,
        "class_volumes_ml": class_ml,
        "clinical": clinical_agreement(class_ml, labels),
        "qc_threshold_from_this_split": choose_threshold([u["entropy"] or math.nan for u in uncertainty.values()], list(case_dice.values())) if per_case else None,
    }


def clinical_agreement(class_ml: dict[str, dict[str, dict[str, float]]], labels: dict[int, str]) -> dict[str, Any] | None:
    """Per patient (ED/ES pairs among the cases) the indices from the predicted and the reference masks, and
    their agreement per index; None when the model's classes are not the cardiac ones."""
    if cardiac.missing_classes(list(labels.values())):
        return None
    pairs = cardiac.pair_phases(dict.fromkeys(class_ml))
    patients = {}
    for patient, pair in sorted(pairs.items()):
        patients[patient] = {
            source: cardiac.cardiac_indices(class_ml[pair["ed"]][source], class_ml[pair["es"]][source]) for source in ("predicted", "reference")
        } | {"ed": pair["ed"], "es": pair["es"]}
    rows = {
        index: cardiac.agreement([p["predicted"][index] if p["predicted"][index] is not None else math.nan for p in patients.values()], [p["reference"][index] if p["reference"][index] is not None else math.nan for p in patients.values()])
        for index in cardiac.INDICES
    }
    return {"patients": patients, "agreement": rows, "units": cardiac.UNITS}


def evaluate_checkpoint(
    runs: Sequence[str | Path],
    *,
    card: str | None = None,
    split: str = "test",
    root: str | Path | None = None,
    output: str | Path,
    tta: bool = True,
    orientation_search: bool = False,
    device: str | torch.device = "cpu",
) -> tuple[dict[str, Any], Path]:
    """The ensemble of ``runs`` on ``card``'s ``split``; writes ``output``/metrics.json (never beside the
    checkpoints: the shipped model lies inside the installed package)."""
    if split not in {"train", "val", "test", "all"}:
        raise MedsuiteError("--split", f"unknown split {split!r}", "use train, val, test or all")
    paths = resolve_checkpoints(runs)
    target = check_output_dir(output) / "metrics.json"  # before minutes of work, not after
    ensemble = load_ensemble(paths, device)
    first = ensemble[0]
    data_card = load_card(card or first.card or first.config.data.card)
    transform = load_transforms(data_card, orientation=None, rule=first.intensity)
    volumes = make_dataset(data_card, None if split == "all" else split, root=root or first.config.data.root, transform=transform)
    metrics = evaluate_volumes([(m.model, m.config) for m in ensemble], volumes, first.labels, tta=tta, orientation_search=orientation_search)
    report = new_report("evaluate segmentation", parameters={"checkpoints": [str(p) for p in paths], "card": data_card.id, "split": split, "tta": tta, "orientation_search": orientation_search, "device": str(device)})
    report.update(metrics)
    write_json(target, report)
    return report, target


def metrics_table(metrics: dict[str, Any]) -> Table:
    table = Table(title=f"{len(metrics['cases'])} volumes, {metrics['seconds_per_volume']:.2f} s/volume (median)")
    for column in ("class", "Dice", "HD95 (mm)"):
        table.add_column(column)
    for name, values in metrics["per_class"].items():
        table.add_row(name, f"{values['dice']:.4f}", f"{values['hd95']:.2f}")
    table.add_row("mean", f"{metrics['mean_dice']:.4f}", f"{metrics['mean_hd95']:.2f}")
    if metrics.get("worst_case"):
        table.add_row(f"worst: {metrics['worst_case']['case']}", f"{metrics['worst_case']['mean_dice']:.4f}", "")
    return table


def clinical_table(metrics: dict[str, Any]) -> Table | None:
    clinical = metrics.get("clinical")
    if not clinical or not clinical["patients"]:
        return None
    table = Table(title=f"clinical indices vs reference masks, {len(clinical['patients'])} patients")
    for column in ("index", "MAE", "r", "bias", "95% limits"):
        table.add_column(column)
    for index, a in clinical["agreement"].items():
        unit = clinical["units"][index]
        table.add_row(f"{index} ({unit})", f"{a['mae']:.2f}", f"{a['correlation']:.3f}", f"{a['bias']:+.2f}", f"{a['loa_low']:+.2f} .. {a['loa_high']:+.2f}")
    return table
