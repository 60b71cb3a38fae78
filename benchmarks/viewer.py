"""Review station responsiveness on a 256 x 256 x 200 volume (target: under 0.3 s per rerun).

Runs the real pages under streamlit.testing.v1.AppTest (the script run includes slicing, windowing,
PNG encoding of every view) and the pure render functions alone, then prints a table.

    python benchmarks/viewer.py [--reruns 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medsuite.io import write_json, write_nifti  # noqa: E402
from medsuite.provenance import new_report  # noqa: E402
from medsuite.viewer.compare import to_png  # noqa: E402
from medsuite.viewer.results import RESULTS_ENV  # noqa: E402
from medsuite.viewer.slicing import PLANES  # noqa: E402
from medsuite.viewer.views import render_view  # noqa: E402

SHAPE = (256, 256, 200)
AFFINE = np.diag([0.9, 0.9, 1.2, 1.0])
TARGET_S = 0.3


def make_results(root: Path) -> Path:
    """A register and a segment result on a 256 x 256 x 200 grid (uncompressed NIfTI: quick to write)."""
    rng = np.random.default_rng(0)
    i, j, k = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    body = ((i - 128) / 100.0) ** 2 + ((j - 128) / 90.0) ** 2 + ((k - 100) / 80.0) ** 2 <= 1
    fixed = (body * 600 + rng.normal(0, 20, SHAPE)).astype(np.float32)
    inputs = root / "inputs"
    fixed_path = write_nifti(inputs / "fixed.nii", fixed, AFFINE)
    moving_path = write_nifti(inputs / "moving.nii", np.roll(fixed, 3, axis=0), AFFINE)
    reg = root / "registration"
    write_nifti(reg / "warped.nii", np.roll(fixed, 1, axis=0), AFFINE)
    ddf = np.zeros(SHAPE + (1, 3), np.float32)
    ddf[..., 0, 0] = 2.0 * np.sin(np.linspace(0, np.pi, SHAPE[0]))[:, None, None]
    write_nifti(reg / "ddf.nii", ddf, AFFINE, intent="vector")
    report = new_report("register", [fixed_path, moving_path])
    report.update(outputs={"warped": "warped.nii", "ddf": "ddf.nii"}, fixed=str(fixed_path), moving=str(moving_path))
    write_json(reg / "report.json", report)
    seg = root / "segmentation"
    write_nifti(seg / "body_seg.nii", body.astype(np.uint8) + (body & (i < 128)).astype(np.uint8), AFFINE)
    report = new_report("segment", [fixed_path])
    report.update(labels={"1": "body", "2": "right half"}, cases={"body": {"input": str(fixed_path), "status": "done", "output": "body_seg.nii"}})
    write_json(seg / "report.json", report)
    return root


def time_page(page: str, slider: str, modes: tuple[str, ...], reruns: int) -> list[tuple[str, float, float, float]]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "apps" / page), default_timeout=600)
    start = time.perf_counter()
    at.run()
    cold = time.perf_counter() - start
    assert not at.exception, [e.value for e in at.exception]
    rows = []
    for mode in modes:
        if mode:
            at.radio(key="reg_mode").set_value(mode).run()  # first draw of the mode (fills its caches)
        times = []
        for n in range(reruns):
            at.slider(key=slider).set_value(60 + 10 * n)
            start = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - start)
            assert not at.exception, [e.value for e in at.exception]
        rows.append((f"{page.split('/')[-1]} {mode or 'default'}", cold, statistics.median(times), max(times)))
        cold = float("nan")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reruns", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = make_results(Path(tmp))
        print(f"wrote a 256x256x200 register + segment result in {time.perf_counter() - t0:.1f} s")
        os.environ[RESULTS_ENV] = str(root)
        rows = time_page("pages/1_Registration.py", "reg_ax2", ("", "Checkerboard", "Deformation grid", "Jacobian"), args.reruns)
        rows += time_page("pages/2_Mask.py", "mask_ax2", ("",), args.reruns)

        fixed = np.asarray(np.random.default_rng(1).normal(0, 1, SHAPE), dtype=np.float32)
        spacing = np.diag(AFFINE)[:3]
        times = []
        for n in range(args.reruns):
            start = time.perf_counter()
            for plane in PLANES:
                to_png(render_view(fixed, spacing, plane, (128, 128, 60 + n), 0.0, 4.0))
            times.append(time.perf_counter() - start)
        rows.append(("pure: 3 views rendered + PNG", float("nan"), statistics.median(times), max(times)))

    print(f"\n{'scenario (slider move = rerun)':44s} {'first load s':>12s} {'rerun median s':>15s} {'rerun max s':>12s} {'median/target':>14s}")
    for name, cold, median, worst in rows:
        cold_text = "" if np.isnan(cold) else f"{cold:.2f}"
        print(f"{name:44s} {cold_text:>12s} {median:15.3f} {worst:12.3f} {median / TARGET_S:14.2f}")
    print(f"target: {TARGET_S} s per rerun; {os.cpu_count()} CPU cores visible")


if __name__ == "__main__":
    main()
