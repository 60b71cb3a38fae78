"""Pretext pretraining: collect 2D samples with targets from exams and stacks, train, save the encoder.

Sources are data cards (pipeline YAML ``sources``, or ``medsuite pretrain --card``), listed by the data
layer's ``discover_records``; what a card gives depends on its layout kind:
- ``dicom_exam``, and ``cinema_nifti`` exams with long-axis views: task 1 for every view, task 2 for SAX stacks;
- ``cinema_nifti`` stacks without long-axis views, ``acdc_nifti``, ``nifti_folders``, ``msd`` (SAX NIfTI with
  affines) and ``acdc_h5`` (index space): task 2 only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from medsuite.backbones import EncoderSpec
from medsuite.data.datasets import Record
from medsuite.data.intensity import IntensityRule, normalise_intensity, rule_for_modality
from medsuite.data.transforms import IMAGE, read_h5_volume, resize
from medsuite.errors import MedsuiteError
from medsuite.finite import require_finite_loss

CNN_2D = {"kind": "cnn", "spatial_dims": 2, "in_channels": 1, "channels": [16, 32, 64, 128], "strides": [2, 2, 2, 2], "norm": "instance"}
# A strided stem, as in the shipped segmentation pipeline (segmentation_neunet_acdc.yaml): CPU-affordable.
STACK_LAYOUTS = ("acdc_h5", "acdc_nifti", "nifti_folders", "msd")  # short-axis stacks only: task 2
EXAM_LAYOUTS = ("dicom_exam", "cinema_nifti")  # multi-view exams: tasks 1 and 2


class Source(BaseModel):
    """One data card to draw pretraining samples from."""

    model_config = ConfigDict(extra="forbid")
    card: str = Field(description="data card id (medsuite cards list) or a card YAML path")
    root: str | None = Field(None, description="data folder overriding the card's layout.root")
    limit: int | None = Field(None, ge=1, description="at most this many records (exams or stacks) of the card")
    exclude: list[str] = Field(default_factory=list, description="records whose case or patient id contains any of these are skipped (held-out patients)")


class PretextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backbone: EncoderSpec = Field(default_factory=lambda: EncoderSpec.model_validate(CNN_2D))
    sources: list[Source] = Field(default_factory=list)
    image_size: int = Field(96, ge=16, description="every 2D sample is resized to image_size^2")
    intensity: IntensityRule = Field(default_factory=lambda: rule_for_modality("MR"), description="per-volume normalisation (segmentation's MR rule, so fine-tuning sees the same intensities)")
    sigma_mm: float = Field(5.0, gt=0, description="Gaussian width of the line heatmaps")
    min_angle_deg: float = Field(5.0, ge=0)
    max_phases: int = Field(4, ge=1, description="cine phases used per view (evenly spaced)")
    weights: dict[Literal["orientation", "location", "rotation"], float] = Field(
        default_factory=lambda: {"orientation": 1.0, "location": 1.0},
        description="loss weight per task (a missing task: orientation and location 1, rotation 0); 0 switches a task off, so one task alone or the generic rotation baseline pretrain with the same code",
    )
    iterations: int = Field(1000, ge=1)
    batch_size: int = Field(16, ge=1)
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


def _kept(records: list[Record], source: Source) -> list[Record]:
    kept = [r for r in records if not any(x in str(r["case"]) or x in str(r["patient"]) for x in source.exclude)]
    return kept[: source.limit] if source.limit else kept


def record_samples(layout: str, records: list[Record], config: PretextConfig) -> list[Sample]:
    """The samples of one card's records, read as its layout kind says."""
    from medsuite.io import read_image
    from medsuite.pretext.exams import VIEW_KINDS, read_dicom_exams, read_nifti_set
    from medsuite.pretext.geometry import planes_from_affine, slice_locations

    samples: list[Sample] = []
    if layout == "dicom_exam":
        for record in records:
            for exam in read_dicom_exams(Path(record[IMAGE])):
                samples += exam_samples(exam, config)
        return samples
    exam_folders: list[Path] = []
    for record in records:
        if layout == "cinema_nifti" and any(key.startswith("lax_") for key in record):
            folder = Path(record[IMAGE]).parent  # one exam per folder: every view, one phase per kind
            if folder not in exam_folders:
                exam_folders.append(folder)
                samples += exam_samples(read_nifti_set(folder), config)
        elif layout == "acdc_h5":  # no geometry; ACDC stores slices base to apex (see geometry.slice_locations)
            stack = np.moveaxis(read_h5_volume(record[IMAGE], "image").astype(np.float32), 2, 0)  # (slices, x, y), as NIfTI
            samples += stack_samples(stack, np.linspace(0, 1, len(stack)) if len(stack) > 1 else np.zeros(1), config, len(VIEW_KINDS))
        else:
            vol = read_image(record[IMAGE])
            array = vol.array.reshape(vol.array.shape[:3])
            stack = np.moveaxis(array.astype(np.float32), 2, 0)
            samples += stack_samples(stack, slice_locations(planes_from_affine(vol.affine, array.shape)), config, len(VIEW_KINDS))
    return samples


