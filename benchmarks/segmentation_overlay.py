"""Every slice of a short-axis stack with its mask on top, tiled into one PNG, and per slice which classes
are present (to check by eye, e.g. that the RV is labelled wherever the LV is).

    medsuite segment ../shared/data/cardiac_multiview/cinema_examples/mnms2/sax_ed.nii.gz -o OUT
    python benchmarks/segmentation_overlay.py ../shared/data/cardiac_multiview/cinema_examples/mnms2/sax_ed.nii.gz \
        OUT/sax_ed_seg.nii.gz -o OUT/sax_ed_overlay.png

Uses the viewer's render helpers (window, overlay colours); labels are named from OUT/report.json when present.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from medsuite.io import atomic_path, read_3d, read_image
from medsuite.viewer.compare import to_png
from medsuite.viewer.overlay import overlay_labels
from medsuite.viewer.windowing import apply_window, auto_window, grey_to_rgb


def tile(image: np.ndarray, labels: np.ndarray, axis: int, columns: int = 6) -> np.ndarray:
    low, high = auto_window(image)
    tiles = []
    for s in range(image.shape[axis]):
        grey = apply_window(np.take(image, s, axis=axis), (low + high) / 2, high - low)
        tiles.append(np.concatenate([grey_to_rgb(grey), overlay_labels(grey_to_rgb(grey), np.take(labels, s, axis=axis), opacity=0.45)], axis=1))
    rows = [np.concatenate(tiles[i : i + columns] + [np.zeros_like(tiles[0])] * (columns - len(tiles[i : i + columns])), axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", type=Path)
    parser.add_argument("mask", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    args = parser.parse_args()
    vol, mask = read_3d(args.image), read_image(args.mask)
    labels = np.asarray(mask.array).astype(np.int64)
    axis = int(np.argmax(vol.spacing))  # the stack axis: coarsest spacing
    report = args.mask.parent / "report.json"
    names = {int(k): v for k, v in json.loads(report.read_text())["labels"].items()} if report.exists() else {int(v): f"label {v}" for v in np.unique(labels) if v}
    for s in range(labels.shape[axis]):
        present = sorted(int(v) for v in np.unique(np.take(labels, s, axis=axis)) if v)
        print(f"slice {s}: " + (", ".join(names.get(v, str(v)) for v in present) or "-"))
    with atomic_path(args.output) as tmp:
        tmp.write_bytes(to_png(tile(np.asarray(vol.array, dtype=np.float32), labels, axis)))
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
