"""Backbones side by side on ACDC 2D segmentation: cnn, snn (TET), snn-MTT at T=1/2/4/8, converted SNN, Hebbian.

    python benchmarks/backbones.py --quick     # minutes on one CPU core
    python benchmarks/backbones.py             # larger slices, more patients and steps

Every model is ``make_encoder(spec)`` + the same small MONAI-block U-Net decoder (analog, so its cost is the
same for all; energy is reported for the encoder alone and for the whole model). Slices are resized in-plane
to a square; Dice (RV, myocardium, LV, mean) is computed per test volume in that grid. The Hebbian row compares
linear probes (a 1x1 conv on upsampled stage features) on a SPHeRe-pretrained vs a randomly initialised frozen
encoder. Energy is the 45 nm estimate of ``medsuite.backbones.energy`` per test volume (all its slices).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks.blocks import Convolution
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medsuite.backbones import make_encoder  # noqa: E402
from medsuite.backbones.conversion import convert_to_snn  # noqa: E402
from medsuite.backbones.energy import estimate_energy  # noqa: E402
from medsuite.backbones.hebbian import pretrain_hebbian  # noqa: E402
from medsuite.backbones.training import mtt_step, reestimate_batchnorm, tet_loss  # noqa: E402

CLASSES = 4


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

    def forward_steps(self, x: torch.Tensor) -> torch.Tensor:
        """Per-time-step logits (T, B, K, H, W) of a spiking encoder with one T for all stages (for TET)."""
        steps = self.encoder.forward_steps(x)
        T = steps[0].shape[0]
        logits = self.decoder([s.reshape(-1, *s.shape[2:]) for s in steps])
        return logits.reshape(T, -1, *logits.shape[1:])


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
def evaluate(model: nn.Module, volumes, energy_volumes: int = 1) -> dict:
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
        "cpu_s": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small slices, few patients and steps")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "acdc_h5"
    if not root.exists():
        print(f"skipped: ACDC h5 data not found at {root}")
        return
    size, n_train, n_test, steps = (64, 16, 4, 150) if args.quick else (128, 56, 16, 600)
    steps = args.steps or steps
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    train_volumes, test_volumes = load_slices("train", size, n_train), load_slices("test", size, n_test)
    print(f"ACDC: {len(train_volumes)} train / {len(test_volumes)} test volumes, slices {size}x{size}, {steps} steps")
    spec = {"spatial_dims": 2, "in_channels": 1, "channels": [8, 16, 32, 64], "strides": [1, 2, 2, 2], "norm": "batch"}
    ce = criterion()
    rows: dict[str, dict] = {}

    def timed(name, fn):
        start = time.process_time()
        out = fn()
        print(f"  {name}: trained in {time.process_time() - start:.0f} CPU s", flush=True)
        return out

    # cnn
    cnn = Segmenter(make_encoder(spec), Decoder(spec["channels"], CLASSES))
    timed("cnn", lambda: train(cnn, batches(train_volumes, 8, rng), steps, lambda m, x, y: ce(m(x), y)))
    rows["cnn"] = evaluate(cnn, test_volumes)

    # snn with TET at T=4
    snn = Segmenter(make_encoder(spec, kind="snn", time_steps=4), Decoder(spec["channels"], CLASSES))
    timed("snn-TET", lambda: train(snn, batches(train_volumes, 8, rng), steps, lambda m, x, y: tet_loss(m.forward_steps(x), y, ce)))
    rows["snn TET T=4"] = evaluate(snn, test_volumes)

    # snn with mixed time-step training (T_max = 8), evaluated at T = 1, 2, 4, 8 after BN re-estimation
    mtt = Segmenter(make_encoder(spec, kind="snn", time_steps=8), Decoder(spec["channels"], CLASSES))
    optimiser = torch.optim.Adam(mtt.parameters(), lr=3e-3)
    data = batches(train_volumes, 8, rng)
    start = time.process_time()
    mtt.train()
    for _ in range(steps):
        x, y = next(data)
        mtt_step(mtt.encoder, lambda: ce(mtt(x), y[:, None]), optimiser, t_max=8, rng=rng)
    print(f"  snn-MTT: trained in {time.process_time() - start:.0f} CPU s", flush=True)
    calibration = [torch.cat([v[0] for v in train_volumes])[i : i + 16] for i in range(0, 64, 16)]
    for T in (1, 2, 4, 8):
        mtt.encoder.set_time_steps(T)
        reestimate_batchnorm(mtt, calibration)
        rows[f"snn MTT T={T}"] = evaluate(mtt, test_volumes)

    # ANN -> SNN conversion of the trained cnn encoder, layer-wise calibrated, the cnn decoder kept
    for T in (8, 32):
        converted = Segmenter(convert_to_snn(cnn.encoder, calibration[:2], time_steps=T), cnn.decoder)
        rows[f"converted T={T}"] = evaluate(converted, test_volumes)

    # Hebbian (SPHeRe) pretraining vs random init, both frozen, linear probes
    hebbian = make_encoder(spec, kind="hebbian")
    unlabelled = (x for x, _ in batches(train_volumes, 8, rng))
    history = timed("hebbian pretraining", lambda: pretrain_hebbian(hebbian, unlabelled, max_steps=steps))
    print(f"  SPHeRe loss {history[0]:.3f} -> {history[-1]:.3f}")
    for name, encoder in (("hebbian probe", hebbian), ("random probe", make_encoder(spec, kind="hebbian"))):
        reestimate_batchnorm(encoder, calibration)  # both frozen encoders get train-set BN statistics
        probe = LinearProbe(encoder, CLASSES)
        timed(name, lambda: train(probe, batches(train_volumes, 8, rng), steps, lambda m, x, y: ce(m(x), y), lr=1e-2))  # one linear layer: larger steps
        rows[name] = evaluate(probe, test_volumes)

    base = rows["cnn"]
    print(f"\n{'model':<16}{'Dice':>7}{'RV':>6}{'Myo':>6}{'LV':>6}{'enc mJ/vol':>12}{'x cnn':>7}{'total mJ/vol':>14}{'x cnn':>7}{'CPU s/vol':>11}")
    for name, r in rows.items():
        rv, myo, lv = r["per_class"]
        print(
            f"{name:<16}{r['dice']:>7.3f}{rv:>6.2f}{myo:>6.2f}{lv:>6.2f}{r['encoder_mj']:>12.3f}{r['encoder_mj'] / base['encoder_mj']:>7.2f}"
            f"{r['energy_mj']:>14.3f}{r['energy_mj'] / base['energy_mj']:>7.2f}{r['cpu_s']:>11.2f}"
        )
    print("energy: 45nm estimate (4.6 pJ/MAC, 0.9 pJ/AC), first test volume; probes' totals include only their 1x1 head")


if __name__ == "__main__":
    main()