def collect_samples(config: PretextConfig) -> tuple[list[Sample], dict]:
    """Every sample of every source card, and counts for the report: per card its samples, and per card and
    task (``card:orientation``, ``card:location``) the samples that carry that task's target, which is how
    a source's supported tasks are chosen (a stack without geometry has locations only, a lone view neither)."""
    from medsuite import distributed
    from medsuite.data.cards import load_card
    from medsuite.data.datasets import discover_records

    samples, counts = [], {}
    deal = distributed.init(config.device).dealer()  # under torchrun each rank reads its own exams and stacks
    for source in config.sources:
        card = load_card(source.card)
        if card.layout.kind not in (*EXAM_LAYOUTS, *STACK_LAYOUTS):
            raise MedsuiteError(source.card, f"layout {card.layout.kind} holds no cardiac views or short-axis stacks", f"use a card with layout {', '.join((*EXAM_LAYOUTS, *STACK_LAYOUTS))}")
        found = record_samples(card.layout.kind, deal(_kept(discover_records(card, source.root), source)), config)
        counts[card.id] = counts.get(card.id, 0) + len(found)
        counts[f"{card.id}:orientation"] = counts.get(f"{card.id}:orientation", 0) + sum(bool(s.mask.any()) for s in found)
        counts[f"{card.id}:location"] = counts.get(f"{card.id}:location", 0) + sum(s.has_location > 0 for s in found)
        samples += found
    deal.check()
    if not samples:
        raise MedsuiteError("pipeline", "no pretext samples: the sources are empty", "list at least one card with exams or SAX stacks under sources")
    return samples, counts


def task_weight(weights: dict, task: str) -> float:
    return weights.get(task, 0.0 if task == "rotation" else 1.0)


def pretext_loss(heat_pred, loc_pred, heat, mask, loc, has_loc, weights: dict, rotation_pred=None, rotation=None) -> tuple:
    """Masked MSE per task (paper: MSE for both, weights 1:1); a batch without a task adds zero for it.
    The rotation baseline, when on, adds the cross-entropy of the predicted quarter turn."""
    import torch.nn.functional as F

    per_channel = ((heat_pred - heat) ** 2).mean(dim=(2, 3))
    orientation = (per_channel * mask).sum() / mask.sum().clamp(min=1)
    location = (((loc_pred - loc) ** 2) * has_loc).sum() / has_loc.sum().clamp(min=1)
    turned = F.cross_entropy(rotation_pred, rotation) if rotation_pred is not None else orientation.new_zeros(())
    total = task_weight(weights, "orientation") * orientation + task_weight(weights, "location") * location + task_weight(weights, "rotation") * turned
    return total, orientation.detach(), location.detach(), turned.detach()


def quarter_turns(x, heat, generator):
    """Each sample turned by a random multiple of 90 degrees in-plane, its line heatmaps with it (so task 1
    stays exact and task 2's base-to-apex location, a through-plane quantity, is unchanged); returns the turns."""
    import torch

    turns = torch.randint(4, (len(x),), generator=generator)
    x, heat = x.clone(), heat.clone()
    for k in range(1, 4):
        chosen = turns == k
        x[chosen] = torch.rot90(x[chosen], k, dims=(-2, -1))
        heat[chosen] = torch.rot90(heat[chosen], k, dims=(-2, -1))
    return x, heat, turns


