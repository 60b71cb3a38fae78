"""The concept pipeline with each backbone (cnn, snn, hebbian) on the SYNTHETIC choroid cohort, side by side.

    python benchmarks/backbones_concepts.py                       # ~5 CPU min: 150 + 150 patients, 2 epochs
    python benchmarks/backbones_concepts.py --patients 750 --epochs 8   # the pipeline's own schedule

Each row is ``medsuite train concepts`` on the shipped ``concepts_choroid`` pipeline with only the backbone kind
changed (snn: T=4, rate readout; hebbian: SPHeRe pretraining, then the same supervised fine-tune) and a shorter
schedule (no joint CBM). Figures are the held-out cohort's, from the run's report.json: macro-F1 of the
sequential CBM and of the black box on the same encoders, concept AUC from images, and the 45 nm energy
estimate of one held-out patient's 7 images through the modality encoders.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import yaml

from medsuite.concepts.train import train_concepts
from medsuite.config import PIPELINES_DIR
from medsuite.runtime import configure_runtime

BACKBONES = {"cnn": {"kind": "cnn"}, "snn": {"kind": "snn", "time_steps": 4}, "hebbian": {"kind": "hebbian", "pretrain_epochs": 2}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=150, help="training cohort")
    parser.add_argument("--test-patients", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=2, help="supervised encoder epochs")
    parser.add_argument("--only", nargs="+", choices=list(BACKBONES), default=list(BACKBONES))
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: the figures in docs/benchmarks.md)")
    args = parser.parse_args()
    configure_runtime(args.threads, "cpu")
    config = yaml.safe_load((PIPELINES_DIR / "concepts_choroid.yaml").read_text())
    config["synthetic"].update(patients=args.patients, test_patients=args.test_patients)
    config["train"].update(encoder_epochs=args.epochs, joint_epochs=0)
    print(f"SYNTHETIC choroid cohort: {args.patients} train / {args.test_patients} held-out patients, {config['image_size']}px, {args.epochs} encoder epochs")
    print(f"{'backbone':<10}{'F1 CBM':>8}{'F1 BB':>8}{'concept AUC':>13}{'mJ/patient':>12}{'x cnn':>7}{'MACs':>12}{'ACs':>12}{'train s':>9}")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            run = dict(config, backbone=config["backbone"] | BACKBONES[name])
            pipeline = Path(tmp) / f"{name}.yaml"
            pipeline.write_text(yaml.safe_dump(run))
            report = train_concepts(pipeline, Path(tmp) / name)
            test, energy = report["test"], report["energy"]
            rows[name] = energy["energy_mj"]
            ratio = f"{energy['energy_mj'] / rows['cnn']:.2f}" if "cnn" in rows else "-"
            print(
                f"{name:<10}{test['f1_cbm_sequential']:>8.3f}{test['f1_black_box']:>8.3f}{test['concept_auc_sequential']:>13.3f}"
                f"{energy['energy_mj']:>12.4f}{ratio:>7}{energy['macs']:>12,}{energy['acs']:>12,}{report['seconds']:>9.0f}",
                flush=True,
            )
    print("energy: 45nm estimate (4.6 pJ/MAC, 0.9 pJ/AC) of the encoders on the first held-out patient (7 images)")


if __name__ == "__main__":
    main()
