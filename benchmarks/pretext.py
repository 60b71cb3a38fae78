"""Label efficiency of the anatomy-plane pretext encoder on ACDC segmentation (2, 4, 8 labelled patients).

    python benchmarks/pretext.py [--encoder RUN/encoder.pt] [--iterations 200] [--pretrain-iterations 500]
    # the two arms can run as separate processes; scores merge in --out/scores.json:
    python benchmarks/pretext.py --arms scratch & python benchmarks/pretext.py --arms pretext

1. Held-out test patients (seeded draw from the ACDC h5 set) never enter pretraining or fine-tuning.
2. Pretraining (unless --encoder): task 1 on the multi-view exams (DICOM exam, M&Ms-2 SAX+4CH),
   task 2 on every other unlabelled SAX stack (ACDC frames without labels, M&Ms).
3. Fine-tuning: the same U-Net (encoder from make_encoder + the pretext package's U-Net decoder,
   MONAI blocks) from scratch and from the pretext encoder, on 2 / 4 / 8 labelled patients (both
   frames), identical seeds, iterations and data order; mean foreground Dice (RV, MYO, LV) on the
   held-out patients' volumes. The segmentation package had no public fine-tune API when written.
Images are 2D slices resized to --size (default 96) for CPU speed; Dice is measured on that grid.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medsuite.backbones import make_encoder  # noqa: E402
from medsuite.checkpoints import load_checkpoint  # noqa: E402
from medsuite.io import write_json  # noqa: E402
from medsuite.pretext.model import UNetDecoder  # noqa: E402
from medsuite.pretext.pretrain import CNN_2D, PretextConfig, Source, normalise, run_pretraining  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ACDC = DATA / "acdc_h5"
CLASSES = 4


class SegNet(nn.Module):
    """Encoder (the --init contract attribute name) + U-Net decoder to class logits."""

    def __init__(self, backbone: dict):
        super().__init__()
        self.encoder = make_encoder(backbone)
        self.decoder = UNetDecoder(self.encoder, 2, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def patients() -> list[str]:
    return sorted({p.name.split("_")[0] for p in ACDC.glob("patient*_frame*.h5")})


def load_slices(patient_ids: list[str], size: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Images (N, 1, size, size) normalised like pretraining, labels (N, size, size), slices per volume."""
    images, labels, counts = [], [], []
    for pid in patient_ids:
        for file in sorted(ACDC.glob(f"{pid}_frame*.h5")):
            with h5py.File(file, "r") as handle:
                image, label = np.asarray(handle["image"], np.float32), np.asarray(handle["label"], np.int64)
            x = torch.from_numpy(np.stack([normalise(s) for s in image]))[:, None]
            images.append(F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False))
            labels.append(F.interpolate(torch.from_numpy(label)[:, None].float(), size=(size, size), mode="nearest")[:, 0].long())
            counts.append(len(image))
    return torch.cat(images), torch.cat(labels), counts


