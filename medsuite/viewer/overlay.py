"""Label overlays: one colour per label, opacity, filled or outline (label volumes: ``medsuite.data.labels``)."""

from __future__ import annotations

import numpy as np
from skimage.segmentation import find_boundaries

# Distinct, colour-blind-friendly hues (Okabe-Ito), then matplotlib's tab20 for more labels.
_BASE_COLOURS = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167)]


def label_colour(label: int) -> tuple[int, int, int]:
    if label <= 0:
        raise ValueError("label 0 is background and has no colour")
    if label <= len(_BASE_COLOURS):
        return _BASE_COLOURS[label - 1]
    from matplotlib import colormaps

    r, g, b, _ = colormaps["tab20"]((label - len(_BASE_COLOURS) - 1) % 20)
    return int(r * 255), int(g * 255), int(b * 255)


def overlay_labels(rgb: np.ndarray, labels: np.ndarray, *, opacity: float = 0.4, outline: bool = False) -> np.ndarray:
    """Blend each label's colour over ``rgb`` (H, W, 3 uint8); outline mode paints only the borders, opaque."""
    if rgb.shape[:2] != labels.shape:
        raise ValueError(f"image {rgb.shape[:2]} and labels {labels.shape} differ in shape")
    out = rgb.astype(np.float32)
    labels = np.asarray(labels).astype(np.int64)
    for label in np.unique(labels):
        if label <= 0:
            continue
        region = labels == label
        if outline:
            region = find_boundaries(region, mode="inner")
            alpha = 1.0
        else:
            alpha = float(np.clip(opacity, 0.0, 1.0))
        out[region] = (1.0 - alpha) * out[region] + alpha * np.asarray(label_colour(int(label)), dtype=np.float32)
    return (out + 0.5).astype(np.uint8)

