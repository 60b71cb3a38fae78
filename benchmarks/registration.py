"""Side-by-side pathological registration on generated MNI152 pairs (2 mm, known deformation, tumour).

    python benchmarks/registration.py [--pairs 2] [--threads 2] [--checkpoint medsuite/assets/registration/girnet_mni152.pt]

Every method is scored the same way: a method is a function moving-grid array -> fixed-grid array
(linear or nearest), so its total world transform is read back by warping the moving grid's world
coordinates. Figures: mean Dice of warped GM/WM outside the lesion, mean error (mm) against the known
displacement in the brain outside the lesion (and in a 10 mm shell around it), folding % (Jacobian of the world map <= 0 in the brain),
lesion Dice of the predicted mask (moving space), target registration error (TRE, mm) at 50 anatomical landmarks
(``landmark_tre``; TRE@les: the 10 within 15 mm of the lesion), instance-optimisation steps taken, wall and CPU seconds.
Not a test (minutes).

Rows: affine pre-alignment alone (what the deformable stage adds is the difference), medsuite from the
shipped checkpoint and from nothing, each also capped at ``--budgets`` steps (does the checkpoint reach
the same quality in fewer steps?), the ablations, SimpleITK B-spline and ANTs SyN.

Speed: every method gets the same ``--threads`` (torch and ITK/ANTs alike) and runs back to back on
each pair; the table gives wall and CPU seconds (all threads of this process) as ratios to ANTs SyN's.
On a quiet machine wall time on 2 threads is the target's measure; on a shared one wall seconds depend
on the neighbours, and CPU seconds are the comparison to quote.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from medsuite.data.samples import PathologicalPair, make_pathological_pair
from medsuite.io import Volume, to_sitk
from medsuite.registration.config import RegistrationConfig
from medsuite.registration.inference import load_model, register_volumes
from medsuite.registration.landmarks import pair_landmarks, target_registration_error
from medsuite.registration.prealign import affine_prealign
from medsuite.registration.spatial import resample_moving

Warper = Callable[[np.ndarray, bool], np.ndarray]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))


def score(pair: PathologicalPair, warp_fn: Warper, lesion: np.ndarray | None) -> dict[str, float]:
    outside = pair.lesion_fixed.array == 0
    labels = warp_fn(pair.moving_labels.array, True)
    result = {"dice": float(np.mean([dice((labels == k) & outside, (pair.fixed_labels.array == k) & outside) for k in (1, 2)]))}
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in pair.moving.spatial_shape], indexing="ij"), axis=-1)
    moving_world = grid @ pair.moving.affine[:3, :3].T + pair.moving.affine[:3, 3]
    mapped = np.stack([warp_fn(moving_world[..., c].astype(np.float32), False) for c in range(3)], axis=-1)
    fixed_grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in pair.fixed.spatial_shape], indexing="ij"), axis=-1)
    fixed_world = fixed_grid @ pair.fixed.affine[:3, :3].T + pair.fixed.affine[:3, 3]
    brain = (pair.fixed_labels.array > 0) & outside
    error = np.linalg.norm(mapped - fixed_world - pair.displacement.array, axis=-1)
    result["error_mm"] = float(error[brain].mean())
    # Around the lesion (a 10 mm shell) is where tearing shows and GIRNet's modules should help.
    shell = ndimage.binary_dilation(pair.lesion_fixed.array > 0, iterations=int(round(10 / pair.fixed.spacing[0]))) & brain
    result["shell_error_mm"] = float(error[shell].mean())
    spacing = pair.fixed.spacing
    jac = np.stack([np.stack(np.gradient(mapped[..., c], *spacing), axis=-1) for c in range(3)], axis=-2)
    result["folding_pct"] = float(100 * np.mean(np.linalg.det(jac)[pair.fixed_labels.array > 0] <= 0))
    result["lesion_dice"] = dice(lesion, pair.lesion_mask.array > 0) if lesion is not None else float("nan")
    return result


_landmarks: dict = {"pair": None, "set": None}  # the current pair's landmarks, placed once for all methods


def landmark_tre(pair: PathologicalPair, warp_fn: Warper) -> dict[str, float]:
    """Target registration error (mm) at anatomical landmarks of the fixed brain (``pair_landmarks``: 40 corners,
    plus 10 within 15 mm of the lesion): where the method's world map sends each one against where the known
    field puts it in the moving image, as BraTS-Reg scores landmark pairs."""
    if _landmarks["pair"] is not pair:
        _landmarks.update(pair=pair, set=pair_landmarks(pair))
    landmarks = _landmarks["set"]
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in pair.moving.spatial_shape], indexing="ij"), axis=-1)
    moving_world = grid @ pair.moving.affine[:3, :3].T + pair.moving.affine[:3, 3]
    at = tuple(landmarks.fixed_index.T)
    mapped = np.stack([warp_fn(moving_world[..., c].astype(np.float32), False)[at] for c in range(3)], axis=-1)
    error = target_registration_error(mapped, landmarks.moving_ras)
    return {"tre_mm": float(error.mean()), "tre_near_mm": float(error[landmarks.near_lesion].mean()) if landmarks.near_lesion.any() else float("nan")}


Method = Callable[[PathologicalPair], tuple[Warper, np.ndarray | None, int | None]]


def medsuite_method(config: RegistrationConfig, model=None, **switches) -> Method:
    """(warp, lesion mask or None, instance-optimisation steps taken)."""

    def run(pair: PathologicalPair):
        result = register_volumes(pair.fixed, pair.moving, config, model=model, **switches)
        lesion = result.lesion if switches.get("use_segmentation", True) else None
        return (lambda array, nearest: result.warp_moving(array, nearest=nearest)), lesion, result.steps_taken

    return run


def sitk_bspline(pair: PathologicalPair):
    """SimpleITK affine (medsuite's pre-alignment) + B-spline (30 mm knots), Mattes MI on 5 % random samples,
    LBFGS-B, three levels (4, 2, 1): the ITK examples' schedule, kept cheap enough to finish in ANTs' league."""
    affine = affine_prealign(pair.fixed, pair.moving)
    fixed = sitk.Cast(to_sitk(pair.fixed), sitk.sitkFloat32)
    moving = sitk.Cast(to_sitk(pair.moving), sitk.sitkFloat32)
    mesh = [max(1, int(round(s * sp / 30.0))) for s, sp in zip(fixed.GetSize(), fixed.GetSpacing())]  # 30 mm knots
    bspline = sitk.BSplineTransformInitializer(fixed, mesh)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(0.05, 0)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=30, maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=60)
    method.SetShrinkFactorsPerLevel([4, 2, 1])
    method.SetSmoothingSigmasPerLevel([2, 1, 0])
    method.SetMovingInitialTransform(affine)
    method.SetInitialTransform(bspline, inPlace=True)
    method.Execute(fixed, moving)
    total = sitk.CompositeTransform([affine, bspline])

    def warp_fn(array: np.ndarray, nearest: bool) -> np.ndarray:
        return resample_moving(pair.moving.with_array(array), pair.fixed, total, nearest=nearest)

    return warp_fn, None, None


def ants_syn(pair: PathologicalPair):
    import ants

    def to_ants(vol: Volume, array=None):
        return ants.from_numpy(np.asarray(vol.array if array is None else array, dtype=np.float32), origin=list((np.diag([-1, -1, 1, 1]) @ vol.affine)[:3, 3]),
                               spacing=list(vol.spacing), direction=(np.diag([-1, -1, 1]) @ vol.affine[:3, :3] / vol.spacing))

    fixed, moving = to_ants(pair.fixed), to_ants(pair.moving)
    reg = ants.registration(fixed, moving, type_of_transform="SyN")

    def warp_fn(array: np.ndarray, nearest: bool) -> np.ndarray:
        out = ants.apply_transforms(fixed, to_ants(pair.moving, array), reg["fwdtransforms"], interpolator="nearestNeighbor" if nearest else "linear")
        return out.numpy()

    return warp_fn, None, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--deformation-mm", type=float, default=4.0, help="peak of the random smooth deformation (the generator's default: 4)")
    parser.add_argument("--checkpoint", type=Path, default=Path(__file__).resolve().parents[1] / "medsuite/assets/registration/girnet_mni152.pt")
    parser.add_argument("--only", nargs="*", default=None, help="method names to run")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of every method (torch, SimpleITK, ANTs)")
    parser.add_argument("--budgets", type=int, nargs="*", default=[10, 20], help="extra rows: both medsuite starts capped at N instance steps (does the checkpoint need fewer?)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)  # read by ANTs when it loads
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch's first optimiser imports torch._dynamo (~2.5 s, once per process): not the first row's cost
    config = __import__("medsuite.config", fromlist=["load_pipeline"]).load_pipeline("registration_girnet", RegistrationConfig)  # the shipped YAML
    plain = config.model_copy(update={"losses": config.losses.model_copy(update={"symmetric": 0.0})})
    methods: dict[str, Method] = {"affine pre-alignment only": medsuite_method(config, steps=0, use_segmentation=False)}
    starts = {"IO alone": (None, config)}
    if args.checkpoint.is_file():
        starts = {"pretrained + IO": load_model(args.checkpoint, config), **starts}
    for start, (model, start_config) in starts.items():
        methods[f"medsuite ({start})"] = medsuite_method(start_config, model)
        for budget in args.budgets:
            methods[f"medsuite ({start}, {budget} steps)"] = medsuite_method(start_config, model, steps=budget)
    methods["ablation: no inpainting"] = medsuite_method(config, use_inpainting=False)
    methods["ablation: no segmentation"] = medsuite_method(config, use_segmentation=False)
    methods["VoxelMorph-style (no lesion modules)"] = medsuite_method(plain, use_segmentation=False, use_inpainting=False)
    methods["SimpleITK affine + B-spline"] = sitk_bspline
    methods["ANTs SyN"] = ants_syn
    if args.only:
        methods = {k: v for k, v in methods.items() if any(o.lower() in k.lower() for o in args.only)}
    rows: dict[str, list[dict]] = {name: [] for name in methods}
    for seed in range(args.first_seed, args.first_seed + args.pairs):
        pair = make_pathological_pair(seed, deformation_mm=args.deformation_mm)
        for name, method in methods.items():
            wall, cpu = time.perf_counter(), time.process_time()
            warp_fn, lesion, steps = method(pair)
            figures = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "steps": np.nan if steps is None else steps}
            figures.update(score(pair, warp_fn, lesion))
            figures.update(landmark_tre(pair, warp_fn))
            rows[name].append(figures)
            print(f"seed {seed} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()), flush=True)
    header = f"{'method':40s} {'steps':>5s} {'Dice':>6s} {'err mm':>7s} {'shell':>7s} {'fold %':>7s} {'lesion':>7s} {'TRE mm':>7s} {'TRE@les':>7s} {'wall s':>7s} {'cpu s':>7s} {'wall/ANTs':>9s} {'cpu/ANTs':>9s}"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n{args.pairs} pair(s), 2 mm, deformation peak {args.deformation_mm:g} mm, {os.cpu_count()} CPU(s) visible, {args.threads} thread(s) for every method, load average at the end {load:.1f}")
    print(header)
    reference = {k: np.mean([r[k] for r in rows.get("ANTs SyN", [{k: np.nan}])]) for k in ("wall_s", "cpu_s")}
    for name, figures in rows.items():
        mean = {k: float(np.mean([f[k] for f in figures])) for k in figures[0]}
        print(f"{name:40s} {mean['steps']:5.0f} {mean['dice']:6.3f} {mean['error_mm']:7.2f} {mean['shell_error_mm']:7.2f} {mean['folding_pct']:7.3f} {mean['lesion_dice']:7.3f} {mean['tre_mm']:7.2f} {mean['tre_near_mm']:7.2f} {mean['wall_s']:7.1f} {mean['cpu_s']:7.1f} {mean['wall_s'] / reference['wall_s']:9.2f} {mean['cpu_s'] / reference['cpu_s']:9.2f}")


if __name__ == "__main__":
    main()
