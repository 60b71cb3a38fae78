"""Checkpoints that carry their config and data-card id, saved atomically, loaded with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medsuite import __version__
from medsuite.errors import MedsuiteError
from medsuite.io import atomic_path

FORMAT = "medsuite-checkpoint-v1"


def save_checkpoint(target: str | Path, *, kind: str, state: dict[str, Any], config: dict[str, Any], **extra: Any) -> Path:
    """``kind`` names the pipeline ('segmentation', 'registration'...) so a wrong file is refused on load."""
    target = Path(target)
    payload = {"format": FORMAT, "kind": kind, "medsuite": __version__, "state": state, "config": config, **extra}
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def load_checkpoint(path: str | Path, *, kind: str | tuple[str, ...], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``kind`` may list several accepted kinds (``--init`` takes an encoder or a whole segmentation model)."""
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else kind
    if not path.is_file():
        raise MedsuiteError(path, "no such checkpoint", "check the path or train one first")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises pickle/zip/runtime errors for damaged files
        raise MedsuiteError(path, f"checkpoint is damaged or not a checkpoint ({type(exc).__name__})", "re-train or restore the file") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise MedsuiteError(path, "is not a medsuite checkpoint", "give a checkpoint written by medsuite train")
    if payload.get("kind") not in kinds:
        wanted = " or ".join(kinds)
        raise MedsuiteError(path, f"is a {payload.get('kind')} checkpoint, not {wanted}", f"give a {wanted} checkpoint")
    return payload
