"""Encoder factory: every pipeline gets its encoder here, so ``backbone: cnn | snn | hebbian`` is one switch.

An encoder maps an image to a list of feature maps, one per stage, finest first; decoders and heads
consume that list. New kinds register themselves with :func:`register_backbone`.
"""

from __future__ import annotations

from medsuite.backbones.base import BACKBONES, Encoder, EncoderSpec, make_encoder, register_backbone
from medsuite.backbones.cnn import CNNEncoder

__all__ = ["BACKBONES", "CNNEncoder", "Encoder", "EncoderSpec", "make_encoder", "register_backbone"]
