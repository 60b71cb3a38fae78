"""Checks on training data as it loads: one line naming the file, never a crash deep in a loss.

What ITK and nnU-Net's dataset checks refuse too: a truncated gzip volume, a 4D image where a 3D one is
expected, an image and label of different shapes, NaN/inf voxels.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.transforms import MapTransform

from medsuite.errors import MedsuiteError


def require_complete_gzip(path: str | Path) -> None:
    """Read a .gz file through to its end-of-stream check (CRC and length), before any reader meets it."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass
    except (EOFError, OSError, zlib.error) as exc:
        raise MedsuiteError(path, f"is a damaged or truncated gzip file ({type(exc).__name__})", "re-copy or re-export the file") from exc


class CheckLoadedd(MapTransform):
    """After loading (channel first): one channel, finite image, label of the image's spatial shape."""

    def __init__(self, image_key: str, label_key: str | None = None):
        super().__init__([image_key] + ([label_key] if label_key else []), allow_missing_keys=True)
        self.image_key, self.label_key = image_key, label_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        item = dict(data)
        image = item[self.image_key]
        source = _source(image, item.get("case"))
        if image.shape[0] != 1:
            raise MedsuiteError(source, f"is 4D ({image.shape[0]} frames or channels of {tuple(image.shape[1:])}) where a 3D volume is expected", "give one 3D frame per case (split the cine into frames)")
        if not torch.isfinite(torch.as_tensor(image)).all():
            raise MedsuiteError(source, "contains NaN or infinite voxels", "fix or mask them before training")
        label = item.get(self.label_key) if self.label_key else None
        if label is not None and tuple(label.shape[1:]) != tuple(image.shape[1:]):
            raise MedsuiteError(_source(label, item.get("case")), f"label shape {tuple(label.shape[1:])} differs from its image's {tuple(image.shape[1:])}", "give the label map drawn on this image")
        return item


def _source(tensor: Any, fallback: Any) -> str:
    meta = getattr(tensor, "meta", {}) or {}
    name = meta.get("filename_or_obj")
    return str(name[0] if isinstance(name, Sequence) and not isinstance(name, str) else name or fallback)
