"""Label efficiency of anatomy-plane pretraining on ACDC segmentation: each task's share and a generic baseline.

    python benchmarks/pretext.py                                   # every arm, 1/2/4/8 labelled, 5 seeds
    python benchmarks/pretext.py --arms scratch multitask --labelled 2 4 --seeds 0 1 2 --steps 400  # a CPU-sized run
    # the arms can run as separate processes; scores merge in DIR/scores.json, and --table-only prints them:
    python benchmarks/pretext.py --arms scratch & python benchmarks/pretext.py --arms multitask rotation

Arms (each pretraining arm trains its own encoder with ``medsuite.pretext.pretrain.run_pretraining``, the
shipped pretext_cardiac pipeline with only its task weights changed, same images, iterations and seed):
  scratch    no pretraining
  multitask  intersecting lines + slice location (the paper's method, weights 1:1)
  lines      intersecting lines only (task 1)
  location   slice location only (task 2)
  rotation   a generic self-supervised baseline on the same images: predict the quarter turn of each slice

1. Held-out patients: the acdc_h5 card's own test split (patient level, seeded). They never enter
   pretraining (excluded from the ACDC source) nor fine-tuning; every arm is scored on all of them.
2. Fine-tuning through the real segmentation pipeline (``medsuite.segmentation.train.train``, what
   ``medsuite train segmentation --init`` runs): the shipped segmentation_neunet_acdc recipe (native in-plane
   grid, 128x128 patches, sliding-window inference) with ``data.train_patients = N``, up to ``--steps``
   optimiser steps, validated on the card's validation patients about 20 times, early stopping after
   ``--patience`` validations without a better validation Dice; ``best.pt`` is scored. The same budget, seed
   and data order for every arm at each N.
3. Scored with ``evaluate_volumes`` on the test volumes: mean foreground Dice over RV, MYO, LV and per class.
   The gain of an arm is the paired difference to scratch per seed, with its 95 % t-interval over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from medsuite.checkpoints import load_model
from medsuite.config import PIPELINES_DIR, load_pipeline
from medsuite.data.cards import load_card
from medsuite.data.datasets import discover_records, split_records
from medsuite.io import write_json
from medsuite.pretext.pretrain import PretextConfig, record_samples, run_pretraining
from medsuite.runtime import configure_runtime
from medsuite.segmentation.config import SegmentationConfig
from medsuite.segmentation.data import split_volumes
from medsuite.segmentation.evaluate import evaluate_volumes
from medsuite.segmentation.models import load_trained
from medsuite.segmentation.train import train

CARD = "acdc_h5"
PRETEXT_PIPELINE = PIPELINES_DIR / "pretext_cardiac.yaml"
SEGMENTATION_PIPELINE = PIPELINES_DIR / "segmentation_neunet_acdc.yaml"
ARM_WEIGHTS: dict[str, dict[str, float] | None] = {
    "scratch": None,
    "multitask": {"orientation": 1.0, "location": 1.0},
    "lines": {"orientation": 1.0, "location": 0.0},
    "location": {"orientation": 0.0, "location": 1.0},
    "rotation": {"rotation": 1.0, "orientation": 0.0, "location": 0.0},
}


def test_patients(card) -> list[str]:
    return sorted({r["patient"] for r in split_records(card, discover_records(card))["test"]})


def pretext_config(held_out: list[str], weights: dict[str, float], iterations: int | None) -> PretextConfig:
    """The shipped pretext pipeline with these task weights, the held-out ACDC patients removed from its ACDC source."""
    config = load_pipeline(PRETEXT_PIPELINE, PretextConfig)
    sources = [s.model_copy(update={"exclude": [*s.exclude, *(f"patient{p}_" for p in held_out)]}) if s.card == CARD else s for s in config.sources]
    return config.model_copy(update={"sources": sources, "weights": weights, "device": "cpu", **({"iterations": iterations} if iterations else {})})


def pretrained_encoder(arm: str, out: Path, held_out: list[str], iterations: int | None) -> Path:
    """DIR/pretrain_ARM/encoder.pt, pretrained unless already there."""
    encoder = out / f"pretrain_{arm}" / "encoder.pt"
    if encoder.exists():
        return encoder
    start = time.time()

    def report(step: int, loss: float) -> None:
        if step % 100 == 99:
            print(f"  {arm} pretext step {step + 1}: loss {loss:.4f} ({time.time() - start:.0f} s)", flush=True)

    figures = run_pretraining(pretext_config(held_out, ARM_WEIGHTS[arm], iterations), encoder.parent, progress=report)
    write_json(encoder.parent / "history.json", figures.pop("history"))
    write_json(encoder.parent / "figures.json", figures)
    print(f"{arm}: pretrained on {figures['n_samples']} slices in {time.time() - start:.0f} s; tasks per source {figures['tasks_per_source']}", flush=True)
    return encoder


@torch.no_grad()
def location_error(pretext_model: Path, card, held_out: list[str], config: PretextConfig) -> tuple[float, float]:
    """Task 2 on the held-out stacks (never seen in pretraining), read as pretraining reads them: mean
    |predicted - true| base-to-apex location, and that of always answering 0.5."""
    model = load_model(pretext_model, "pretext").model
    samples = record_samples("acdc_h5", [r for r in discover_records(card) if r["patient"] in held_out], config)
    images = torch.from_numpy(np.stack([s.image for s in samples]))[:, None]
    truth = np.array([s.location for s in samples])
    predicted = np.concatenate([model(chunk)[1].numpy() for chunk in images.split(64)])
    return float(np.mean(np.abs(predicted - truth))), float(np.mean(np.abs(truth - 0.5)))


def segmentation_config(patients: int, steps: int, patience: int, seed: int) -> SegmentationConfig:
    """The shipped recipe on N labelled patients; ``steps`` optimiser steps at most, about 20 validations."""
    config = load_pipeline(SEGMENTATION_PIPELINE, SegmentationConfig)
    config = config.model_copy(update={"data": config.data.model_copy(update={"train_patients": patients}), "seed": seed})
    slices = sum(v["image"].shape[-1] for v in split_volumes(load_card(CARD), config, "train"))
    epochs = math.ceil(steps / math.ceil(slices / config.train.batch_size))  # the same step budget whatever N is
    schedule = {"epochs": epochs, "val_every": max(1, epochs // 20), "patience": patience, "max_minutes": None}
    return config.model_copy(update={"train": config.train.model_copy(update=schedule)})


def paired_gain(arm: list[float], reference: list[float]) -> tuple[float, float, float] | None:
    """Mean of the per-seed differences and its 95 % t-interval (None with fewer than 2 pairs)."""
    differences = np.asarray(arm) - np.asarray(reference)
    if len(differences) < 2:
        return None
    half = stats.t.ppf(0.975, len(differences) - 1) * differences.std(ddof=1) / math.sqrt(len(differences))
    return float(differences.mean()), float(differences.mean() - half), float(differences.mean() + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", choices=list(ARM_WEIGHTS), default=list(ARM_WEIGHTS))
    parser.add_argument("--labelled", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=5600, help="fine-tuning optimiser steps at most (the shipped recipe's 80 epochs)")
    parser.add_argument("--patience", type=int, default=5, help="validations without a better validation Dice before stopping")
    parser.add_argument("--pretrain-iterations", type=int, help="override the pretext pipeline's iterations (every arm)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/medsuite_pretext_benchmark"))
    parser.add_argument("--table-only", action="store_true", help="print the table of DIR/scores.json and stop")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads")
    args = parser.parse_args()
    configure_runtime(args.threads, "cpu")
    card = load_card(CARD)
    if card.data_root() is None or not card.data_root().is_dir():
        sys.exit(f"benchmark needs the {CARD} data ({card.data_root()}, absent)")
    held_out = test_patients(card)
    scores_file = args.out / "scores.json"
    if not args.table_only:
        print(f"test patients ({len(held_out)}): {' '.join(held_out)}", flush=True)
        encoders = {arm: pretrained_encoder(arm, args.out, held_out, args.pretrain_iterations) for arm in args.arms if ARM_WEIGHTS[arm]}
        for arm, encoder in encoders.items():
            if task_on(arm, "location"):
                mae, baseline = location_error(encoder.parent / "pretext_model.pt", card, held_out, pretext_config(held_out, ARM_WEIGHTS[arm], None))
                print(f"{arm}: task 2 on the held-out stacks: slice-location MAE {mae:.3f} (always answering 0.5: {baseline:.3f})", flush=True)
        test = None
        for seed in args.seeds:
            for n in args.labelled:
                config = segmentation_config(n, args.steps, args.patience, seed)
                for arm in args.arms:
                    run = args.out / f"{arm}_n{n}_steps{args.steps}_seed{seed}"
                    start = time.time()
                    result = train(config, run, device="cpu", init=encoders.get(arm), quiet=True)
                    trained = load_trained(run / "best.pt")
                    test = test if test is not None else split_volumes(card, config, "test")
                    metrics = evaluate_volumes([(trained.model, config)], test, trained.labels)
                    dice = 100 * metrics["mean_dice"]
                    print(f"  seed {seed}, {n} labelled, {arm}: {result['epochs']}/{config.train.epochs} epochs, test Dice {dice:.2f} ({time.time() - start:.0f} s)", flush=True)
                    scores = json.loads(scores_file.read_text()) if scores_file.exists() else {}  # merged with other processes' arms
                    scores[f"{arm}/{n}/{args.steps}/{seed}"] = {
                        "mean_dice": dice,
                        "per_class": {c: 100 * v["dice"] for c, v in metrics["per_class"].items()},
                        "epochs": result["epochs"],
                        "best_val_mean_dice": result["best_val_mean_dice"],
                    }
                    write_json(scores_file, scores)
    print_table(json.loads(scores_file.read_text()), args, len(held_out))


def task_on(arm: str, task: str) -> bool:
    return bool(ARM_WEIGHTS[arm]) and ARM_WEIGHTS[arm].get(task, 0.0) > 0


def print_table(scores: dict, args: argparse.Namespace, n_test: int) -> None:
    """Per N and arm: mean Dice and per class over seeds, and the paired gain to scratch (and multitask to rotation)."""

    def seeds_of(arm: str, n: int) -> dict[int, dict]:
        return {s: scores[k] for s in args.seeds if (k := f"{arm}/{n}/{args.steps}/{s}") in scores}

    def gain_cell(arm: str, reference: str, n: int) -> str:
        a, r = seeds_of(arm, n), seeds_of(reference, n)
        common = sorted(set(a) & set(r))
        gain = paired_gain([a[s]["mean_dice"] for s in common], [r[s]["mean_dice"] for s in common])
        return f"{gain[0]:+6.2f} [{gain[1]:+6.2f}, {gain[2]:+6.2f}]" if gain else "-"

    print(f"\nACDC mean foreground Dice (%) on the card's {n_test} test patients; shipped neU-Net recipe, <= {args.steps} steps, early stopping")
    print(f"{'labelled':>8} {'arm':>10} {'Dice':>6} {'RV':>6} {'MYO':>6} {'LV':>6} {'seeds':>5}  gain vs scratch [95% CI]")
    rows: dict[str, dict] = {}
    for n in args.labelled:
        for arm in args.arms:
            runs = seeds_of(arm, n)
            if not runs:
                continue
            per_class = {c: float(np.mean([r["per_class"][c] for r in runs.values()])) for c in next(iter(runs.values()))["per_class"]}
            mean = float(np.mean([r["mean_dice"] for r in runs.values()]))
            gain = gain_cell(arm, "scratch", n) if arm != "scratch" else ""
            cells = " ".join(f"{v:6.2f}" for v in per_class.values())
            print(f"{n:>8} {arm:>10} {mean:6.2f} {cells} {len(runs):>5}  {gain}")
            rows[f"{n}/{arm}"] = {"mean_dice": mean, "per_class": per_class, "seeds": len(runs), "gain_vs_scratch": gain}
        if {"multitask", "rotation"} <= set(args.arms):
            print(f"{n:>8} {'multitask - rotation':>31} {'':>13}  {gain_cell('multitask', 'rotation', n)}")
    write_json(args.out / f"table_steps{args.steps}.json", rows)


if __name__ == "__main__":
    main()
