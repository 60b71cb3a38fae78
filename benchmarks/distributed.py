"""Training throughput of ``train segmentation`` under torchrun: slices per second with 1 and N processes.

    python benchmarks/distributed.py                       # 1 and 2 CPU processes (gloo), one thread each
    python benchmarks/distributed.py --processes 1 2 4 --device cuda   # on a GPU node (nccl), one GPU per process

A generated cohort in ACDC's NIfTI layout (card acdc_nifti with --root) is trained for --epochs epochs by
``torchrun --standalone --nproc-per-node N medsuite train segmentation``; validation runs after the last epoch
only. Throughput is the train split's slices times the epochs 2..E-1 (epoch 1 warms up, the last one validates)
over the wall time between the ends of epoch 1 and epoch E-1 that history.json records. Prints a
markdown table with each run's ratio to one process, and writes the raw figures to --output/distributed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from medsuite.data.cards import load_card
from medsuite.data.datasets import discover_records, split_records
from medsuite.io import write_json
from medsuite.segmentation.synthetic import write_synthetic_acdc

REPO_ROOT = Path(__file__).resolve().parents[1]


def train_slices(root: Path, slices_per_patient: int) -> int:
    """The train split's slices: one epoch covers each once (a rank short of slices repeats some of its own,
    which costs time and is not counted)."""
    card = load_card("acdc_nifti")
    return len(split_records(card, discover_records(card, root))["train"]) * slices_per_patient


def run(processes: int, pipeline: Path, out: Path, device: str) -> list[dict]:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes), "-m", "medsuite.cli"]
    command += ["train", "segmentation", "--pipeline", str(pipeline), "-o", str(out), "--device", device, "--quiet"]
    subprocess.run(command, check=True, env=env, capture_output=True)
    return json.loads((out / "history.json").read_text())["history"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts to compare (the first is the reference)")
    parser.add_argument("--patients", type=int, default=12, help="generated patients (70 %% train)")
    parser.add_argument("--slices", type=int, default=8, help="short-axis slices per patient")
    parser.add_argument("--size", type=int, default=64, help="in-plane size of the volumes and of the network input")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per run (>= 3)")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl)")
    parser.add_argument("--output", type=Path, default=None, help="folder for the runs and distributed.json (default: a temporary one)")
    args = parser.parse_args()
    work = args.output or Path(tempfile.mkdtemp(prefix="medsuite-distributed-"))
    root = write_synthetic_acdc(work / "acdc", args.patients, shape=(args.size, args.size, args.slices))
    pipeline = work / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({
        "data": {"card": "acdc_nifti", "root": str(root), "image_size": [args.size, args.size]},
        "backbone": {"kind": "cnn", "spatial_dims": 2, "channels": [8, 16, 32], "strides": [2, 2, 2]},
        "train": {"epochs": args.epochs, "batch_size": 8, "augment": True, "val_every": args.epochs},
    }))
    rows = []
    for n in args.processes:
        history = run(n, pipeline, work / f"run_{n}", args.device)
        seconds = (history[-2]["minutes"] - history[0]["minutes"]) * 60
        slices = train_slices(root, args.slices) * (args.epochs - 2)
        rows.append({"processes": n, "slices": slices, "seconds": round(seconds, 2), "slices_per_second": round(slices / seconds, 2)})
    reference = rows[0]["slices_per_second"]
    print(f"| processes ({args.device}) | slices/s | ratio to {rows[0]['processes']} |\n|---|---|---|")
    for row in rows:
        row["ratio"] = round(row["slices_per_second"] / reference, 2)
        print(f"| {row['processes']} | {row['slices_per_second']:.1f} | {row['ratio']:.2f} |")
    write_json(work / "distributed.json", {"args": {k: str(v) for k, v in vars(args).items()}, "runs": rows})
    print(f"wrote {work / 'distributed.json'}")


if __name__ == "__main__":
    main()