def train_pretext(config: PretextConfig, samples: list[Sample], progress: Callable[[int, float], None] | None = None):
    """Train the multitask network; returns (model, history of per-iteration losses)."""
    import torch

    from medsuite import distributed
    from medsuite.pretext.model import PretextNet
    from medsuite.runtime import seed_everything

    seed_everything(config.seed)
    ctx = distributed.init(config.device)
    device = ctx.device
    rotation = task_weight(config.weights, "rotation") > 0
    model = PretextNet(config.backbone, heatmap_channels=samples[0].heatmaps.shape[0], rotation=rotation).to(device)
    net = ctx.wrap(model)  # DDP under torchrun; ``model`` is what is returned and saved
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    # Cosine decay to zero: the loss settles by the last iteration instead of hovering at the base rate.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.iterations)
    images = torch.from_numpy(np.stack([s.image for s in samples]))[:, None]
    model.encoder.warm_up(images.to(device), batch_size=config.batch_size, seed=config.seed)  # the backbone's own pretraining, if any
    heat = torch.from_numpy(np.stack([s.heatmaps for s in samples]))
    mask = torch.from_numpy(np.stack([s.mask for s in samples]))
    loc = torch.tensor([s.location for s in samples], dtype=torch.float32)
    has_loc = torch.tensor([s.has_location for s in samples], dtype=torch.float32)
    # Balance the tasks: half of each batch from multi-view samples when there are any.
    multiview = torch.nonzero(mask.sum(1) > 0)[:, 0]
    generator = torch.Generator().manual_seed(config.seed + ctx.rank)  # each rank its own batches and jitter
    history = []
    model.train()
    for step in range(config.iterations):
        index = torch.randint(len(samples), (config.batch_size,), generator=generator)
        if len(multiview):
            half = config.batch_size // 2
            index[:half] = multiview[torch.randint(len(multiview), (half,), generator=generator)]
        x, target_heat, turns = images[index], heat[index], None
        if torch.rand(1, generator=generator).item() < 0.5:  # intensity jitter; geometry untouched so targets stay exact
            x = x.clamp(min=0) ** (0.7 + 0.6 * torch.rand(1, generator=generator).item())
        if rotation:
            x, target_heat, turns = quarter_turns(x, target_heat, generator)
            turns = turns.to(device)
        heat_pred, loc_pred, rotation_pred = net(x.to(device))
        total, orientation, location, turned = pretext_loss(
            heat_pred, loc_pred, target_heat.to(device), mask[index].to(device), loc[index].to(device), has_loc[index].to(device), config.weights, rotation_pred, turns
        )
        require_finite_loss(float(total.detach()), step=step + 1, cases=[f"sample {int(i)}" for i in index])  # nothing saved yet
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        schedule.step()
        history.append({"total": float(total.detach()), "orientation": float(orientation), "location": float(location), "rotation": float(turned)})
        if progress:
            progress(step, history[-1]["total"])
    return model, ctx.mean_rows(history)


def run_pretraining(config: PretextConfig, out_dir: Path, progress: Callable[[int, float], None] | None = None) -> dict:
    """Collect, train, write ``encoder.pt`` (the --init contract), ``pretext_model.pt`` and the figures."""
    import torch

    from medsuite.backbones.energy import estimate_energy
    from medsuite import distributed
    from medsuite.checkpoints import save_checkpoint
    from medsuite.io import check_output_dir

    start = time.time()
    check_output_dir(out_dir, 64 << 20)  # before any training: two checkpoints
    samples, counts = collect_samples(config)
    model, history = train_pretext(config, samples, progress)
    ctx = distributed.init(config.device)
    totals = ctx.total(counts)  # every rank's samples (each read its own exams)
    counts = {card: n for card, n in totals.items() if ":" not in card}
    supported = {card: [task for task in ("orientation", "location") if totals[f"{card}:{task}"]] for card in counts}
    out_dir = Path(out_dir)
    if ctx.is_main:
        save_checkpoint(out_dir / "encoder.pt", kind="encoder", state=model.encoder.state_dict(), config={"backbone": config.backbone.model_dump(mode="json")})
        save_checkpoint(out_dir / "pretext_model.pt", kind="pretext", state=model.state_dict(), config=config.model_dump(mode="json"))
    if ctx.enabled:
        distributed.record_run(out_dir, ctx, model)
    window = max(1, len(history) // 10)
    energy = estimate_energy(model.encoder.cpu().eval(), torch.zeros(1, 1, config.image_size, config.image_size))

    def mean(rows: list[dict], key: str) -> float:
        return round(float(np.mean([r[key] for r in rows])), 6)

    return {
        "samples": counts,
        "n_samples": sum(counts.values()),
        "task_weights": {task: task_weight(config.weights, task) for task in ("orientation", "location", "rotation")},
        "tasks_per_source": supported,  # what each card's data could teach (rotation: any image)
        "loss_first": {k: mean(history[:window], k) for k in ("total", "orientation", "location", "rotation")},
        "loss_last": {k: mean(history[-window:], k) for k in ("total", "orientation", "location", "rotation")},
        "history": history,
        "outputs": {"encoder": "encoder.pt", "model": "pretext_model.pt"},
        "energy": energy,
        "seconds": round(time.time() - start, 1),
    }


def pretrain_to_folder(config: PretextConfig, out_dir: Path, pipeline_file: Path | None = None, progress: Callable[[int, float], None] | None = None) -> dict:
    """``medsuite pretrain``: run the pretraining and write RUN/report.json (provenance and figures) and
    RUN/history.json (per-iteration losses) beside the checkpoints; return the figures."""
    from medsuite.io import write_json
    from medsuite.provenance import new_report

    figures = run_pretraining(config, out_dir, progress=progress)
    report = new_report("pretrain", [pipeline_file] if pipeline_file else [], config.model_dump(mode="json"))
    report.update({key: value for key, value in figures.items() if key != "history"})
    write_json(Path(out_dir) / "report.json", report)
    write_json(Path(out_dir) / "history.json", figures["history"])
    return figures
