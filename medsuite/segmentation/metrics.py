"""Per-class Dice and HD95 of one volume (MONAI metrics), their mean over volumes, and class volumes in ml."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from monai.networks.utils import one_hot


def volume_metrics(pred: torch.Tensor, label: torch.Tensor, spacing: Sequence[float], labels: Mapping[int, str]) -> dict[str, dict[str, float]]:
    """Dice and HD95 (mm) per foreground class of one volume, keyed by the class names in ``labels``
    (value -> name, from the card's label_map); NaN where a class is absent from both."""
    n_classes = max(labels) + 1
    p = one_hot(pred[None, None].long(), n_classes)
    g = one_hot(label[None, None].long(), n_classes)
    dice = compute_dice(p, g, include_background=False, ignore_empty=True)[0]
    with warnings.catch_warnings():  # empty classes warn inside MONAI; they are reported as NaN below
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(p, g, include_background=False, percentile=95, spacing=list(map(float, spacing)))[0]
    out = {}
    for c, name in sorted(labels.items()):
        present = bool(p[0, c].any()) and bool(g[0, c].any())
        out[name] = {"dice": float(dice[c - 1]), "hd95": float(hd[c - 1]) if present else math.nan}
    return out


def nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarise(per_case: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Mean over cases per class (NaNs skipped) and the mean over classes."""
    classes = list(next(iter(per_case.values())).keys()) if per_case else []
    mean = {c: {k: nanmean([m[c][k] for m in per_case.values()]) for k in ("dice", "hd95")} for c in classes}
    return {"per_class": mean, "mean_dice": float(np.mean([v["dice"] for v in mean.values()])), "mean_hd95": float(np.mean([v["hd95"] for v in mean.values()]))}


def class_volumes_ml(labels: np.ndarray, voxel_ml: float, names: Mapping[int, str]) -> dict[str, float]:
    """Volume (ml) of every named class of a label volume."""
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64), minlength=max(names) + 1)
    return {name: round(float(counts[value]) * voxel_ml, 3) for value, name in names.items()}
