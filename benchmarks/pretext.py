"""Label efficiency of the anatomy-plane pretext encoder on ACDC segmentation (2, 4, 8 labelled patients).

    python benchmarks/pretext.py [--encoder RUN/encoder.pt] [--steps 400] [--seeds 0 1] [--out DIR]
    # the arms can run as separate processes (scratch needs no pretraining); scores merge in DIR/scores.json:
    python benchmarks/pretext.py --arms scratch & python benchmarks/pretext.py --arms pretext

1. Held-out patients: the acdc_h5 card's own test split (patient level, seeded). They never enter
   pretraining (excluded from the ACDC source) nor fine-tuning; both arms are scored on all of them.
2. Pretraining (unless --encoder; reused from DIR/pretrain when there): the shipped pretext_cardiac pipeline,
   task 1 on the multi-view exams, task 2 on every other unlabelled SAX stack (ACDC frames, M&Ms).
3. Fine-tuning through the real segmentation pipeline, ``medsuite.segmentation.train.train``: neU-Net with
   the pretext backbone, whole slices resized to the pretraining size, ``data.train_patients = N``; the
   same optimiser-step budget (epochs = steps / batches per epoch), seed and data order for both arms,
   ``init`` = the pretext encoder or nothing. Scored with ``evaluate_volumes`` on the test volumes
   (mean foreground Dice over RV, MYO, LV at native resolution).
"""

from __future__ import annotations

import argparse
import sys
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from medsuite.config import PIPELINES_DIR, load_pipeline
from medsuite.data.cards import load_card
from medsuite.data.datasets import discover_records, split_records
from medsuite.io import write_json
from medsuite.pretext.pretrain import PretextConfig, run_pretraining
from medsuite.runtime import configure_runtime
from medsuite.segmentation.config import SegmentationConfig
from medsuite.segmentation.data import split_volumes
from medsuite.segmentation.evaluate import evaluate_volumes
from medsuite.checkpoints import load_model
from medsuite.segmentation.models import load_trained
from medsuite.segmentation.train import train

CARD = "acdc_h5"
PRETEXT_PIPELINE = PIPELINES_DIR / "pretext_cardiac.yaml"


def test_patients(card) -> list[str]:
    return sorted({r["patient"] for r in split_records(card, discover_records(card))["test"]})


def pretext_config(held_out: list[str], iterations: int | None) -> PretextConfig:
    """The shipped pretext pipeline, with the held-out ACDC patients removed from its ACDC source."""
    config = load_pipeline(PRETEXT_PIPELINE, PretextConfig)
    sources = [s.model_copy(update={"exclude": [*s.exclude, *(f"patient{p}_" for p in held_out)]}) if s.card == "acdc_h5" else s for s in config.sources]
    return config.model_copy(update={"sources": sources, "device": "cpu", **({"iterations": iterations} if iterations else {})})


@torch.no_grad()
def location_error(pretext_model: Path, card, held_out: list[str], size: int) -> tuple[float, float]:
    """Task 2 on the held-out stacks (never seen in pretraining): mean |predicted - true| base-to-apex location,
    and that of always answering 0.5."""
    import h5py

    from medsuite.pretext.pretrain import _resize, normalise

    model = load_model(pretext_model, "pretext").model
    errors, baseline = [], []
    for record in (r for r in discover_records(card) if r["patient"] in held_out):
        with h5py.File(record["image"], "r") as handle:
            stack = normalise(np.asarray(handle["image"], np.float32))
        truth = np.linspace(0, 1, len(stack))  # ACDC stores base first (geometry.slice_locations)
        predicted = model(torch.from_numpy(_resize(stack, size))[:, None])[1].numpy()
        errors += list(np.abs(predicted - truth))
        baseline += list(np.abs(truth - 0.5))
    return float(np.mean(errors)), float(np.mean(baseline))


