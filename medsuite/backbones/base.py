"""The encoder contract and the registry behind ``make_encoder``."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from medsuite.errors import MedsuiteError


class EncoderSpec(BaseModel):
    """The part of a pipeline config that chooses and shapes its encoder."""

    model_config = ConfigDict(extra="allow")  # kinds add their own options (time steps, ...)

    kind: str = Field("cnn", description="cnn | snn | hebbian")
    spatial_dims: int = 3
    in_channels: int = 1
    channels: Sequence[int] = (16, 32, 64, 128)
    strides: Sequence[int | Sequence[int]] = (1, 2, 2, 2)
    norm: str = "instance"
    dropout: float = 0.0

    @model_validator(mode="after")
    def _options_of_its_kind(self) -> EncoderSpec:
        """Extra keys are allowed only as options of a kind (``KIND_OPTIONS``): switching ``kind:`` may leave
        another kind's options in place (unused), but a misspelt key is an error."""
        allowed = set().union(*KIND_OPTIONS.values())
        for key in self.model_extra or {}:
            if key not in allowed:
                near = difflib.get_close_matches(key, [*allowed, *type(self).model_fields], n=1, cutoff=0.5)
                hint = f"did you mean {near[0]!r}?" if near else f"kind {self.kind} takes: {', '.join(sorted(KIND_OPTIONS.get(self.kind, ()))) or 'no extra options'}"
                raise ValueError(f"unknown backbone key {key!r} ({hint})")
        return self


#: the extra spec keys each kind reads (documented in its module)
KIND_OPTIONS: dict[str, set[str]] = {
    "cnn": set(),
    "snn": {"time_steps", "beta", "threshold", "readout", "surrogate", "reset", "head_readout"},
    "hebbian": {"pretrain_epochs"},
}


class Encoder(nn.Module):
    """Base class: ``forward(x) -> list of stage outputs`` (finest first) with known channel counts."""

    out_channels: list[int]
    strides: list[int | Sequence[int]]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def warm_up(self, images: torch.Tensor, *, batch_size: int, seed: int) -> list[float]:
        """The kind's unsupervised pretraining on ``(N, C, ...)`` unlabelled images, which every trainer calls
        before its supervised steps (hebbian: SPHeRe's local losses). Returns its loss history; most kinds
        have none and return an empty list."""
        return []


BACKBONES: dict[str, Callable[[EncoderSpec], Encoder]] = {}

# Kinds whose module registers itself on import; imported lazily so optional extras stay optional (and
# MONAI, which the cnn kind's blocks come from, is not imported by code that only reads a config: ~3 s).
_LAZY_KINDS = {"cnn": "medsuite.backbones.cnn", "snn": "medsuite.backbones.snn", "hebbian": "medsuite.backbones.hebbian"}


def register_backbone(kind: str) -> Callable[[Callable[[EncoderSpec], Encoder]], Callable[[EncoderSpec], Encoder]]:
    def decorate(factory: Callable[[EncoderSpec], Encoder]) -> Callable[[EncoderSpec], Encoder]:
        BACKBONES[kind] = factory
        return factory

    return decorate


def make_encoder(spec: EncoderSpec | dict | None = None, **overrides) -> Encoder:
    """Build an encoder from a spec (or a dict, or keyword arguments)."""
    data = spec.model_dump() if isinstance(spec, EncoderSpec) else dict(spec or {})
    data.update(overrides)
    spec = EncoderSpec.model_validate(data)
    if spec.kind not in BACKBONES and spec.kind in _LAZY_KINDS:
        try:
            importlib.import_module(_LAZY_KINDS[spec.kind])
        except ImportError as exc:
            raise MedsuiteError("backbone", f"kind {spec.kind!r} needs an optional package ({exc.name})", 'install it with pip install -e ".[snn]"') from exc
    if spec.kind not in BACKBONES:
        raise MedsuiteError("backbone", f"unknown kind {spec.kind!r}", f"use one of: {', '.join(sorted({*BACKBONES, *_LAZY_KINDS}))}")
    return BACKBONES[spec.kind](spec)
