"""Checkpoints: weights and plain-data config, loaded without unpickling code, checked by sha256.

A checkpoint is a ``torch.save`` of a dict holding only tensors and plain data (str, int, float, bool,
None, lists, dicts): ``torch.load(weights_only=True)`` then refuses any pickled object that would run code.
``sha256`` is a digest of everything else in the dict (every tensor's bytes, dtype and shape, every
value), so a flipped byte in the weights is an error, not a silently different mask.
``load_model(path, kind)`` is the one place a checkpoint becomes a ready model: its config is validated
by the pipeline's pydantic model, the network built from it and the weights loaded strictly.

Older checkpoints (``medsuite-checkpoint-v1``, no digest; or a config holding an option since removed) convert
once with ``python -m medsuite.checkpoints upgrade FILE...`` (still without unpickling code; weights untouched).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ValidationError

from medsuite import __version__
from medsuite.errors import MedsuiteError
from medsuite.io import atomic_path

FORMAT = "medsuite-checkpoint-v2"
OLD_FORMATS = ("medsuite-checkpoint-v1",)
UPGRADE = "python -m medsuite.checkpoints upgrade"
#: kind -> config options removed from its pipeline (dotted paths); ``upgrade`` moves them to ``retired_config``
RETIRED_OPTIONS: dict[str, tuple[str, ...]] = {
    "registration": ("train.schedule",),  # training is always staged now (GIRNet's alternation degenerated)
}


def weights_digest(payload: dict[str, Any]) -> str:
    """sha256 over every entry but ``sha256`` itself, in a fixed order (dict keys sorted)."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in payload.items() if k != "sha256"})
    return digest.hexdigest()


