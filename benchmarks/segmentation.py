"""U-Bench-style side-by-side table: every segmentation model trained the same way on the same ACDC
patients, scored on the same held-out test patients (the card's patient-level split).

    python benchmarks/segmentation.py --quick            # ~15 min: 24 train volumes, 2.5 min CPU budget per model
    python benchmarks/segmentation.py --epochs 80        # the real comparison (hours on a CPU)
    # models may be trained by separate processes into one --output; then score them side by side:
    python benchmarks/segmentation.py --output DIR --no-train

Prints a markdown table: mean Dice (RV, Myo, LV), HD95, parameters, CPU seconds per volume, and each
figure's ratio to plain MONAI UNet. Writes the table and raw figures to --output.

Inference variants of trained checkpoints, side by side on the card's test split, each row computed by the
library function behind `medsuite evaluate segmentation` (its command is printed with the row):

    python benchmarks/segmentation.py --variants --model medsuite/assets/segmentation/neunet_acdc.pt \
        [--folds runs/cv] [--unet runs/unet/best.pt] [--unet-folds runs/cv_unet] --output DIR

single model, +TTA, fold ensemble, fold ensemble +TTA (for each family given): per-class Dice and HD95, the
worst test volume, median seconds per volume (prediction only, models loaded), and the clinical indices from
the predicted masks against those from the reference masks (MAE, correlation, Bland-Altman bias and 95 %
limits). ACDC's HDF5 files store no spacing: volumes, masses and HD95 use the card's nominal 1.5 x 1.5 x 8 mm.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from medsuite.checkpoints import load_checkpoint
from medsuite.config import PIPELINES_DIR, load_pipeline
from medsuite.data.cards import load_card
from medsuite.io import write_json
from medsuite.segmentation.config import MODEL_NAMES, SegmentationConfig
from medsuite.segmentation.data import split_volumes
from medsuite.segmentation.evaluate import evaluate_checkpoint, evaluate_volumes
from medsuite.segmentation.models import (
    count_parameters,
    load_ensemble,
    load_trained,
    resolve_checkpoints,
)
from medsuite.segmentation.predict import predict_volume, trained_with_mirrors
from medsuite.segmentation.train import train


def seconds_per_volume(models: dict[str, tuple[torch.nn.Module, SegmentationConfig]], volumes, repeats: int = 8) -> dict[str, float]:
    """Median wall time of one whole-volume prediction per model, the models taking turns volume by
    volume so that load from other jobs on a shared CPU hits them alike (threads as set by the caller)."""
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(min(len(volumes), repeats)):
        image = volumes[i]["image"][0].as_tensor()
        for name, (model, config) in models.items():
            start = time.perf_counter()
            predict_volume(model, image, config)
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def run(args: argparse.Namespace) -> list[dict]:
    base = load_pipeline(PIPELINES_DIR / "segmentation_neunet_acdc.yaml", SegmentationConfig)
    card = load_card(base.data.card)
    rows, trained = [], {}
    test = None
    for name in args.models:
        config = base.model_copy(deep=True)
        config.model.name = name
        config.train.epochs = args.epochs
        config.train.max_minutes = args.minutes
        config.data.limit = args.limit
        run_dir = args.output / name
        if not args.no_train:
            train(config, run_dir, quiet=True)
        history = load_checkpoint(run_dir / "last.pt", kind="segmentation")["history"]
        trained = load_trained(run_dir / "best.pt")
        model, config = trained.model, trained.config
        config.postprocess = base.postprocess  # every row scored with the YAML's postprocessing, alike
        if test is None:
            test = split_volumes(card, config.model_copy(update={"data": config.data.model_copy(update={"limit": None})}), "test")
        metrics = evaluate_volumes([(model, config)], test, trained.labels)
        row = {
            "model": name,
            "classes": list(metrics["per_class"]),
            **{c: v["dice"] for c, v in metrics["per_class"].items()},
            "mean_dice": metrics["mean_dice"],
            "hd95": metrics["mean_hd95"],
            "params": count_parameters(model),
            "test_volumes": len(metrics["cases"]),
            "epochs": history[-1]["epoch"],
            "train_minutes": history[-1]["minutes"],
        }
        rows.append(row)
        trained[name] = (model, config)
        print(f"{name}: mean Dice {row['mean_dice']:.3f}", flush=True)
    timings = seconds_per_volume(trained, test)
    return [row | {"s_per_volume": timings[row["model"]]} for row in rows]


def markdown(rows: list[dict]) -> str:
    ref = next((r for r in rows if r["model"] == "unet"), rows[0])

    def ratio(r: dict, k: str) -> str:
        return f"{r[k] / ref[k]:.2f}" if ref[k] else "-"

    lines = [
        f"| model | epochs (train min) | {' | '.join('Dice ' + c for c in rows[0]['classes'])} | mean Dice (x UNet) | HD95 mm (x UNet) | params (x UNet) | CPU s/volume (x UNet) |",
        "|---|---|" + "---|" * len(rows[0]["classes"]) + "---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['epochs']} ({r['train_minutes']:.0f}) | {' | '.join(f'{r[c]:.3f}' for c in r['classes'])} | {r['mean_dice']:.3f} ({ratio(r, 'mean_dice')}) | "
            f"{r['hd95']:.1f} ({ratio(r, 'hd95')}) | {r['params'] / 1e6:.2f}M ({ratio(r, 'params')}) | {r['s_per_volume']:.2f} ({ratio(r, 's_per_volume')}) |"
        )
    return "\n".join(lines)


CLINICAL = ("LVEF", "LV_mass", "LVEDV", "LVESV", "RVEF", "RVEDV")


def variant_rows(args: argparse.Namespace) -> list[dict]:
    """Single / fold ensemble of each model family given, each without and with TTA and the orientation search
    (medsuite.segmentation.orientation), on the card's test split."""
    families = [("neunet", args.model, args.folds), ("unet", args.unet, args.unet_folds)]
    rows = []
    for family, single, folds in families:
        variants = ([("single", [single])] if single else []) + ([(f"{len(resolve_checkpoints([folds]))}-fold ensemble", [folds])] if folds else [])
        for name, paths in variants:
            mirrored = any(trained_with_mirrors(m.config) for m in load_ensemble(resolve_checkpoints(paths)))
            for tta, search in ((False, False), (True, False), (False, True), (True, True)):
                label = f"{family} {name}" + (" +TTA" if tta else "") + (" +orientation search" if search else "")
                command = f"medsuite evaluate segmentation {' '.join(map(str, paths))} --split test" + ("" if tta else " --no-tta") + ("" if search else " --as-given")
                if tta and not mirrored:  # no member was trained with flips, so TTA mirrors nothing: the row without it
                    rows.append(rows[-1] | {"variant": label + " (= no TTA: no member trained with flips)", "command": command})
                    continue
                report, _ = evaluate_checkpoint(paths, split="test", output=args.output / label.replace(" ", "_").replace("+", ""), tta=tta, orientation_search=search)
                rows.append({"variant": label, "command": command, "metrics": {k: v for k, v in report.items() if k not in ("cases", "uncertainty", "class_volumes_ml", "orientation")}})
                print(f"{label}: mean Dice {report['mean_dice']:.3f}", flush=True)
    return rows


