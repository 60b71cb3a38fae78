"""Window/level: intensities to display grey levels, with the usual CT presets and an MR auto-window."""

from __future__ import annotations

import numpy as np

#: CT presets as (level, width) in Hounsfield units, the values radiology workstations ship with.
CT_PRESETS: dict[str, tuple[float, float]] = {
    "CT brain": (40.0, 80.0),
    "CT soft tissue": (40.0, 400.0),
    "CT lung": (-600.0, 1500.0),
    "CT bone": (400.0, 1800.0),
}
AUTO = "Auto (percentile)"
PRESET_NAMES = [AUTO, *CT_PRESETS]


def auto_window(array: np.ndarray, low: float = 1.0, high: float = 99.0) -> tuple[float, float]:
    """(level, width) spanning the low..high percentiles of the non-zero voxels.

    MR has no absolute scale, so the window follows the data; background zeros are left out so a
    head in a large field of view still gets contrast.
    """
    values = np.asarray(array, dtype=np.float32).ravel()
    foreground = values[values != 0]
    values = foreground if foreground.size else values
    # A strided sample keeps this fast on large volumes; percentiles barely move.
    step = max(1, values.size // 2_000_000)
    lo, hi = np.percentile(values[::step], [low, high])
    width = max(float(hi - lo), 1e-6)
    return float(lo + width / 2.0), width


def window_for(preset: str, array: np.ndarray) -> tuple[float, float]:
    if preset == AUTO:
        return auto_window(array)
    return CT_PRESETS[preset]


def apply_window(image: np.ndarray, level: float, width: float) -> np.ndarray:
    """Grey levels 0..255 (uint8): level - width/2 maps to black, level + width/2 to white."""
    width = max(float(width), 1e-6)
    scaled = (np.asarray(image, dtype=np.float32) - (level - width / 2.0)) / width
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(grey, dtype=np.uint8)[..., None], 3, axis=-1)

