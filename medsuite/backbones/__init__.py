"""Encoder factory: every pipeline gets its encoder here, so ``backbone: cnn | snn | hebbian`` is one switch.

An encoder maps an image to a list of feature maps, one per stage, finest first; decoders and heads
consume that list. New kinds register themselves with :func:`register_backbone`.
"""

from __future__ import annotations

from typing import Any

from medsuite.backbones.base import BACKBONES, Encoder, EncoderSpec, make_encoder, register_backbone

__all__ = ["BACKBONES", "CNNEncoder", "Encoder", "EncoderSpec", "make_encoder", "register_backbone"]


def __getattr__(name: str) -> Any:
    """``CNNEncoder`` on first use: its module imports MONAI (~3 s), which reading a config does not need."""
    if name == "CNNEncoder":
        from medsuite.backbones.cnn import CNNEncoder

        return CNNEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
