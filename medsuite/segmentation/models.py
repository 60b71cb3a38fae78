"""One factory over neU-Net and the MONAI U-Net family; the backbone section shapes every encoder.

MONAI's networks build their own encoders, so for them the ``backbone`` section gives channels and
strides (``kind: cnn`` only); neU-Net builds its encoder with ``make_encoder`` and so takes any kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.networks.nets import AttentionUnet, BasicUNetPlusPlus, SwinUNETR, UNet
from torch import nn

from medsuite.data.cards import load_card
from medsuite.data.transforms import IntensityRule, rule_for_modality
from medsuite.errors import MedsuiteError
from medsuite.segmentation.config import SegmentationConfig
from medsuite.segmentation.labels import checkpoint_labels
from medsuite.segmentation.neunet import NeUNet


class FirstOutput(nn.Module):
    """UNet++ returns a list of (deep-supervision) outputs; the full-resolution one is first."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


def _plain_strides(strides: list) -> list[int]:
    if any(not isinstance(s, int) for s in strides):
        raise MedsuiteError("backbone.strides", "per-axis strides are supported by neunet only", "give integer strides or use model: neunet")
    return [int(s) for s in strides]


def make_model(config: SegmentationConfig) -> nn.Module:
    name, dims, out = config.model.name, config.model.spatial_dims, config.model.out_channels
    backbone = {**config.backbone.model_dump(), "spatial_dims": dims}
    if name == "neunet":
        return NeUNet(backbone, out, bands=config.model.wavelet_bands, decoder=config.model.decoder, head_readout=config.model.head_readout or "spikes")
    if backbone.get("kind", "cnn") != "cnn":
        raise MedsuiteError("backbone.kind", f"{name} builds its own CNN encoder (kind {backbone['kind']!r} asked)", "use model: neunet for snn/hebbian encoders")
    channels = [int(c) for c in backbone.get("channels", (16, 32, 64, 128))]
    strides = _plain_strides(list(backbone.get("strides", (1, 2, 2, 2))))
    in_ch = int(backbone.get("in_channels", 1))
    down = strides[1:]  # MONAI nets downsample from their first layer: the stem stage has no counterpart
    if name == "unet":
        return UNet(dims, in_ch, out, channels=channels, strides=down, num_res_units=1, norm="instance")
    if name == "attention_unet":
        return AttentionUnet(dims, in_ch, out, channels=channels, strides=down)
    if name == "unetpp":
        c = channels + [channels[-1] * 2] * (5 - len(channels))  # UNet++ has five fixed levels
        return FirstOutput(BasicUNetPlusPlus(dims, in_ch, out, features=(c[0], c[0], c[1], c[2], c[3], c[0])))
    if name == "swinunetr":
        return SwinUNETR(in_ch, out, feature_size=12, spatial_dims=dims, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24))
    raise MedsuiteError("model.name", f"unknown model {name!r}", "use neunet, unet, unetpp, attention_unet or swinunetr")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass
class TrainedModel:
    """A segmentation checkpoint loaded for inference: the network (eval mode), its config and class names."""

    model: nn.Module
    config: SegmentationConfig
    labels: dict[int, str]
    path: Path
    checkpoint: dict[str, Any]

    @property
    def card(self) -> str | None:
        return self.checkpoint.get("card")

    @property
    def intensity(self) -> IntensityRule:
        """The normalisation it was trained with (checkpoints from before rules were stored: their card's)."""
        return self.config.data.intensity or rule_for_modality(load_card(self.card or self.config.data.card).acquisition.modalities[0])


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """A checkpoint (or a bundle folder of ``medsuite models export``) made ready: the one place segmentation
    does it, through ``medsuite.checkpoints.load_model`` (weights only, sha256 checked)."""
    from medsuite.checkpoints import load_model
    from medsuite.export.bundle import is_bundle, load_bundle

    loaded = load_bundle(Path(path), device=device) if is_bundle(Path(path)) else load_model(path, "segmentation", device=device)
    return TrainedModel(loaded.model, loaded.config, checkpoint_labels(loaded.payload), Path(path), loaded.payload)


def resolve_checkpoints(paths: Sequence[str | Path]) -> list[Path]:
    """``--model`` values to checkpoint files: a file; a bundle folder; a training run folder (its best.pt); or a
    folder of fold runs (``fold_*/best.pt``) or of checkpoint files (``*.pt``), every one an ensemble member."""
    from medsuite.export.bundle import is_bundle

    found: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir() and is_bundle(item):
            found.append(item)  # a bundle folder is one member
        elif item.is_dir():
            members = [item / "best.pt"] if (item / "best.pt").is_file() else sorted(item.glob("fold_*/best.pt")) or sorted(item.glob("*.pt"))
            if not members:
                raise MedsuiteError(item, "holds no checkpoint (best.pt, fold_*/best.pt or *.pt)", "give a checkpoint file or a folder of them")
            found += members
        else:
            found.append(item)  # a missing file is reported by load_checkpoint
    return found


def load_ensemble(paths: Sequence[Path], device: str | torch.device = "cpu") -> list[TrainedModel]:
    """Ensemble members; they must agree on the classes they predict."""
    members = [load_trained(path, device) for path in paths]
    for member in members[1:]:
        if member.labels != members[0].labels:
            raise MedsuiteError(member.path, f"predicts {member.labels}, unlike {members[0].path.name} ({members[0].labels})", "ensemble only models trained on the same label_map")
        if member.intensity != members[0].intensity:
            raise MedsuiteError(member.path, f"normalises intensities otherwise than {members[0].path.name}", "ensemble only models trained with the same data.intensity rule")
    return members
