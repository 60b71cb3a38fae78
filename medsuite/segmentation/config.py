"""The segmentation pipeline YAML (``medsuite/pipelines/segmentation_*.yaml``), validated by pydantic."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medsuite.data.transforms import IntensityRule

from medsuite.backbones import EncoderSpec

MODEL_NAMES = ("neunet", "unet", "unetpp", "attention_unet", "swinunetr")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSection(Strict):
    card: str = "acdc_h5"
    root: str | None = Field(None, description="overrides the card's layout.root")
    inplane: Literal["resize", "native"] = Field(
        "resize",
        description="resize: each whole slice resized to image_size; native: image_size patches of the native grid "
        "(foreground-biased in training, sliding window at inference), so thin structures keep full resolution",
    )
    image_size: tuple[int, int] = Field((128, 128), description="in-plane size the network sees (resized slice or patch)")
    intensity: IntensityRule | None = Field(None, description="intensity normalisation; null: the card modality's rule (training writes the rule it used into the checkpoint)")
    limit: int | None = Field(None, description="use only the first N volumes of each split (smoke runs)")
    train_patients: int | None = Field(None, ge=1, description="train on every volume of the train split's first N patients only (label efficiency)")
    folds: int = Field(5, ge=2, description="cross-validation: the card's train patients cut into this many patient-level folds")
    fold: int | None = Field(
        None, ge=0, description="train on all folds but this one and select the model on it (the card's val split is then left alone); None: train split / val split"
    )

    @model_validator(mode="after")
    def _fold_exists(self) -> DataSection:
        if self.fold is not None and self.fold >= self.folds:
            raise ValueError(f"fold {self.fold} does not exist among folds 0..{self.folds - 1}")
        return self


class ModelSection(Strict):
    name: Literal["neunet", "unet", "unetpp", "attention_unet", "swinunetr"] = "neunet"
    spatial_dims: Literal[2, 3] = 2
    out_channels: int = 4
    wavelet_bands: Literal["all", "approx", "detail"] = Field("all", description="neU-Net: which Haar sub-bands feed each encoder scale")
    roi_size: tuple[int, ...] | None = Field(None, description="3D models: sliding-window patch size")
    decoder: Literal["analog", "spiking"] = Field(
        "analog", description="neU-Net: analog (sub-pixel conv blocks) or spiking (spike-driven blocks of LIF neurons, for backbone kind: snn; a spiking neU-Net)"
    )
    head_readout: Literal["spikes", "membrane"] | None = Field(
        None, description="spiking decoder: its head reads the last block's spikes (accumulates only) or membrane potentials (the head costs MACs; smoother); None: spikes"
    )


class TrainSection(Strict):
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-5
    augment: bool = True
    augmentation: Literal["basic", "nnunet"] = Field(
        "basic",
        description="basic: rotation +-15 deg, scaling +-15 %, gamma; nnunet: nnU-Net-strength rotation (any angle), scaling 0.7-1.4, "
        "elastic deformation, gamma (also inverted), contrast, brightness, bias field, Gaussian noise and blur, simulated low resolution",
    )
    flips: bool = Field(False, description="random in-plane flips (mirrored hearts: orientation invariance; TTA then mirrors too)")
    zoom_range: tuple[float, float] = Field(
        (1.0, 1.0), description="random isotropic zoom of whole slices (>1 enlarges): robustness to finer pixel spacings than the training scans'"
    )
    zoom_prob: float = Field(0.25, ge=0.0, le=1.0, description="probability of that zoom per slice")
    val_every: int = Field(1, ge=1, description="validate every N epochs (and after the last): whole-volume validation costs more than an epoch")
    max_minutes: float | None = Field(None, description="stop after the epoch that passes this wall time")
    patience: int | None = Field(None, ge=1, description="early stopping: stop once this many validations in a row have not beaten the best (best.pt keeps the best)")
    workers: int = Field(0, ge=0, description="data-loader worker processes for augmentation (0: in the training process; a GPU machine wants several)")
    loss: Literal["dice_ce", "tet"] = Field(
        "dice_ce", description="dice_ce: on the time-averaged logits; tet (spiking decoder): DiceCE on every time step's logits plus a small MSE pull (Deng et al., ICLR 2022)"
    )
    tet_lambda: float = Field(1e-3, ge=0.0, lt=1.0, description="TET: weight of the MSE pull of every step's logits toward 1")
    time_steps: Literal["fixed", "mixed"] = Field(
        "fixed", description="fixed: every stage runs backbone.time_steps; mixed (snn backbone): mixed time-step training (MTT), each step sums mtt_configs "
        "sampled per-stage T in 1..time_steps, so the model can run at fewer steps; validation and the checkpoint use time_steps"
    )
    mtt_configs: int = Field(3, ge=1, description="mixed time steps: sampled configurations (forward/backward passes) per optimiser step")


class PostprocessSection(Strict):
    largest_component: bool = Field(False, description="keep each class's largest 3D connected component (drops islands far from the heart)")


class SegmentationConfig(Strict):
    name: str = "segmentation"
    data: DataSection = DataSection()
    model: ModelSection = ModelSection()
    backbone: EncoderSpec = Field(default_factory=lambda: EncoderSpec(kind="cnn", spatial_dims=2, in_channels=1, channels=[16, 32, 64, 128], strides=[1, 2, 2, 2], norm="instance"))
    train: TrainSection = TrainSection()
    postprocess: PostprocessSection = PostprocessSection()
    seed: int = 0

    @model_validator(mode="after")
    def _spiking_options_fit(self) -> SegmentationConfig:
        """The spiking options need the parts they act on: a misplaced one is an error, not silently unused."""
        spiking_decoder = self.model.decoder == "spiking"
        if spiking_decoder and (self.model.name != "neunet" or self.backbone.kind != "snn"):
            raise ValueError("model.decoder: spiking needs model.name: neunet and backbone.kind: snn")
        if self.model.head_readout is not None and not spiking_decoder:
            raise ValueError("model.head_readout is an option of model.decoder: spiking")
        if self.model.name == "neunet" and "head_readout" in (self.backbone.model_extra or {}):
            raise ValueError("backbone.head_readout: for neU-Net set model.head_readout (with model.decoder: spiking)")
        if self.train.loss == "tet" and not spiking_decoder:
            raise ValueError("train.loss: tet needs per-step logits: set model.decoder: spiking")
        if self.train.time_steps == "mixed" and self.backbone.kind != "snn":
            raise ValueError("train.time_steps: mixed needs backbone.kind: snn")
        return self
