"""Label maps as numbers: the volume of each label in ml, the one function reports and the viewer share."""

from __future__ import annotations

import numpy as np


def label_volumes_ml(labels: np.ndarray, voxel_volume_ml: float, names: dict[int, str] | None = None) -> list[dict[str, object]]:
    """One row per label, in label order: every named label (0 voxels when absent) and every other non-zero
    label present; each row has the label id, its name (``label N`` without one), voxel count and ml."""
    values, counts = np.unique(np.asarray(labels).astype(np.int64), return_counts=True)
    found = {int(v): int(c) for v, c in zip(values, counts) if v > 0}
    names = names or {}
    return [
        {"label": v, "name": names.get(v, f"label {v}"), "voxels": found.get(v, 0), "volume_ml": round(found.get(v, 0) * voxel_volume_ml, 3)}
        for v in sorted({*found, *(k for k in names if k > 0)})
    ]