def segmentation_config(backbone: dict, size: int, patients: int, steps: int, batch: int, seed: int) -> SegmentationConfig:
    """neU-Net with the pretext backbone on whole resized slices; validation only once, at the end."""
    config = SegmentationConfig.model_validate(
        {
            "name": "pretext_label_efficiency",
            "data": {"card": CARD, "inplane": "resize", "image_size": [size, size], "train_patients": patients},
            "model": {"name": "neunet", "spatial_dims": 2, "out_channels": 4},
            "backbone": backbone,
            "train": {"batch_size": batch, "lr": 3e-3, "augment": True, "val_every": 10**6},
            "seed": seed,
        }
    )
    slices = sum(v["image"].shape[-1] for v in split_volumes(load_card(CARD), config, "train"))
    epochs = math.ceil(steps / math.ceil(slices / batch))  # the same step budget whatever N is
    return config.model_copy(update={"train": config.train.model_copy(update={"epochs": epochs})})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, help="a pretext encoder.pt; pretrain one (DIR/pretrain) when absent")
    parser.add_argument("--pretrain-iterations", type=int, help="override the pretext pipeline's iterations")
    parser.add_argument("--steps", type=int, default=400, help="fine-tuning optimiser steps per run (about)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--arms", nargs="+", choices=["scratch", "pretext"], default=["scratch", "pretext"])
    parser.add_argument("--labelled", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/medsuite_pretext_benchmark"))
    parser.add_argument("--table-only", action="store_true", help="print the table of DIR/scores.json and stop")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: the figures in docs/benchmarks.md)")
    args = parser.parse_args()
    configure_runtime(args.threads, "cpu")
    card = load_card(CARD)
    if card.data_root() is None or not card.data_root().is_dir():
        sys.exit(f"benchmark needs the {CARD} data ({card.data_root()}, absent)")
    held_out = test_patients(card)
    pretext = load_pipeline(PRETEXT_PIPELINE, PretextConfig)
    size = pretext.image_size
    scores_file = args.out / "scores.json"
    if not args.table_only:
        print(f"test patients ({len(held_out)}): {' '.join(held_out)}", flush=True)
        encoder = args.encoder
        if encoder is None and "pretext" in args.arms:
            encoder = args.out / "pretrain" / "encoder.pt"
            if not encoder.exists():
                start = time.time()

                def report(step: int, loss: float, start: float = start) -> None:
                    if step % 100 == 99:
                        print(f"  pretext step {step + 1}: loss {loss:.4f} ({time.time() - start:.0f} s)", flush=True)

                figures = run_pretraining(pretext_config(held_out, args.pretrain_iterations), encoder.parent, progress=report)
                write_json(encoder.parent / "history.json", figures.pop("history"))
                write_json(encoder.parent / "figures.json", figures)
                print(f"pretrained on {figures['n_samples']} slices in {time.time() - start:.0f} s: loss {figures['loss_first']} -> {figures['loss_last']}", flush=True)
        if "pretext" in args.arms and encoder is not None and (encoder.parent / "pretext_model.pt").exists():
            mae, baseline = location_error(encoder.parent / "pretext_model.pt", card, held_out, size)
            print(f"task 2 on the held-out stacks: slice-location MAE {mae:.3f} (always answering 0.5: {baseline:.3f})", flush=True)
        test = None
        for seed in args.seeds:
            for n in args.labelled:
                for arm in args.arms:
                    key = f"{arm}/{n}/{args.steps}/{seed}"
                    config = segmentation_config(pretext.backbone, size, n, args.steps, args.batch, seed)
                    run = args.out / f"{arm}_n{n}_steps{args.steps}_seed{seed}"
                    start = time.time()
                    train(config, run, device="cpu", init=encoder if arm == "pretext" else None, quiet=True)
                    trained = load_trained(run / "last.pt")
                    test = test if test is not None else split_volumes(card, config, "test")
                    metrics = evaluate_volumes([(trained.model, config)], test, trained.labels)
                    dice = 100 * metrics["mean_dice"]
                    print(f"  seed {seed}, {n} labelled, {arm}: {config.train.epochs} epochs, test Dice {dice:.2f} ({time.time() - start:.0f} s)", flush=True)
                    # Merge with what other processes (the other arm) wrote.
                    scores = json.loads(scores_file.read_text()) if scores_file.exists() else {}
                    scores[key] = {"mean_dice": dice, "per_class": {c: 100 * v["dice"] for c, v in metrics["per_class"].items()}, "epochs": config.train.epochs}
                    write_json(scores_file, scores)
    print_table(json.loads(scores_file.read_text()), args, len(held_out), size)


def _cell(value: float | None, width: int, fmt: str) -> str:
    """A right-aligned table cell: ``fmt`` is the sign/precision part of a format spec, '-' when missing."""
    return format(value, f">{fmt[0] if fmt[0] in '+-' else ''}{width}{fmt.lstrip('+-')}") if value is not None else "-".rjust(width)


def print_table(scores: dict, args: argparse.Namespace, n_test: int, size: int) -> None:
    def mean(arm: str, n: int) -> tuple[float | None, int]:
        values = [scores[k]["mean_dice"] for s in args.seeds if (k := f"{arm}/{n}/{args.steps}/{s}") in scores]
        return (float(np.mean(values)) if values else None), len(values)

    print(f"\nACDC mean foreground Dice (%) on the card's {n_test} test patients; neU-Net, {size}x{size} resized slices, about {args.steps} steps of {args.batch}")
    print(f"{'labelled':>8} {'scratch':>8} {'pretext':>8} {'gain':>7} {'seeds':>5}")
    rows = {}
    for n in args.labelled:
        (scratch, k1), (pre, k2) = mean("scratch", n), mean("pretext", n)
        gain = pre - scratch if scratch is not None and pre is not None else None
        print(f"{n:>8} {_cell(scratch, 8, '.2f')} {_cell(pre, 8, '.2f')} {_cell(gain, 7, '+.2f')} {min(k1, k2):>5}")
        rows[str(n)] = {"scratch": scratch, "pretext": pre, "gain": gain, "seeds": min(k1, k2)}
    write_json(args.out / f"table_steps{args.steps}.json", rows)


if __name__ == "__main__":
    main()
