"""Pathological registration on the pathology family, whole processes side by side (known field and lesion).

    python benchmarks/registration.py [--resolution 2] [--seeds-per-type 2] [--types glio healthy] [--threads 1] [--quick]

Pairs: ``medsuite.registration.pathology.FAMILY`` (tumours of every contrast, structure, size and place,
resection cavities, healthy pairs) on MNI152 at ``--resolution`` mm, seeds fixed below (``REPORT_SEEDS``;
settings are tuned on ``--tuning`` seeds, never on these). Each pair is written to disk and every method
runs on it in turn as a whole process with its default options, as a user runs it:

- ``medsuite (default)``: ``medsuite register FIXED MOVING --moving-labels L -o OUT`` (instance optimisation
  from the identity: the default);
- ``medsuite (shipped checkpoint start)``: the same with ``--model auto``;
- ``medsuite (working_mm 2)``: the same with ``instance.working_mm: 2`` (a ``--pipeline`` copy): finer pairs
  are optimised on ~2 mm grids (at 2 mm it is the default);
- ``VoxelMorph-style``: medsuite's instance optimisation without the lesion modules (registration_runners.py plain);
- ``ANTs SyN``: an antspyx script reading the pair, running SyN, writing warped image and labels (registration_runners.py ants).

Figures, per pathology type and method: tissue (GM/WM) Dice outside the lesion and in a 10 mm shell around it,
mean error (mm) against the known displacement in the brain outside the lesion, folding % (Jacobian of the
world map <= 0 in the brain), lesion Dice (moving space), lesion ml found on healthy pairs, whole-process wall
seconds and peak memory (the child's maximum resident set), and their ratios to ANTs'; target registration error
(TRE, mm) at 50 anatomical landmarks moved by the known field (``tre_near``: the 10 within 15 mm of the lesion).
Not a test (minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent
REPORT_SEEDS = (100, 101)  # per type: seed + 20 * the type's index in FAMILY; fixed before measuring
TUNING_SEEDS = (500, 501)  # what settings are tuned on
Warper = Callable[[np.ndarray, bool], np.ndarray]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def score(pair, warp_fn: Warper, lesion: np.ndarray | None) -> dict[str, float]:
    """Tissue Dice (outside the lesion, and in its 10 mm shell), error against the known field, folding, lesion Dice."""
    outside = pair.lesion_fixed.array == 0
    labels = warp_fn(pair.moving_labels.array, True)
    shell = ndimage.binary_dilation(pair.lesion_fixed.array > 0, iterations=int(round(10 / pair.fixed.spacing[0]))) & outside
    tissue = lambda region: float(np.mean([dice((labels == k) & region, (pair.fixed_labels.array == k) & region) for k in (1, 2)]))  # noqa: E731
    result = {"dice": tissue(outside), "shell_dice": tissue(shell) if shell.any() else float("nan")}
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in pair.moving.spatial_shape], indexing="ij"), axis=-1)
    moving_world = grid @ pair.moving.affine[:3, :3].T + pair.moving.affine[:3, 3]
    mapped = np.stack([warp_fn(moving_world[..., c].astype(np.float32), False) for c in range(3)], axis=-1)
    fixed_grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in pair.fixed.spatial_shape], indexing="ij"), axis=-1)
    fixed_world = fixed_grid @ pair.fixed.affine[:3, :3].T + pair.fixed.affine[:3, 3]
    brain = (pair.fixed_labels.array > 0) & outside
    error = np.linalg.norm(mapped - fixed_world - pair.displacement.array, axis=-1)
    result["error_mm"] = float(error[brain].mean())
    result |= landmark_tre(pair, mapped)
    jac = np.stack([np.stack(np.gradient(mapped[..., c], *pair.fixed.spacing), axis=-1) for c in range(3)], axis=-2)
    result["folding_pct"] = float(100 * np.mean(np.linalg.det(jac)[pair.fixed_labels.array > 0] <= 0))
    truth = pair.lesion_mask.array > 0
    result["lesion_dice"] = dice(lesion, truth) if lesion is not None and truth.any() else float("nan")
    return result


def landmark_tre(pair, mapped: np.ndarray) -> dict[str, float]:
    """Target registration error (mm) at anatomical landmarks of the fixed brain (``pair_landmarks``: 40
    corners, plus 10 within 15 mm of the lesion): where the method's world map (``mapped``, fixed grid ->
    moving world) sends each one against where the known field puts it, as BraTS-Reg scores landmark pairs."""
    from medsuite.registration.landmarks import pair_landmarks, target_registration_error

    landmarks = pair_landmarks(pair)
    error = target_registration_error(mapped[tuple(landmarks.fixed_index.T)], landmarks.moving_ras)
    return {"tre_mm": float(error.mean()), "tre_near_mm": float(error[landmarks.near_lesion].mean()) if landmarks.near_lesion.any() else float("nan")}


def run_process(command: list[str], log: Path) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one whole child process; its output goes to ``log``.

    The peak comes from GNU time's %M: a child forked from this process inherits its resident high-water
    mark (the pair held here), so ``wait4``'s ru_maxrss would floor every method at this process' size."""
    peak_file = log.with_suffix(".peak")
    start = time.perf_counter()
    with log.open("w") as sink:
        code = subprocess.call(["/usr/bin/time", "-f", "%M", "-o", str(peak_file), *command], stdout=sink, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if code != 0:
        raise RuntimeError(f"{' '.join(command)} failed; see {log}:\n{log.read_text()[-2000:]}")
    return wall, float(peak_file.read_text().split()[-1]) / 1024.0  # KB


def ddf_warper(pair, out: Path) -> Warper:
    """Moving-grid arrays through a written ``ddf.nii.gz`` (read by SimpleITK as its displacement transform)."""
    import SimpleITK as sitk

    from medsuite.registration.spatial import resample_moving

    field = sitk.ReadImage(str(out / "ddf.nii.gz"), sitk.sitkVectorFloat64)
    transform = sitk.DisplacementFieldTransform(field)
    return lambda array, nearest: resample_moving(pair.moving.with_array(array), pair.fixed, transform, nearest=nearest)


def ants_warper(files: dict[str, Path], out: Path) -> Warper:
    import ants

    fixed, moving = ants.image_read(str(files["fixed"])), ants.image_read(str(files["moving"]))
    transforms = [str(p) for p in sorted(out.glob("fwd*"))]
    return lambda array, nearest: ants.apply_transforms(fixed, moving.new_image_like(np.asarray(array, np.float32)), transforms, interpolator="nearestNeighbor" if nearest else "linear").numpy()


def medsuite_command(*options: str) -> Callable[[dict[str, Path], Path], list[str]]:
    entry = shutil.which("medsuite")
    head = [entry] if entry else [sys.executable, "-m", "medsuite.cli"]

    def command(files: dict[str, Path], out: Path) -> list[str]:
        threads = ["--threads", os.environ["MEDSUITE_BENCH_THREADS"]] if os.environ.get("MEDSUITE_BENCH_THREADS") else []
        return [*head, "register", str(files["fixed"]), str(files["moving"]), "--moving-labels", str(files["moving_labels"]), "-o", str(out), "--quiet", *threads, *options]

    return command


def medsuite_pipeline_variant(**instance: object) -> Callable[[dict[str, Path], Path], list[str]]:
    """``medsuite register`` with the shipped pipeline but these ``instance`` settings (a YAML beside ``out``)."""

    def command(files: dict[str, Path], out: Path) -> list[str]:
        import yaml

        from medsuite.config import pipeline_path, read_yaml

        settings = read_yaml(pipeline_path("registration_girnet"))
        settings["instance"].update(instance)
        path = out.parent / f"{out.name}_pipeline.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(settings))
        return medsuite_command("--pipeline", str(path))(files, out)

    return command


def use_threads(threads: int | None) -> None:
    """``--threads N``: every child gets N threads (medsuite's ``--threads``; ITK's and OpenMP's variables, which
    ANTs reads), so a comparison on shared cores stays fair. None: every core, each tool's default."""
    if threads is not None:
        count = str(threads)
        os.environ.update({"MEDSUITE_BENCH_THREADS": count, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": count, "OMP_NUM_THREADS": count})


def runner_command(mode: str) -> Callable[[dict[str, Path], Path], list[str]]:
    return lambda files, out: [sys.executable, str(HERE / "registration_runners.py"), mode, str(files["fixed"]), str(files["moving"]), str(files["moving_labels"]), str(out)]


METHODS = {
    "medsuite (default)": medsuite_command(),
    "medsuite (shipped checkpoint start)": medsuite_command("--model", "auto"),
    "medsuite (working_mm 2)": medsuite_pipeline_variant(working_mm=2.0),  # a 1 mm pair optimised on 2 mm grids
    "VoxelMorph-style (no lesion modules)": runner_command("plain"),
    "ANTs SyN": runner_command("ants"),
}


def evaluate(name: str, pair, files: dict[str, Path], out: Path) -> dict[str, float]:
    if name == "ANTs SyN":
        return score(pair, ants_warper(files, out), None)
    import nibabel as nib

    lesion = None
    figures: dict[str, float] = {}
    if (out / "lesion_mask.nii.gz").is_file():
        lesion = np.asarray(nib.load(str(out / "lesion_mask.nii.gz")).dataobj) > 0
        report = json.loads((out / "report.json").read_text())
        figures["lesion_ml"] = float(report["lesion_volume_ml"])
        figures["steps"] = float(report["steps_taken"])
    return score(pair, ddf_warper(pair, out), lesion) | figures


def main() -> None:
    from medsuite.data.samples import write_pair
    from medsuite.registration.pathology import FAMILY, make_family_pair

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=float, default=2.0, help="pair voxel size in mm (2; 1 is MNI152's own grid)")
    parser.add_argument("--seeds-per-type", type=int, default=len(REPORT_SEEDS))
    parser.add_argument("--types", nargs="*", default=None, help="substrings of the pathology types to run (default: all)")
    parser.add_argument("--methods", nargs="*", default=None, help="substrings of the methods to run (default: all)")
    parser.add_argument("--tuning", action="store_true", help="the tuning seeds instead of the report seeds")
    parser.add_argument("--quick", action="store_true", help="smoke test: 4 mm, one tumour type and the healthy pair, one seed")
    parser.add_argument("--keep", type=Path, default=None, help="keep every pair and result folder here")
    parser.add_argument("--threads", type=int, default=None, help="threads of every method (default: every core, as a user runs them); 1 keeps a comparison fair on loaded cores")
    args = parser.parse_args()
    resolution, seeds = (4.0, (TUNING_SEEDS if args.tuning else REPORT_SEEDS)[:1]) if args.quick else (args.resolution, (TUNING_SEEDS if args.tuning else REPORT_SEEDS)[: args.seeds_per_type])
    types = list(FAMILY)
    if args.quick:
        types = [types[0], "healthy"]
    elif args.types:
        types = [t for t in types if any(s.lower() in t.lower() for s in args.types)]
    use_threads(args.threads)
    methods = {k: v for k, v in METHODS.items() if not args.methods or any(s.lower() in k.lower() for s in args.methods)}
    work = args.keep or Path(tempfile.mkdtemp(prefix="medsuite-bench-"))
    rows: dict[tuple[str, str], list[dict]] = {}
    for type_name in types:
        for seed in seeds:
            seed = seed + 20 * list(FAMILY).index(type_name)
            pair = make_family_pair(FAMILY[type_name], seed, resolution_mm=resolution)
            folder = work / f"seed{seed}"
            files = write_pair(pair, folder / "pair")
            for name, command in methods.items():  # in turn, on the same files
                slug = "".join(ch if ch.isalnum() else "_" for ch in name.lower())
                out = folder / slug
                wall, peak = run_process(command(files, out), folder / f"{slug}.log")
                figures = {"wall_s": wall, "peak_mb": peak} | evaluate(name, pair, files, out)
                rows.setdefault((type_name, name), []).append(figures)
                print(f"{type_name} | seed {seed} | {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)
            if args.keep is None:
                shutil.rmtree(folder)
    report(rows, types, methods, resolution, seeds, args.threads)


def report(rows: dict, types: list[str], methods: dict, resolution: float, seeds, threads: int | None = None) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\npathology family at {resolution:g} mm, {len(seeds)} seed(s) per type, {len(os.sched_getaffinity(0))} usable CPU(s), default options, {'every core' if threads is None else f'{threads} thread(s) per method'}, load average at the end {load:.1f}")
    columns = ("dice", "shell_dice", "error_mm", "tre_mm", "tre_near_mm", "folding_pct", "lesion_dice", "lesion_ml", "wall_s", "peak_mb")
    header = f"{'type':58s} {'method':38s} {'Dice':>6s} {'shell':>6s} {'err mm':>6s} {'TRE':>6s} {'TRE@l':>6s} {'fold %':>6s} {'lesion':>6s} {'les ml':>6s} {'wall s':>6s} {'peak MB':>7s}"
    print(header)
    mean = lambda figures, key: float(np.nanmean([f.get(key, np.nan) for f in figures])) if any(np.isfinite(f.get(key, np.nan)) for f in figures) else float("nan")  # noqa: E731
    for type_name in types:
        for name in methods:
            figures = rows[(type_name, name)]
            values = [mean(figures, c) for c in columns]
            print(f"{type_name:58s} {name:38s} " + " ".join(f"{v:6.3f}" if c not in ("wall_s", "peak_mb", "lesion_ml") else (f"{v:6.1f}" if c != "peak_mb" else f"{v:7.0f}") for c, v in zip(columns, values)))
    print("\nover the family (lesion Dice: mean over the types with a lesion; healthy ml: mean lesion ml on healthy pairs)")
    lesion_types = [t for t in types if t != "healthy"]
    ants = [f for (t, n), fs in rows.items() if n == "ANTs SyN" for f in fs]
    for name in methods:
        every = [f for t in types for f in rows[(t, name)]]
        per_type_lesion = [mean(rows[(t, name)], "lesion_dice") for t in lesion_types]
        healthy = [f["lesion_ml"] for f in rows.get(("healthy", name), []) if "lesion_ml" in f]
        wall_ratio = sum(f["wall_s"] for f in every) / sum(f["wall_s"] for f in ants) if ants else float("nan")
        peak_ratio = max(f["peak_mb"] for f in every) / max(f["peak_mb"] for f in ants) if ants else float("nan")
        finite = [v for v in per_type_lesion if np.isfinite(v)]
        print(
            f"{name:38s} Dice {mean(every, 'dice'):.3f}  shell {mean(every, 'shell_dice'):.3f}  err {mean(every, 'error_mm'):.2f} mm  TRE {mean(every, 'tre_mm'):.2f} mm (near lesion {mean(every, 'tre_near_mm'):.2f})  fold {mean(every, 'folding_pct'):.3f} %"
            f"  lesion Dice {np.mean(finite) if finite else float('nan'):.3f} (lowest type {min(finite) if finite else float('nan'):.3f})  healthy {np.nanmean(healthy) if healthy else float('nan'):.2f} ml"
            f"  wall {np.mean([f['wall_s'] for f in every]):.1f} s ({wall_ratio:.2f}x ANTs)  peak {max(f['peak_mb'] for f in every):.0f} MB ({peak_ratio:.2f}x ANTs)"
        )


if __name__ == "__main__":
    main()