def _feed(digest: Any, value: Any) -> None:
    # Hand-written: torch has no canonical hash of a nested state; this walks it in a fixed order.
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{value.dtype}{tuple(value.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    elif isinstance(value, dict):
        digest.update(b"{")
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    else:
        digest.update(repr(value).encode())


def save_checkpoint(target: str | Path, *, kind: str, state: dict[str, Any], config: dict[str, Any], **extra: Any) -> Path:
    """``kind`` names the pipeline ('segmentation', 'registration'...) so a wrong file is refused on load.

    ``state``, ``config`` and ``extra`` must hold tensors and plain data only (no numpy arrays, no objects).
    """
    target = Path(target)
    payload = {"format": FORMAT, "kind": kind, "medsuite": __version__, "state": state, "config": config, **extra}
    payload["sha256"] = weights_digest(payload)
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    return target


def _read(path: Path, map_location: str | torch.device) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises pickle/zip/runtime errors for damaged or foreign files
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise MedsuiteError(path, "holds Python objects besides weights; refused, since loading it could run code", "use a checkpoint written by medsuite train (or one you trust converted with " + UPGRADE + ")") from exc
        raise MedsuiteError(path, f"checkpoint is damaged or not a checkpoint ({type(exc).__name__})", "re-train or restore the file") from exc


def load_checkpoint(path: str | Path, *, kind: str | tuple[str, ...], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checked payload. ``kind`` may list several accepted kinds (``--init`` takes an encoder or a whole
    segmentation model)."""
    path = Path(path)
    kinds = (kind,) if isinstance(kind, str) else kind
    if not path.is_file():
        raise MedsuiteError(path, "no such checkpoint", "check the path or train one first")
    payload = _read(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") not in (FORMAT, *OLD_FORMATS):
        raise MedsuiteError(path, "is not a medsuite checkpoint", "give a checkpoint written by medsuite train")
    if payload["format"] != FORMAT:
        raise MedsuiteError(path, f"is an older medsuite checkpoint ({payload['format']}, no weights checksum)", f"convert it once with {UPGRADE} {path}")
    if payload.get("sha256") != weights_digest(payload):
        raise MedsuiteError(path, "is damaged: its contents do not match the sha256 stored in it", "restore the file from a backup or re-train")
    if payload.get("kind") not in kinds:
        wanted = " or ".join(kinds)
        raise MedsuiteError(path, f"is a {payload.get('kind')} checkpoint, not {wanted}", f"give a {wanted} checkpoint")
    return payload


@dataclass
class LoadedModel:
    """A checkpoint made ready: the network (eval mode), its validated config and the checked payload
    (card id, epoch, metrics... of the run that wrote it)."""

    model: Any
    config: BaseModel
    payload: dict[str, Any]
    path: Path


def validated(path: Path, model: type[BaseModel], data: Any) -> Any:
    """``data`` (a checkpoint's config) validated by a pipeline's pydantic model, errors as one line."""
    from medsuite.config import validation_problems

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise MedsuiteError(path, "config inside the checkpoint is invalid: " + " | ".join(validation_problems(exc)), "use a checkpoint written by this medsuite version") from exc


def fill(path: Path, module: torch.nn.Module, state: dict[str, Any]) -> None:
    """Load ``state`` strictly into ``module``; a mismatch (a foreign or edited checkpoint) is one line."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedsuiteError(path, f"weights do not fit the model its config describes ({first})", "use a checkpoint written by this medsuite version") from exc


def _segmentation(path: Path, payload: dict[str, Any]) -> tuple[Any, BaseModel]:
    from medsuite.segmentation.config import SegmentationConfig
    from medsuite.segmentation.models import make_model

    config = validated(path, SegmentationConfig, payload["config"])
    model = make_model(config)
    fill(path, model, payload["state"])
    return model, config


def _registration(path: Path, payload: dict[str, Any]) -> tuple[Any, BaseModel]:
    from medsuite.registration.config import RegistrationConfig
    from medsuite.registration.networks import GIRNet

    config = validated(path, RegistrationConfig, payload["config"])
    model = GIRNet(config)
    fill(path, model, payload["state"])
    return model.requires_grad_(False), config  # instance optimisation fits the field and mask, never the weights


def _pretext(path: Path, payload: dict[str, Any]) -> tuple[Any, BaseModel]:
    from medsuite.pretext.model import PretextNet
    from medsuite.pretext.pretrain import PretextConfig, task_weight

    config = validated(path, PretextConfig, payload["config"])
    heatmaps = payload["state"].get("decoder.head.conv.weight")
    model = PretextNet(config.backbone, **({"heatmap_channels": heatmaps.shape[0]} if heatmaps is not None else {}), rotation=task_weight(config.weights, "rotation") > 0)
    fill(path, model, payload["state"])
    return model, config


def _encoder(path: Path, payload: dict[str, Any]) -> tuple[Any, BaseModel]:
    from medsuite.backbones import EncoderSpec, make_encoder

    spec = validated(path, EncoderSpec, (payload["config"] or {}).get("backbone"))
    model = make_encoder(spec)
    fill(path, model, payload["state"])
    return model, spec


def _concepts(path: Path, payload: dict[str, Any]) -> tuple[Any, BaseModel]:
    from medsuite.concepts.pipeline import ConceptModel

    model = ConceptModel.from_checkpoint(path, payload)
    return model, model.config


#: kind -> builder of (model, config) from a checked payload
BUILDERS: dict[str, Callable[[Path, dict[str, Any]], tuple[Any, BaseModel]]] = {
    "segmentation": _segmentation,
    "registration": _registration,
    "pretext": _pretext,
    "encoder": _encoder,
    "concepts": _concepts,
}


def load_model(path: str | Path, kind: str, *, device: str | torch.device = "cpu") -> LoadedModel:
    """The one way a checkpoint becomes a model: checked payload, validated config, strict weights, eval mode."""
    path = Path(path)
    payload = load_checkpoint(path, kind=kind)
    retired = _retired(payload)
    if retired:
        raise MedsuiteError(path, f"its config holds {', '.join(retired)}, an option this medsuite version removed", f"convert it once with {UPGRADE} {path}")
    model, config = BUILDERS[kind](path, payload)
    if isinstance(model, torch.nn.Module):
        model = model.to(device)
    return LoadedModel(model=model.eval(), config=config, payload=payload, path=path)


# ---------------------------------------------------------------------------------------------
# Converting older checkpoints (v1: no digest; the concept model kept numpy arrays)


def _plain(value: Any) -> Any:
    """numpy arrays and scalars to tensors and Python numbers, recursively (what weights_only loads)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return type(value)((k, _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _retired(payload: dict[str, Any]) -> dict[str, Any]:
    """The removed options (dotted path -> value) a checkpoint's config still holds."""
    found = {}
    for dotted in RETIRED_OPTIONS.get(payload.get("kind"), ()):
        *parents, key = dotted.split(".")
        section = payload.get("config")
        for part in parents:
            section = section.get(part) if isinstance(section, dict) else None
        if isinstance(section, dict) and key in section:
            found[dotted] = section[key]
    return found


def _without_retired(config: Any, retired: dict[str, Any]) -> Any:
    """A copy of ``config`` without the ``retired`` options."""
    import copy

    config = copy.deepcopy(config)
    for dotted in retired:
        *parents, key = dotted.split(".")
        section = config
        for part in parents:
            section = section[part]
        del section[key]
    return config


def upgrade(path: str | Path) -> Path:
    """Rewrite an older checkpoint in place: v1 as v2, and a config's removed options moved to
    ``retired_config`` (kept as a record of how the model was trained). The weights stay the same tensors.
    Reads it weights-only, allowing numpy arrays of numbers only (what v1 concept models held), so even an
    untrusted file cannot run code here."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise MedsuiteError(path, "no such checkpoint", "check the path")
    multiarray = (np._core if hasattr(np, "_core") else np.core).multiarray
    numpy_types = [np.ndarray, np.dtype, multiarray._reconstruct, *{type(np.dtype(t)) for t in (np.float32, np.float64, np.int64, np.int32, np.bool_)}]
    with torch.serialization.safe_globals(numpy_types):
        payload = _read(path, "cpu")
    if not isinstance(payload, dict) or payload.get("format") not in (FORMAT, *OLD_FORMATS):
        raise MedsuiteError(path, "is not a medsuite checkpoint", "give a checkpoint written by medsuite train")
    retired = _retired(payload)
    if payload["format"] == FORMAT and not retired:
        return path
    body = {k: _plain(v) for k, v in payload.items() if k not in ("format", "medsuite", "sha256")}
    if retired:
        body["config"] = _without_retired(body["config"], retired)
        body["retired_config"] = {**body.get("retired_config", {}), **retired}
    return save_checkpoint(path, **body)


def main(argv: list[str] | None = None) -> int:
    """``python -m medsuite.checkpoints upgrade FILE...``: convert older checkpoints in place."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or args[0] != "upgrade":
        print(f"usage: {UPGRADE} FILE...", file=sys.stderr)
        return 2
    for name in args[1:]:
        try:
            print(f"upgraded {upgrade(name)}")
        except MedsuiteError as exc:
            print(f"error: {exc.line()}", file=sys.stderr)
            return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
