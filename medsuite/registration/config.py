"""The registration pipeline YAML (medsuite/pipelines/registration_girnet.yaml), validated by pydantic.

The defaults here equal that YAML (a test holds them equal), so the library API, `medsuite register` and
`medsuite train registration` give the same results wherever they are called from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from medsuite.backbones.base import EncoderSpec
from medsuite.data.intensity import IntensityRule


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a silent default


class LossWeights(Strict):
    """GIRNet's terms: the public code's inpainting weights (1, 2); smoothness 1.0 where it uses 3 (measured better here, README)."""

    similarity: float = Field(1.0, description="local NCC between the inpainted moving image warped to fixed, and fixed")
    symmetric: float = Field(1.0, description="SYM-Net inverse term: fixed warped by the inverse field vs the inpainted moving")
    smooth: float = Field(1.0, description="diffusion regulariser of the velocity field (public code: --smooth 3)")
    inpaint_fore: float = Field(1.0, description="inpainter: reconstruct a hidden region from its surroundings + atlas guide")
    inpaint_back: float = Field(2.0, description="inpainter: reconstruct the surroundings of a hidden region")
    generation: float = Field(1.0, description="mask generator: cover what the atlas-guided inpainting cannot reproduce")
    mask_tv: float = Field(0.005, description="total variation of the lesion mask (compact masks)")


class InstanceConfig(Strict):
    """Instance optimisation on one pair: multi-resolution, coarse to fine."""

    levels: list[int] = Field([4, 2, 1], description="image downsampling factor per level")
    steps: list[int] = Field([30, 20, 5], description="Adam steps per level at most (--steps N scales them to sum to N)")
    field_factor: int = Field(4, description="velocity grid downsampling (>= the level's): cheap integration, smooth fields")
    working_mm: float = Field(
        0.0,
        ge=0,
        description="an input finer than this is optimised on a grid of about this voxel size (levels and velocity grid scale by the nearest whole factor); the mask grows and outputs are written on the input's grid (0: always the input's own)",
    )
    learning_rate: float = 0.05
    mask_learning_rate: float = 0.3
    lesion_prior_logit: float = Field(-1.0, description="initial lesion logit without a trained mask generator")
    window: int = Field(7, description="local NCC window (voxels of the level)")
    integration_steps: int = 5
    lesion_threshold: float = Field(0.08, description="intensity gap (normalised) above which the mask grows")
    plateau_tolerance: float = Field(0.008, description="stop a level when its 5-step mean loss improves by less than this fraction (0: never)")
    min_steps: int = Field(10, description="steps a level always takes before the plateau test")
    mask_level: int = Field(2, description="downsampling factor of the level (one of levels) on which the lesion mask learns; finer levels keep it fixed")
    min_lesion_ml: float = Field(0.5, ge=0, description="a found mask smaller than this is reported as no lesion (written empty)")
    generator_start: bool = Field(False, description="start the lesion logits from a trained mask generator (else from the prior)")

    @model_validator(mode="after")
    def _mask_level_is_a_level(self) -> InstanceConfig:
        if self.mask_level not in self.levels:
            raise ValueError(f"instance.mask_level {self.mask_level} is not one of instance.levels {self.levels}")
        return self


class TrainConfig(Strict):
    pairs: int = Field(16, description="generated pairs (seeds 1000..)")
    resolution_mm: float = Field(4.0, description="the networks' grid")
    iterations: int = 560
    # GIRNet's alternation (one step per module every iteration) made the registration step degenerate while
    # the generator was untrained (docs/benchmarks.md), so training runs in two stages, as the shipped model did.
    registration_warmup: int = Field(
        500,
        ge=1,
        description="first stage: these iterations train the velocity net alone on the plain images; in the rest it stays frozen while the inpainter and the mask generator learn on its guides",
    )
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    checkpoint_every: int = 50
    seed: int = 0


# Brains on a zero background: percentiles of the tissue only; overshoot up to 1.5 kept (bright lesion rims).
REGISTRATION_INTENSITY = IntensityRule(kind="percentile", lower=1.0, upper=99.5, nonzero=True, clip=(0.0, 1.5))


class RegistrationConfig(Strict):
    data_card: str = "mni152_sample"
    intensity: IntensityRule = Field(REGISTRATION_INTENSITY, description="how both images are scaled for training and inference (stored in the checkpoint's config)")
    backbone: EncoderSpec = Field(default_factory=lambda: EncoderSpec(kind="cnn", spatial_dims=3, in_channels=2, channels=[8, 16, 16], strides=[1, 2, 2]))
    decoder_channels: list[int] = Field([16, 16], description="channels of the decoder stages (coarse to fine)")
    prealign_iterations: int = 60
    losses: LossWeights = Field(default_factory=LossWeights)
    instance: InstanceConfig = Field(default_factory=InstanceConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