def fine_tune(images, labels, encoder_path: Path | None, iterations: int, seed: int, batch: int = 8) -> SegNet:
    torch.manual_seed(seed)
    model = SegNet(CNN_2D)
    if encoder_path is not None:
        model.encoder.load_state_dict(load_checkpoint(encoder_path, kind="encoder")["state"])
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(iterations):
        index = torch.randint(len(images), (batch,), generator=generator)
        x, y = images[index], labels[index][:, None]
        if torch.rand(1, generator=generator).item() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        loss = loss_fn(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model


@torch.no_grad()
def location_error(pretext_model: Path, patient_ids: list[str], size: int) -> tuple[float, float]:
    """Task 2 on unseen stacks: mean |predicted - true| slice location (0..1), and that of always answering 0.5."""
    from medsuite.pretext.model import PretextNet

    checkpoint = load_checkpoint(pretext_model, kind="pretext")
    model = PretextNet(checkpoint["config"]["backbone"], heatmap_channels=4)
    model.load_state_dict(checkpoint["state"])
    model.eval()
    images, _, counts = load_slices(patient_ids, size)
    truth = torch.cat([torch.linspace(0, 1, n) for n in counts])
    predicted = torch.cat([model(images[i : i + 32])[1] for i in range(0, len(images), 32)])
    return float((predicted - truth).abs().mean()), float((truth - 0.5).abs().mean())


@torch.no_grad()
def evaluate(model: SegNet, images, labels, counts: list[int]) -> float:
    """Mean foreground Dice over test volumes (per volume, classes 1..3, then averaged)."""
    model.eval()
    metric = DiceMetric(include_background=False, reduction="mean_batch", ignore_empty=True)
    start = 0
    for n in counts:
        pred = torch.cat([model(images[start + i : start + min(i + 16, n)]).argmax(1) for i in range(0, n, 16)])
        truth = labels[start : start + n]
        # (1, C, H, W, S): one volume per metric row.
        one_hot = lambda v: F.one_hot(v, CLASSES).permute(3, 1, 2, 0)[None].float()  # noqa: E731
        metric(one_hot(pred), one_hot(truth))
        start += n
    return float(metric.aggregate().mean()) * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", type=Path, help="a pretext encoder.pt; pretrain one when absent")
    parser.add_argument("--pretrain-iterations", type=int, default=500)
    parser.add_argument("--iterations", type=int, default=200, help="fine-tuning iterations per run")
    parser.add_argument("--arms", nargs="+", choices=["scratch", "pretext"], default=["scratch", "pretext"])
    parser.add_argument("--labelled", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--test-patients", type=int, default=10)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/medsuite_pretext_benchmark"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not ACDC.is_dir():
        sys.exit(f"benchmark needs {ACDC} (absent)")
    order = list(np.random.default_rng(args.seed).permutation(patients()))
    test, pool = order[: args.test_patients], order[args.test_patients :]
    print(f"test patients ({len(test)}): {' '.join(test)}")
    encoder = args.encoder
    if encoder is None and "pretext" in args.arms:
        cmv = DATA / "cardiac_multiview"
        config = PretextConfig(
            sources=[
                Source(layout="dicom_exam", path=str(cmv / "cmr_plan_056B")),
                Source(layout="cinema_nifti", path=str(cmv / "cinema_examples" / "mnms2")),
                Source(layout="nifti_stacks", path=str(cmv / "cinema_examples" / "mnms")),
                Source(layout="acdc_h5", path=str(ACDC), exclude=test),
            ],
            image_size=args.size,
            iterations=args.pretrain_iterations,
            seed=args.seed,
            device="cpu",
        )
        start = time.time()
        figures = run_pretraining(config, args.out / "pretrain")
        encoder = args.out / "pretrain" / "encoder.pt"
        print(f"pretrained on {figures['n_samples']} slices in {time.time() - start:.0f} s: loss {figures['loss_first']} -> {figures['loss_last']}")
    if "pretext" in args.arms and (encoder.parent / "pretext_model.pt").exists():
        mae, baseline = location_error(encoder.parent / "pretext_model.pt", test, args.size)
        print(f"task 2 on held-out stacks: slice-location MAE {mae:.3f} (always answering 0.5: {baseline:.3f})")
    test_images, test_labels, test_counts = load_slices(test, args.size)
    scores_file = args.out / "scores.json"
    for n in args.labelled:
        train_images, train_labels, _ = load_slices(pool[:n], args.size)
        for arm in args.arms:
            start = time.time()
            model = fine_tune(train_images, train_labels, encoder if arm == "pretext" else None, args.iterations, args.seed)
            dice = evaluate(model, test_images, test_labels, test_counts)
            print(f"  {n} labelled, {arm}: Dice {dice:.2f} ({time.time() - start:.0f} s)", flush=True)
            # Merge with what other processes (the other arm) wrote; keyed by the settings that matter.
            scores = json.loads(scores_file.read_text()) if scores_file.exists() else {}
            scores[f"{arm}/{n}/{args.iterations}/{args.size}/{args.seed}"] = dice
            write_json(scores_file, scores)
    scores = json.loads(scores_file.read_text())
    get = lambda arm, n: scores.get(f"{arm}/{n}/{args.iterations}/{args.size}/{args.seed}")  # noqa: E731
    print(f"\nACDC mean foreground Dice (%) on {len(test)} held-out patients, {args.iterations} fine-tuning iterations, {args.size}^2 slices")
    print(f"{'labelled':>8} {'scratch':>8} {'pretext':>8} {'gain':>7}")
    for n in args.labelled:
        scratch, pretext = get("scratch", n), get("pretext", n)
        cell = lambda v: f"{v:>8.2f}" if v is not None else f"{'-':>8}"  # noqa: E731
        gain = f"{pretext - scratch:>+7.2f}" if scratch is not None and pretext is not None else f"{'-':>7}"
        print(f"{n:>8} {cell(scratch)} {cell(pretext)} {gain}")


if __name__ == "__main__":
    main()