def variant_markdown(rows: list[dict]) -> str:
    classes = list(rows[0]["metrics"]["per_class"])
    lines = [
        f"| variant | {' | '.join(f'Dice / HD95 {c}' for c in classes)} | mean Dice | mean HD95 mm | worst volume (Dice) | s/volume |",
        "|---|" + "---|" * len(classes) + "---|---|---|---|",
    ]
    for r in rows:
        m = r["metrics"]
        per_class = " | ".join(f"{m['per_class'][c]['dice']:.3f} / {m['per_class'][c]['hd95']:.1f}" for c in classes)
        worst = m["worst_case"]
        lines.append(f"| {r['variant']} | {per_class} | {m['mean_dice']:.3f} | {m['mean_hd95']:.1f} | {worst['case']} ({worst['mean_dice']:.3f}) | {m['seconds_per_volume']:.2f} |")
    if rows[0]["metrics"].get("clinical"):
        units = rows[0]["metrics"]["clinical"]["units"]
        lines += ["", "| variant | " + " | ".join(f"{k} ({units[k]}) MAE / r / bias [95% limits]" for k in CLINICAL) + " |", "|---|" + "---|" * len(CLINICAL)]
        for r in rows:
            a = r["metrics"]["clinical"]["agreement"]
            cells = " | ".join(f"{a[k]['mae']:.1f} / {a[k]['correlation']:.3f} / {a[k]['bias']:+.1f} [{a[k]['loa_low']:+.1f}, {a[k]['loa_high']:+.1f}]" for k in CLINICAL)
            lines.append(f"| {r['variant']} | {cells} |")
    lines += ["", *(f"- {r['variant']}: `{r['command']}`" for r in rows)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock training budget per model")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N training volumes only")
    parser.add_argument("--quick", action="store_true", help="--limit 24 --minutes 2.5: equal wall-clock budget per model")
    parser.add_argument("--models", nargs="+", default=list(MODEL_NAMES), choices=MODEL_NAMES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-train", action="store_true", help="score the runs already in --output (best.pt) without training")
    parser.add_argument("--output", type=Path, default=Path("medsuite_results/benchmark_segmentation"))
    parser.add_argument("--variants", action="store_true", help="score inference variants of trained checkpoints (no training)")
    parser.add_argument("--model", type=Path, default=None, help="--variants: the single neU-Net checkpoint")
    parser.add_argument("--folds", type=Path, default=None, help="--variants: a folder of neU-Net fold runs (fold_*/best.pt)")
    parser.add_argument("--unet", type=Path, default=None, help="--variants: a plain UNet checkpoint")
    parser.add_argument("--unet-folds", type=Path, default=None, help="--variants: a folder of UNet fold runs")
    args = parser.parse_args()
    if args.quick:
        args.limit, args.minutes = args.limit or 24, args.minutes or 2.5
    torch.set_num_threads(args.threads)
    if args.variants:
        rows = variant_rows(args)
        table = variant_markdown(rows)
    else:
        rows = run(args)
        table = markdown(rows)
    print(table)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_json(args.output / "benchmark.json", {"settings": settings, "rows": rows, "table": table})


if __name__ == "__main__":
    main()
