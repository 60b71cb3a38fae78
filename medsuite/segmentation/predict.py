"""Whole-volume prediction (2D slice-wise or 3D sliding window) and per-class Dice / HD95 (MONAI metrics)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.metrics import compute_dice, compute_hausdorff_distance
from monai.networks.utils import one_hot
from monai.transforms import KeepLargestConnectedComponent

from medsuite.segmentation import LABELS
from medsuite.segmentation.config import SegmentationPipeline
from medsuite.segmentation.data import resize_images, resize_logits


@torch.no_grad()
def predict_volume(model: torch.nn.Module, image: torch.Tensor, config: SegmentationPipeline, *, slice_axis: int = 2, batch: int = 32) -> torch.Tensor:
    """Labels (H, W, S) of a normalised (H, W, S) float volume; the in-plane resize is inverted inside."""
    model.eval()
    volume = _predict_3d(model, image, config) if config.model.spatial_dims == 3 else _predict_slices(model, image, config, slice_axis, batch)
    if config.postprocess.largest_component:
        keep = KeepLargestConnectedComponent(applied_labels=list(range(1, config.model.out_channels)), independent=True)
        volume = keep(volume[None])[0]
    return volume


def _predict_3d(model: torch.nn.Module, image: torch.Tensor, config: SegmentationPipeline) -> torch.Tensor:
    device = next(model.parameters()).device
    roi = config.model.roi_size or tuple(image.shape)
    logits = sliding_window_inference(image[None, None].to(device), roi_size=roi, sw_batch_size=1, predictor=model, overlap=0.25, mode="gaussian")
    return logits.argmax(1)[0].cpu()


def _predict_slices(model: torch.nn.Module, image: torch.Tensor, config: SegmentationPipeline, slice_axis: int, batch: int) -> torch.Tensor:
    device = next(model.parameters()).device
    stack = image.movedim(slice_axis, 0)[:, None]  # (S, 1, H, W)
    size = stack.shape[2:]
    labels = []
    for start in range(0, stack.shape[0], batch):
        chunk = stack[start : start + batch].to(device)
        if config.data.inplane == "native":  # patches of the native grid, blended where windows overlap
            logits = sliding_window_inference(chunk, roi_size=config.data.image_size, sw_batch_size=batch, predictor=model, overlap=0.25, mode="gaussian")
        else:
            logits = resize_logits(model(resize_images(chunk, config.data.image_size)), size)
        labels.append(logits.argmax(1).cpu())
    return torch.cat(labels).movedim(0, slice_axis)


def volume_metrics(pred: torch.Tensor, label: torch.Tensor, spacing: Sequence[float], n_classes: int = 4) -> dict[str, dict[str, float]]:
    """Dice and HD95 (mm) per foreground class of one volume; NaN where a class is absent from both."""
    p = one_hot(pred[None, None].long(), n_classes)
    g = one_hot(label[None, None].long(), n_classes)
    dice = compute_dice(p, g, include_background=False, ignore_empty=True)[0]
    with warnings.catch_warnings():  # empty classes warn inside MONAI; they are reported as NaN below
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(p, g, include_background=False, percentile=95, spacing=list(map(float, spacing)))[0]
    out = {}
    for c in range(1, n_classes):
        present = bool(p[0, c].any()) and bool(g[0, c].any())
        out[LABELS.get(c, str(c))] = {"dice": float(dice[c - 1]), "hd95": float(hd[c - 1]) if present else math.nan}
    return out


def summarise(per_case: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Mean over cases per class (NaNs skipped) and the mean over classes."""
    classes = list(next(iter(per_case.values())).keys()) if per_case else []

    def nanmean(values: list[float]) -> float:
        finite = [v for v in values if not math.isnan(v)]
        return float(np.mean(finite)) if finite else math.nan

    mean = {c: {k: nanmean([m[c][k] for m in per_case.values()]) for k in ("dice", "hd95")} for c in classes}
    return {"per_class": mean, "mean_dice": float(np.mean([v["dice"] for v in mean.values()])), "mean_hd95": float(np.mean([v["hd95"] for v in mean.values()]))}


def evaluate_volumes(model: torch.nn.Module, volumes, config: SegmentationPipeline) -> dict[str, Any]:
    """Every volume of a loaded split (MetaTensors from the data layer): per-case metrics and their summary.

    HD95 is in the volume's own spacing (for index-space cards, the card's nominal spacing).
    """
    per_case = {}
    for i in range(len(volumes)):
        image, label = volumes[i]["image"], volumes[i]["label"]
        pred = predict_volume(model, image[0].as_tensor(), config)
        case = Path(str(image.meta.get("filename_or_obj", i))).name.split(".")[0]
        per_case[case] = volume_metrics(pred, label[0].as_tensor(), image.pixdim[:3].tolist(), config.model.out_channels)
    return {"cases": per_case, **summarise(per_case)}
