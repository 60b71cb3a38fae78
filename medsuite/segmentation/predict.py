"""Whole-volume prediction: 2D slice-wise (resized slices or sliding windows) or 3D sliding window."""

from __future__ import annotations

import torch
from monai.inferers import sliding_window_inference
from monai.transforms import KeepLargestConnectedComponent

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
