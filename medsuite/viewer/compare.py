"""Comparing two aligned images: checkerboard, difference, fade and flicker (PNG only)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from skimage.util import compare_images

COMPARE_MODES = ("checkerboard", "difference", "fade")


def _unit(grey: np.ndarray) -> np.ndarray:
    return np.asarray(grey, dtype=np.float32) / 255.0


def compare_grey(fixed: np.ndarray, warped: np.ndarray, mode: str, *, tiles: int = 8, fade: float = 0.5) -> np.ndarray:
    """A uint8 grey image mixing two windowed (uint8) views.

    ``checkerboard`` alternates ``tiles`` x ``tiles`` squares (skimage ``compare_images``);
    ``difference`` is |fixed - warped|; ``fade`` is (1 - fade) * fixed + fade * warped.
    """
    if fixed.shape != warped.shape:
        raise ValueError(f"shapes differ: {fixed.shape} vs {warped.shape}")
    a, b = _unit(fixed), _unit(warped)
    if mode == "checkerboard":
        mixed = compare_images(a, b, method="checkerboard", n_tiles=(tiles, tiles))
    elif mode == "difference":
        mixed = compare_images(a, b, method="diff")
    elif mode == "fade":
        mixed = (1.0 - fade) * a + fade * b
    else:
        raise ValueError(f"unknown comparison {mode!r}; choose one of {COMPARE_MODES}")
    return (np.clip(mixed, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def to_png(rgb: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB (or grey) uint8 image (light compression: encoding is per rerun)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def flicker_png(frames: list[np.ndarray], period_ms: int = 600) -> bytes:
    """An animated PNG cycling through ``frames``: the browser flickers fixed/warped with no rerun."""
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="PNG", save_all=True, append_images=images[1:], duration=period_ms, loop=0)
    return buffer.getvalue()
