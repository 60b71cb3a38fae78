"""Pretext pretraining: collect 2D samples with targets from exams and stacks, train, save the encoder.

Sources (pipeline YAML ``sources`` or a data card):
- ``dicom_exam`` / ``cinema_nifti`` (multi-view): task 1 for every view, task 2 for SAX stacks.
- ``nifti_stacks`` (SAX NIfTI files) and ``acdc_h5`` (index space): task 2 only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from medsuite.config import REPO_ROOT
from medsuite.data.transforms import IntensityRule, normalise_intensity, read_h5_volume, resize, rule_for_modality
from medsuite.errors import MedsuiteError

SourceKind = Literal["dicom_exam", "cinema_nifti", "nifti_stacks", "acdc_h5"]
CNN_2D = {"kind": "cnn", "spatial_dims": 2, "in_channels": 1, "channels": [16, 32, 64, 128], "strides": [2, 2, 2, 2], "norm": "instance"}
# A strided stem, as in the shipped segmentation pipeline (segmentation_neunet_acdc.yaml): CPU-affordable.


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")
    layout: SourceKind
    path: str = Field(description="folder, relative to the repository root unless absolute")
    limit: int | None = Field(None, description="at most this many exams / stacks / files")
    exclude: list[str] = Field(default_factory=list, description="file or folder names containing any of these are skipped (held-out patients)")

    def root(self) -> Path:
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else (REPO_ROOT / path).resolve()


class PretextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backbone: dict = Field(default_factory=lambda: dict(CNN_2D))
    sources: list[Source] = Field(default_factory=list)
    image_size: int = Field(96, ge=16, description="every 2D sample is resized to image_size^2")
    intensity: IntensityRule = Field(default_factory=lambda: rule_for_modality("MR"), description="per-volume normalisation (segmentation's MR rule, so fine-tuning sees the same intensities)")
    sigma_mm: float = Field(5.0, gt=0, description="Gaussian width of the line heatmaps")
    min_angle_deg: float = Field(5.0, ge=0)
    max_phases: int = Field(4, ge=1, description="cine phases used per view (evenly spaced)")
    weights: dict[Literal["orientation", "location"], float] = Field(default_factory=lambda: {"orientation": 1.0, "location": 1.0})
    iterations: int = Field(300, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    seed: int = 0
    device: str = "auto"


@dataclass
class Sample:
    image: np.ndarray  # (H, W) in [0, 1]
    heatmaps: np.ndarray  # (K, H, W)
    mask: np.ndarray  # (K,) 1 where a line exists
    location: float
    has_location: float


def exam_samples(exam, config: PretextConfig) -> list[Sample]:
    from medsuite.pretext.targets import exam_targets

    samples = []
    for item in exam_targets(exam, config.sigma_mm, config.min_angle_deg):
        frames = normalise_intensity(item.view.frames, config.intensity)  # one view's cine = one volume
        phases = np.unique(np.linspace(0, frames.shape[0] - 1, min(config.max_phases, frames.shape[0])).round().astype(int))
        for s in range(len(item.view.planes)):
            for t in phases:
                # heatmaps and image resized together, so the targets stay aligned
                stacked = resize(np.concatenate([frames[t, s][None], item.heatmaps[s]]), (config.image_size, config.image_size))
                located = item.locations is not None
                samples.append(Sample(stacked[0], stacked[1:], item.mask[s].copy(), float(item.locations[s]) if located else 0.0, float(located)))
    return samples


def stack_samples(stack: np.ndarray, locations: np.ndarray, config: PretextConfig, channels: int) -> list[Sample]:
    """Task-2-only samples from a SAX stack (S, H, W) and its slice locations."""
    empty_heat = np.zeros((channels, config.image_size, config.image_size), np.float32)
    stack = normalise_intensity(stack, config.intensity)
    size = (config.image_size, config.image_size)
    return [Sample(resize(stack[s], size), empty_heat, np.zeros(channels, np.float32), float(locations[s]), 1.0) for s in range(len(stack))]


def _kept(paths: Sequence[Path], source: Source) -> list[Path]:
    kept = [p for p in sorted(paths) if not any(x in p.name for x in source.exclude)]
    return kept[: source.limit] if source.limit else kept


def collect_samples(config: PretextConfig) -> tuple[list[Sample], dict]:
    """Every sample of every source, and a count per source for the report."""
    from medsuite.pretext.exams import VIEW_KINDS, read_dicom_exams, read_nifti_set
    from medsuite.pretext.geometry import planes_from_affine, slice_locations

    samples, counts = [], {}
    for source in config.sources:
        root = source.root()
        if not root.exists():
            raise MedsuiteError(root, f"source folder of layout {source.layout} does not exist", "fix sources[].path in the pipeline or pass --card with a card whose data is present")
        before = len(samples)
        if source.layout == "dicom_exam":
            exams = read_dicom_exams(root)
            for exam in exams[: source.limit] if source.limit else exams:
                samples += exam_samples(exam, config)
        elif source.layout == "cinema_nifti":
            folders = _kept([p for p in [root, *root.rglob("*")] if p.is_dir() and any(p.glob("*.nii*"))], source)
            for folder in folders:
                samples += exam_samples(read_nifti_set(folder), config)
        elif source.layout == "nifti_stacks":
            import nibabel as nib

            for file in _kept(list(root.rglob("sax*.nii*")), source):
                image = nib.load(str(file))
                stack = np.moveaxis(np.asarray(image.dataobj, dtype=np.float32).reshape(image.shape[:3]), 2, 0)
                samples += stack_samples(stack, slice_locations(planes_from_affine(image.affine, image.shape)), config, len(VIEW_KINDS))
        else:  # acdc_h5: no geometry; ACDC stores slices base to apex (see geometry.slice_locations)
            for file in _kept(list(root.glob("*.h5")), source):
                stack = np.moveaxis(read_h5_volume(str(file), "image").astype(np.float32), 2, 0)  # (slices, x, y), as NIfTI
                samples += stack_samples(stack, np.linspace(0, 1, len(stack)) if len(stack) > 1 else np.zeros(1), config, len(VIEW_KINDS))
        counts[f"{source.layout}:{source.path}"] = len(samples) - before
    if not samples:
        raise MedsuiteError("pipeline", "no pretext samples: the sources are empty", "list at least one exam or SAX stack under sources")
    return samples, counts


def pretext_loss(heat_pred, loc_pred, heat, mask, loc, has_loc, weights: dict) -> tuple:
    """Masked MSE per task (paper: MSE for both, weights 1:1); a batch without a task adds zero for it."""
    import torch

    per_channel = ((heat_pred - heat) ** 2).mean(dim=(2, 3))
    orientation = (per_channel * mask).sum() / mask.sum().clamp(min=1)
    location = (((loc_pred - loc) ** 2) * has_loc).sum() / has_loc.sum().clamp(min=1)
    total = weights.get("orientation", 1.0) * orientation + weights.get("location", 1.0) * location
    return total, orientation.detach(), location.detach()


def train_pretext(config: PretextConfig, samples: list[Sample], progress: Callable[[int, float], None] | None = None):
    """Train the multitask network; returns (model, history of per-iteration losses)."""
    import torch

    from medsuite.pretext.model import PretextNet
    from medsuite.runtime import resolve_device, seed_everything

    seed_everything(config.seed)
    device = resolve_device(config.device)
    model = PretextNet(config.backbone, heatmap_channels=samples[0].heatmaps.shape[0]).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    # Cosine decay to zero: the loss settles by the last iteration instead of hovering at the base rate.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.iterations)
    images = torch.from_numpy(np.stack([s.image for s in samples]))[:, None]
    heat = torch.from_numpy(np.stack([s.heatmaps for s in samples]))
    mask = torch.from_numpy(np.stack([s.mask for s in samples]))
    loc = torch.tensor([s.location for s in samples], dtype=torch.float32)
    has_loc = torch.tensor([s.has_location for s in samples], dtype=torch.float32)
    # Balance the tasks: half of each batch from multi-view samples when there are any.
    multiview = torch.nonzero(mask.sum(1) > 0)[:, 0]
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    model.train()
    for step in range(config.iterations):
        index = torch.randint(len(samples), (config.batch_size,), generator=generator)
        if len(multiview):
            half = config.batch_size // 2
            index[:half] = multiview[torch.randint(len(multiview), (half,), generator=generator)]
        x = images[index]
        if torch.rand(1, generator=generator).item() < 0.5:  # intensity jitter; geometry untouched so targets stay exact
            x = x.clamp(min=0) ** (0.7 + 0.6 * torch.rand(1, generator=generator).item())
        heat_pred, loc_pred = model(x.to(device))
        total, orientation, location = pretext_loss(heat_pred, loc_pred, heat[index].to(device), mask[index].to(device), loc[index].to(device), has_loc[index].to(device), config.weights)
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        schedule.step()
        history.append({"total": float(total.detach()), "orientation": float(orientation), "location": float(location)})
        if progress:
            progress(step, history[-1]["total"])
    return model, history


def run_pretraining(config: PretextConfig, out_dir: Path, progress: Callable[[int, float], None] | None = None) -> dict:
    """Collect, train, write ``encoder.pt`` (the --init contract), ``pretext_model.pt`` and the figures."""
    import torch

    from medsuite.checkpoints import save_checkpoint
    from medsuite.backbones import EncoderSpec

    start = time.time()
    samples, counts = collect_samples(config)
    model, history = train_pretext(config, samples, progress)
    spec = EncoderSpec.model_validate(config.backbone)
    out_dir = Path(out_dir)
    save_checkpoint(out_dir / "encoder.pt", kind="encoder", state=model.encoder.state_dict(), config={"backbone": spec.model_dump(mode="json")})
    save_checkpoint(out_dir / "pretext_model.pt", kind="pretext", state=model.state_dict(), config=config.model_dump(mode="json"))
    window = max(1, len(history) // 10)
    try:  # the shared energy estimate (SNN helper's module), when present
        from medsuite.backbones.energy import estimate_energy

        energy = estimate_energy(model.encoder.cpu().eval(), torch.zeros(1, 1, config.image_size, config.image_size))
    except ImportError:
        energy = None
    mean = lambda rows, key: round(float(np.mean([r[key] for r in rows])), 6)  # noqa: E731
    return {
        "samples": counts,
        "n_samples": len(samples),
        "loss_first": {k: mean(history[:window], k) for k in ("total", "orientation", "location")},
        "loss_last": {k: mean(history[-window:], k) for k in ("total", "orientation", "location")},
        "history": history,
        "outputs": {"encoder": "encoder.pt", "model": "pretext_model.pt"},
        "energy": energy,
        "seconds": round(time.time() - start, 1),
    }
