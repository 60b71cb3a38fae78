"""Whole-volume prediction: 2D slice-wise (resized slices or sliding windows) or 3D sliding window; mirroring
test-time augmentation and ensembles of checkpoints, averaged in probability space.

Mirroring TTA flips the two in-plane axes of the stack (none, either, both), predicts, and flips each
probability map back before averaging. Flipping and un-flipping is exact on the voxel grid, so it can never put
a label in the wrong place; what it changes is what the network sees: a single in-plane mirror shows the heart
with its handedness reversed (the RV on the other side of the septum), which a model trained with flips has
seen and one trained without has not. So a member mirrors only if it was trained with ``train.flips``: the
shipped neunet_acdc.pt was not, and mirroring it drops a validation volume from 0.936 to 0.687 mean Dice (and
the 180-degree rotation alone to 0.715; docs/segmentation.md). The through-plane axis (base to apex) is never
flipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from monai.inferers import sliding_window_inference
from monai.transforms import KeepLargestConnectedComponent
from torch import nn

from medsuite.segmentation.config import PostprocessSection, SegmentationConfig
from medsuite.segmentation.data import resize_images, resize_logits

Member = tuple[nn.Module, SegmentationConfig]


@dataclass
class Prediction:
    """One volume's prediction: mean class probabilities (C, H, W, S; sum to 1 over C), the labels (their
    argmax, postprocessed) and every member's own argmax (one per model x mirror) for disagreement."""

    probabilities: torch.Tensor
    labels: torch.Tensor
    member_labels: list[torch.Tensor]


def trained_with_mirrors(config: SegmentationConfig) -> bool:
    return config.train.augment and config.train.flips


def mirror_axes(slice_axis: int, tta: bool) -> list[tuple[int, ...]]:
    """The flips TTA averages over: none, each in-plane axis, both (a 180-degree in-plane rotation)."""
    if not tta:
        return [()]
    a, b = (axis for axis in range(3) if axis != slice_axis)
    return [(), (a,), (b,), (a, b)]


@torch.no_grad()
def predict_logits(model: nn.Module, image: torch.Tensor, config: SegmentationConfig, *, slice_axis: int = 2, batch: int = 32) -> torch.Tensor:
    """Class scores (C, H, W, S) of a normalised (H, W, S) float volume on its own grid (the in-plane resize
    is inverted inside)."""
    model.eval()
    if config.model.spatial_dims == 3:
        return _logits_3d(model, image, config)
    return _logits_slices(model, image, config, slice_axis, batch)


def _logits_3d(model: nn.Module, image: torch.Tensor, config: SegmentationConfig) -> torch.Tensor:
    device = next(model.parameters()).device
    roi = config.model.roi_size or tuple(image.shape)
    logits = sliding_window_inference(image[None, None].to(device), roi_size=roi, sw_batch_size=1, predictor=model, overlap=0.25, mode="gaussian")
    return logits[0].cpu()


def _logits_slices(model: nn.Module, image: torch.Tensor, config: SegmentationConfig, slice_axis: int, batch: int) -> torch.Tensor:
    device = next(model.parameters()).device
    stack = image.movedim(slice_axis, 0)[:, None]  # (S, 1, H, W)
    size = stack.shape[2:]
    scores = []
    for start in range(0, stack.shape[0], batch):
        chunk = stack[start : start + batch].to(device)
        if config.data.inplane == "native":  # patches of the native grid, blended where windows overlap
            logits = sliding_window_inference(chunk, roi_size=config.data.image_size, sw_batch_size=batch, predictor=model, overlap=0.25, mode="gaussian")
        else:
            logits = resize_logits(model(resize_images(chunk, config.data.image_size)), size)
        scores.append(logits.cpu())
    return torch.cat(scores).movedim(0, 1).movedim(1, slice_axis + 1)  # (S, C, H, W) -> (C, ...) with S back in place


def postprocess(labels: torch.Tensor, section: PostprocessSection, n_classes: int) -> torch.Tensor:
    if section.largest_component:
        keep = KeepLargestConnectedComponent(applied_labels=list(range(1, n_classes)), independent=True)
        return keep(labels[None])[0]
    return labels


def predict_ensemble(members: Sequence[Member], image: torch.Tensor, *, slice_axis: int = 2, tta: bool = True) -> Prediction:
    """Every member model on every mirror of ``image`` (when TTA is on and the member was trained with flips);
    probabilities averaged, then argmax and the first member's postprocessing."""
    total: torch.Tensor | None = None
    member_labels = []
    for model, config in members:
        for axes in mirror_axes(slice_axis, tta and trained_with_mirrors(config)):
            flipped = image.flip(axes) if axes else image
            probabilities = torch.softmax(predict_logits(model, flipped, config, slice_axis=slice_axis), dim=0)
            if axes:
                probabilities = probabilities.flip([a + 1 for a in axes])
            member_labels.append(probabilities.argmax(0).to(torch.uint8))
            total = probabilities if total is None else total + probabilities
    mean = total / len(member_labels)
    config = members[0][1]
    labels = postprocess(mean.argmax(0), config.postprocess, mean.shape[0])
    return Prediction(mean, labels, member_labels)


def predict_volume(model: nn.Module, image: torch.Tensor, config: SegmentationConfig, *, slice_axis: int = 2, tta: bool = False) -> torch.Tensor:
    """Labels (H, W, S) of one model on a normalised (H, W, S) volume (training's validation, benchmarks)."""
    return predict_ensemble([(model, config)], image, slice_axis=slice_axis, tta=tta).labels
