"""Backbones side by side on ACDC 2D segmentation: cnn, spiking U-Net (TET; MTT at T=1/2/4/8), converted SNN, Hebbian.

    python benchmarks/backbones.py --quick     # 16 train / 4 test volumes, 300 steps (too few to converge)
    python benchmarks/backbones.py             # 40 train / 16 test volumes, 1200 steps (~40 CPU min)
    python benchmarks/backbones.py --only mtt  # rows can be split over processes (the cnn row is always run)
    python benchmarks/backbones.py --neunet --quick   # the neU-Nets through the real pipeline, 3 patients, 1.5 min each
    python benchmarks/backbones.py --neunet --full    # all train patients, 60 min each, the 16 test patients
    python benchmarks/backbones.py --neunet --full --rows spiking --out DIR &  # one process per core, one table

``--neunet`` compares the shipped CNN neU-Net, the spiking neU-Net (``segmentation_spiking_neunet_acdc.yaml``:
TET, membrane head, mixed time steps) and the CNN neU-Net with a Hebbian encoder (SPHeRe warm-up on the training
patches inside the same budget, then fine-tuned end to end) through the segmentation pipeline itself (``train()``: native patches,
augmentation, validation on the card's val split, postprocessing), each on the same train patients and the same
wall-clock budget (``train.max_minutes``; the cosine schedule decays over it), then on the card's test split:
mean and per-class Dice, the spiking model again at T = 1, 2, 4, 8 (MTT, batch norm re-estimated on training
patches; T past the trained one is marked), energy per volume (one central 128x128 patch per slice) under every convention, CPU s per volume.

The cnn is ``make_encoder(spec)`` + a small MONAI-block U-Net decoder (analog). The spiking rows are
``SpikingUNet``: ``make_encoder(spec, kind="snn")`` + a spike-driven decoder, so only the first conv (direct
encoding of the analog image, at every time step) costs MACs; every other conv, the 1x1 head included, is fed
binary spikes and costs accumulates. All models get the same slices in the same order and the same number of
forward/backward passes (MTT sums 3 sampled configurations per optimiser step, as in the paper, so it takes a
third of the steps); a cnn with twice the steps checks that the baseline has converged. The converted rows
keep the cnn's analog decoder (conversion is an encoder route). Slices are resized in-plane to a square; Dice (RV, myocardium, LV, mean) is computed per test volume in that grid. The Hebbian
rows compare linear probes (a 1x1 conv on upsampled stage features) on a SPHeRe-pretrained vs a randomly
initialised frozen encoder. Energy is the 45 nm estimate of ``medsuite.backbones.energy`` per test volume (all
its slices), averaged over the first test volumes; "x cnn" is the ratio to the cnn's whole model.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks.blocks import Convolution
from torch import nn

from medsuite.backbones import make_encoder
from medsuite.backbones.conversion import convert_to_snn
from medsuite.backbones.energy import estimate_energy
from medsuite.backbones.hebbian import pretrain_hebbian
from medsuite.backbones.spiking_unet import SpikingUNet
from medsuite.backbones.training import mtt_step, reestimate_batchnorm, tet_loss
from medsuite.runtime import configure_runtime

CLASSES = 4
MTT_CONFIGS = 3  # sampled time-step configurations per MTT iteration (the paper's)
PARTS = ("cnn-check", "tet", "tet-membrane", "mtt", "converted", "hebbian")


class Decoder(nn.Module):
    """U-Net decoder on the encoder's stage list: upsample, concatenate the skip, conv block; 1x1 head."""

    def __init__(self, channels: list[int], classes: int):
        super().__init__()
        self.blocks = nn.ModuleList(Convolution(2, deep + skip, skip, kernel_size=3, norm="batch", act="relu") for deep, skip in zip(channels[:0:-1], channels[-2::-1]))
        self.head = nn.Conv2d(channels[0], classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        h = features[-1]
        for block, skip in zip(self.blocks, features[-2::-1]):
            h = block(torch.cat([F.interpolate(h, size=skip.shape[2:], mode="nearest"), skip], 1))
        return self.head(h)


class Segmenter(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class LinearProbe(nn.Module):
    """Frozen encoder + one 1x1 conv over all stage features upsampled to the input grid."""

    def __init__(self, encoder: nn.Module, classes: int):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.head = nn.Conv2d(sum(encoder.out_channels), classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = [F.interpolate(f, size=x.shape[2:], mode="nearest") for f in self.encoder(x)]
        return self.head(torch.cat(features, 1))


def load_slices(split: str, size: int, limit: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per volume: (slices (S,1,size,size), labels (S,size,size))."""
    from medsuite.data.cards import load_card
    from medsuite.data.datasets import make_dataset

    card = load_card("acdc_h5")
    dataset = make_dataset(card, split, limit=limit, orientation=None)
    volumes = []
    for i in range(len(dataset)):
        item = dataset[i]
        image = torch.as_tensor(item["image"]).float().permute(3, 0, 1, 2)  # (S, 1, H, W)
        label = torch.as_tensor(item["label"]).float().permute(3, 0, 1, 2)
        volumes.append((F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False), F.interpolate(label, size=(size, size), mode="nearest")[:, 0].long()))
    return volumes


def batches(volumes, batch_size: int, rng: random.Random):
    images = torch.cat([v[0] for v in volumes])
    labels = torch.cat([v[1] for v in volumes])
    while True:
        order = list(range(len(images)))
        rng.shuffle(order)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            index = order[start : start + batch_size]
            yield images[index], labels[index]


def criterion() -> nn.Module:
    return DiceCELoss(to_onehot_y=True, softmax=True)


def train(model: nn.Module, data, steps: int, loss_of, lr: float = 3e-3) -> float:
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    last = 0.0
    for _ in range(steps):
        x, y = next(data)
        loss = loss_of(model, x, y[:, None])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        last = float(loss.detach())
    return last


@torch.no_grad()
def evaluate(model: nn.Module, volumes, energy_volumes: int = 4) -> dict:
    model.eval()
    metric = DiceMetric(include_background=False, reduction="mean_batch")
    start = time.process_time()
    for image, label in volumes:
        prediction = model(image).argmax(1)
        # the volume as one 3D sample: (1, K, S, H, W)
        metric(F.one_hot(prediction, CLASSES).permute(3, 0, 1, 2)[None], F.one_hot(label, CLASSES).permute(3, 0, 1, 2)[None])
    seconds = (time.process_time() - start) / len(volumes)
    dice = metric.aggregate().tolist()
    whole = [estimate_energy(model, image) for image, _ in volumes[:energy_volumes]]
    encoder = [estimate_energy(model.encoder, image) for image, _ in volumes[:energy_volumes]]
    return {
        "dice": sum(dice) / len(dice),
        "per_class": dice,
        "energy_mj": sum(e["energy_mj"] for e in whole) / len(whole),
        "encoder_mj": sum(e["energy_mj"] for e in encoder) / len(encoder),
        "mac_share": sum(e["macs"] * 4.6 for e in whole) / sum(e["macs"] * 4.6 + e["acs"] * 0.9 for e in whole),
        "cpu_s": seconds,
    }


NEUNET_ROWS = {  # --neunet row -> (recipe, backbone kind it is trained with)
    "cnn": ("segmentation_neunet_acdc", "cnn"),
    "spiking": ("segmentation_spiking_neunet_acdc", "snn"),
    "hebbian": ("segmentation_neunet_acdc", "hebbian"),  # SPHeRe warm-up on the training patches, then fine-tuned
}
NEUNET_LABELS = {"cnn": "cnn neU-Net", "spiking": "spiking neU-Net", "hebbian": "hebbian neU-Net"}
MTT_EVAL_STEPS = (1, 2, 4, 8)


def neunet_rows(quick: bool, full: bool, seed: int, out: Path, minutes: float | None = None, which: tuple[str, ...] = tuple(NEUNET_ROWS)) -> None:
    """The ``--neunet`` table (module docstring); runs land in ``out`` (a run found there resumes, its budget kept).
    Each row's figures are merged into ``out/neunet_rows.json``, so rows trained by several processes at once
    (``--rows``, one per core) print side by side from there."""
    import json

    from monai.transforms import ResizeWithPadOrCrop

    from medsuite.backbones.energy import CONVENTIONS
    from medsuite.backbones.training import set_time_steps
    from medsuite.config import load_pipeline
    from medsuite.data.cards import load_card
    from medsuite.data.datasets import make_loader
    from medsuite.segmentation.config import SegmentationConfig
    from medsuite.segmentation.data import split_volumes, training_slices
    from medsuite.segmentation.evaluate import evaluate_volumes
    from medsuite.segmentation.labels import card_labels
    from medsuite.segmentation.models import load_trained, make_model
    from medsuite.segmentation.train import train as train_pipeline

    patients, default_minutes, test_volumes = (3, 1.5, 4) if quick else (None, 60.0, None) if full else (12, 15.0, 16)
    minutes = minutes or default_minutes
    card, labels = load_card("acdc_h5"), card_labels(load_card("acdc_h5"))
    print(f"neU-Nets through train(): {patients or 'all'} train patients, {minutes} min wall clock each, test split {test_volumes or 'all'} volumes, seed {seed}, rows {', '.join(which)}")

    def recipe(row: str) -> SegmentationConfig:
        name, kind = NEUNET_ROWS[row]
        config = load_pipeline(name, SegmentationConfig)
        # the budget, not the epoch count, ends training; validation only at its end (val_every past the last epoch)
        data = config.data.model_copy(update={"train_patients": patients, "limit": 2 * patients if patients else None})
        train = config.train.model_copy(update={"epochs": 10_000, "max_minutes": minutes, "val_every": 10_000, "patience": None})
        return config.model_copy(update={"data": data, "seed": seed, "train": train, "backbone": config.backbone.model_copy(update={"kind": kind})})

    def energy_of(model: nn.Module, config: SegmentationConfig, volumes) -> dict:
        crop = ResizeWithPadOrCrop(config.data.image_size)
        energy = []
        for i in range(min(2, len(volumes))):  # per volume: one central patch per slice
            image = volumes[i]["image"].as_tensor()[0]  # (H, W, S)
            patches = torch.stack([torch.as_tensor(crop(image[None, :, :, k])[0]) for k in range(image.shape[-1])])[:, None]
            energy.append(estimate_energy(model, patches)["energy_mj_by_convention"])
        return {c: sum(e[c] for e in energy) / len(energy) for c in CONVENTIONS}

    def measure(model: nn.Module, config: SegmentationConfig, volumes) -> dict:
        start = time.process_time()
        metrics = evaluate_volumes([(model, config)], volumes, labels)
        seconds = (time.process_time() - start) / len(volumes)
        return {"dice": metrics["mean_dice"], "per_class": [metrics["per_class"][n]["dice"] for n in labels.values()], "cpu_s": seconds, "mj": energy_of(model, config, volumes)}

    store = out / "neunet_rows.json"
    for row in which:
        config = recipe(row)
        result = train_pipeline(config, out / row, quiet=True)
        trained = load_trained(out / row / "best.pt")
        slices = training_slices(card, trained.config)
        test = split_volumes(card, trained.config.model_copy(update={"data": trained.config.data.model_copy(update={"limit": test_volumes})}), "test")
        steps = math.ceil(len(slices) / config.train.batch_size) * result["epochs"]
        print(f"  {NEUNET_LABELS[row]}: {result['epochs']} epochs, {steps} optimiser steps in {minutes} min, val Dice {result['best_val_mean_dice']:.3f}", flush=True)
        found: dict[str, dict] = {}
        if config.train.time_steps != "mixed":
            found[NEUNET_LABELS[row]] = measure(trained.model, trained.config, test)
        else:
            calibration = [batch["image"] for batch in itertools.islice(make_loader(slices, batch_size=16, shuffle=True, seed=seed), 4)]
            trained_t = max(trained.model.encoder.stage_steps)
            for steps_t in sorted({*MTT_EVAL_STEPS, trained_t}):  # past the trained T too (MTT sampled 1..trained_t)
                set_time_steps(trained.model, steps_t, calibration)
                beyond = " (past training)" if steps_t > trained_t else ""
                found[f"{NEUNET_LABELS[row]} T={steps_t}{beyond}"] = measure(trained.model.eval(), trained.config, test)
        for figures in found.values():
            figures.update({"steps": steps, "minutes": minutes, "seed": seed})
        store.parent.mkdir(parents=True, exist_ok=True)
        fresh = json.loads(store.read_text()) if store.exists() else {}  # another process may have added rows since
        store.write_text(json.dumps(fresh | found, indent=1))
    rows: dict[str, dict] = json.loads(store.read_text())  # this process's rows and any others' so far
    # The CNN's energy does not depend on its weights (every MAC counts): an untrained one prices the baseline
    # when this process trained no cnn row.
    cnn = recipe("cnn")
    base = rows["cnn neU-Net"]["mj"]["45nm"] if "cnn neU-Net" in rows else energy_of(make_model(cnn).eval(), cnn, split_volumes(card, cnn.model_copy(update={"data": cnn.data.model_copy(update={"limit": 2})}), "test"))["45nm"]
    names = list(labels.values())
    print(f"\n{'model':<36}{'steps':>7}{'Dice':>7}" + "".join(f"{n[:5]:>7}" for n in names) + "".join(f"{c + ' mJ':>18}" for c in CONVENTIONS) + f"{'x cnn 45nm':>12}{'CPU s/vol':>11}")
    for name, r in rows.items():
        print(f"{name:<36}{r['steps']:>7}{r['dice']:>7.3f}" + "".join(f"{d:>7.3f}" for d in r["per_class"]) + "".join(f"{r['mj'][c]:>18.3f}" for c in CONVENTIONS) + f"{r['mj']['45nm'] / base:>12.2f}{r['cpu_s']:>11.2f}")
    print(f"rows from {store}; energy: estimate, not a measurement, per test volume (one central patch per slice, mean of the first 2 volumes); Dice: whole test volumes, sliding window, postprocessed as the recipe says")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer patients and steps")
    parser.add_argument("--neunet", action="store_true", help="the CNN and spiking neU-Nets through the segmentation pipeline instead of the small-network table")
    parser.add_argument("--full", action="store_true", help="--neunet: every train patient, 60 min per model, the whole test split")
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark_neunets"), help="--neunet: where the training runs go")
    parser.add_argument("--minutes", type=float, default=None, help="--neunet: wall-clock training budget per model (default 1.5 quick, 15, 60 full)")
    parser.add_argument("--rows", nargs="+", choices=list(NEUNET_ROWS), default=list(NEUNET_ROWS), help="--neunet: which models this process trains (run one process per core; the table merges them)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS), help="which rows besides the cnn baselines (to split the run over processes)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: the figures in docs/benchmarks.md)")
    args = parser.parse_args()
    configure_runtime(args.threads, "cpu")
    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "acdc_h5"
    if not root.exists():
        print(f"skipped: ACDC h5 data not found at {root}")
        return
    if args.neunet:
        neunet_rows(args.quick, args.full, args.seed, args.out, args.minutes, tuple(args.rows))
        return
    size, n_train, n_test, steps = (64, 16, 4, 300) if args.quick else (64, 40, 16, 1200)
    steps = args.steps or steps
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    train_volumes, test_volumes = load_slices("train", size, n_train), load_slices("test", size, n_test)
    print(f"ACDC: {len(train_volumes)} train / {len(test_volumes)} test volumes, slices {size}x{size}, {steps} steps, batch 8")
    spec = {"spatial_dims": 2, "in_channels": 1, "channels": [8, 16, 32, 64], "strides": [1, 2, 2, 2], "norm": "batch"}
    ce = criterion()
    rows: dict[str, dict] = {}
    calibration = [torch.cat([v[0] for v in train_volumes])[i : i + 16] for i in range(0, 64, 16)]

    def timed(name, fn):
        start = time.process_time()
        out = fn()
        print(f"  {name}: trained in {time.process_time() - start:.0f} CPU s", flush=True)
        return out

    def supervised(m, x, y):
        return ce(m(x), y)

    def data():
        """Every model sees the same batches in the same order."""
        return batches(train_volumes, 8, random.Random(args.seed))

    def record(name: str, result: dict) -> None:
        rows[name] = result
        print(f"  {row_text(name, result, rows['cnn'])}", flush=True)  # as it comes: the table is repeated at the end

    def train_cnn(name: str, budget: int) -> Segmenter:
        model = Segmenter(make_encoder(spec), Decoder(spec["channels"], CLASSES))
        timed(name, lambda: train(model, data(), budget, supervised))
        record(name, evaluate(model, test_volumes))
        return model

    # cnn: the same steps as the spiking models (and, to check it has converged, twice as many)
    print(f"  {HEADER}")
    cnn = train_cnn("cnn", steps)
    if "cnn-check" in args.only:
        train_cnn("cnn 2x steps", 2 * steps)
    base = rows["cnn"]

    if "tet" in args.only:  # fully spiking U-Net with TET at T=4
        snn = SpikingUNet({**spec, "kind": "snn", "time_steps": 4}, CLASSES)
        timed("spiking U-Net TET", lambda: train(snn, data(), steps, lambda m, x, y: tet_loss(m.forward_steps(x), y, ce)))
        record("spiking TET T=4", evaluate(snn, test_volumes))

    if "tet-membrane" in args.only:  # the same, with the 1x1 head reading the last block's membrane potentials (MACs)
        snn_mem = SpikingUNet({**spec, "kind": "snn", "time_steps": 4, "head_readout": "membrane"}, CLASSES)
        timed("spiking U-Net TET, membrane head", lambda: train(snn_mem, data(), steps, lambda m, x, y: tet_loss(m.forward_steps(x), y, ce)))
        record("spiking TET mem-hd", evaluate(snn_mem, test_volumes))

    if "mtt" in args.only:  # fully spiking U-Net, mixed time-step training (T_max = 8), evaluated at T = 1, 2, 4, 8 after BN re-estimation
        mtt = SpikingUNet({**spec, "kind": "snn", "time_steps": 8}, CLASSES)
        optimiser = torch.optim.Adam(mtt.parameters(), lr=3e-3)
        mtt_data = data()
        start = time.process_time()
        mtt.train()
        for _ in range(steps // MTT_CONFIGS):  # each iteration is MTT_CONFIGS forward/backward passes: the same gradient evaluations as the others
            x, y = next(mtt_data)
            mtt_step(mtt.encoder, lambda x=x, y=y: ce(mtt(x), y[:, None]), optimiser, t_max=8, configs=MTT_CONFIGS, rng=rng)
        print(f"  spiking U-Net MTT: trained in {time.process_time() - start:.0f} CPU s", flush=True)
        for T in (1, 2, 4, 8):
            mtt.encoder.set_time_steps(T)
            reestimate_batchnorm(mtt, calibration)
            record(f"spiking MTT T={T}", evaluate(mtt, test_volumes))

    if "converted" in args.only:  # ANN -> SNN conversion of the trained cnn encoder, layer-wise calibrated, the cnn's analog decoder kept
        for T in (8, 32):
            converted = Segmenter(convert_to_snn(cnn.encoder, calibration[:2], time_steps=T), cnn.decoder)
            record(f"converted T={T}", evaluate(converted, test_volumes))

    if "hebbian" in args.only:  # Hebbian (SPHeRe) pretraining vs random init, both frozen, linear probes
        hebbian = make_encoder(spec, kind="hebbian")
        unlabelled = (x for x, _ in data())
        history = timed("hebbian pretraining", lambda: pretrain_hebbian(hebbian, unlabelled, max_steps=steps))
        print(f"  SPHeRe loss {history[0]:.3f} -> {history[-1]:.3f}")
        for name, encoder in (("hebbian probe", hebbian), ("random probe", make_encoder(spec, kind="hebbian"))):
            reestimate_batchnorm(encoder, calibration)  # both frozen encoders get train-set BN statistics
            probe = LinearProbe(encoder, CLASSES)
            timed(name, lambda probe=probe: train(probe, data(), steps, supervised, lr=1e-2))  # one linear layer: larger steps
            record(name, evaluate(probe, test_volumes))

    print(f"\n{HEADER}")
    for name, r in rows.items():
        print(row_text(name, r, base))
    print(f"energy: 45nm estimate (4.6 pJ/MAC, 0.9 pJ/AC) per test volume, mean of the first {min(4, len(test_volumes))}; MAC share: part of the total energy spent on MACs")
    print("probes' totals count their frozen encoder and 1x1 head; converted rows keep the cnn's analog decoder")


HEADER = f"{'model':<18}{'Dice':>7}{'RV':>6}{'Myo':>6}{'LV':>6}{'enc mJ/vol':>12}{'total mJ/vol':>14}{'x cnn':>7}{'MAC share':>11}{'CPU s/vol':>11}"


def row_text(name: str, r: dict, base: dict) -> str:
    rv, myo, lv = r["per_class"]
    return (
        f"{name:<18}{r['dice']:>7.3f}{rv:>6.2f}{myo:>6.2f}{lv:>6.2f}{r['encoder_mj']:>12.4f}"
        f"{r['energy_mj']:>14.4f}{r['energy_mj'] / base['energy_mj']:>7.2f}{r['mac_share']:>11.2f}{r['cpu_s']:>11.2f}"
    )


if __name__ == "__main__":
    main()
