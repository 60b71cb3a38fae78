"""``medsuite register`` (GIRNet pathological registration), ``medsuite train registration``, and its demo part."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from medsuite.commands import train_app

DEMO_ORDER = 10
DEMO_STEPS = 40  # a shorter instance optimisation keeps the demo near a minute on a laptop CPU
DEFAULT_PIPELINE = Path("pipelines/registration_girnet.yaml")
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "registration" / "girnet_mni152.pt"


def _config(pipeline: Path | None):
    from medsuite.config import REPO_ROOT, load_pipeline
    from medsuite.registration.config import RegistrationConfig

    if pipeline is not None:
        return load_pipeline(pipeline, RegistrationConfig)
    default = REPO_ROOT / DEFAULT_PIPELINE
    return load_pipeline(default, RegistrationConfig) if default.is_file() else RegistrationConfig()


def _checkpoint(model: str) -> Path | None:
    """'auto': the shipped checkpoint when present; 'none': instance optimisation alone; else a path."""
    if model == "none":
        return None
    if model == "auto":
        return SHIPPED_CHECKPOINT if SHIPPED_CHECKPOINT.is_file() else None
    return Path(model)


def use_threads(threads: int | None) -> int:
    """One thread count for torch and SimpleITK (ANTs-style: every usable core unless told otherwise).
    To be replaced by ``medsuite.runtime.configure_runtime`` once it lands (issue 15)."""
    import os

    # Idle OpenMP threads sleep instead of spinning: on a machine whose cores are shared, torch's spinning
    # threads took 223 s against 25 s on one thread (a 2 mm pair, load ~12); with passive waits 2 threads
    # took 26 s. Read by OpenMP when torch loads, so before its import; a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import SimpleITK as sitk
    import torch

    count = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    torch.set_num_threads(count)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(count)
    return count


def register_command(
    fixed: Path = typer.Argument(..., help="Fixed image (healthy scan or atlas): NIfTI, MHA/NRRD or a DICOM folder."),
    moving: Path = typer.Argument(..., help="Moving image (the scan with a lesion)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Results folder (default: <moving>_registered beside the moving image)."),
    moving_labels: Path | None = typer.Option(None, "--moving-labels", help="Label map of the moving image to carry into fixed space."),
    lesion_mask: Path | None = typer.Option(None, "--lesion-mask", help="Known lesion mask on the moving image's grid: left out of the cost function (as ANTs/elastix masks); no mask is generated."),
    model: str = typer.Option("none", "--model", help="Checkpoint: 'none' (default: instance optimisation from the identity), 'auto' (the shipped checkpoint's start) or a path."),
    steps: int | None = typer.Option(None, "--steps", min=0, help="Instance-optimisation steps in total (default from the pipeline)."),
    pipeline: Path | None = typer.Option(None, "--pipeline", help="Pipeline YAML (default pipelines/registration_girnet.yaml)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (the optimisation runs on the CPU)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the pre-alignment sampling and optimisation."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads of torch and SimpleITK alike (default: every core this process may use). Outputs are the same bytes for any value."),
    quiet: bool = typer.Option(False, "--quiet", help="Print only the results folder."),
) -> None:
    """Register a scan with a lesion to a healthy scan or atlas (GIRNet); writes warped, lesion mask, ddf, Jacobian."""
    use_threads(threads)  # first: it sets OpenMP's wait policy before torch loads
    from medsuite.registration.inference import register_files
    from medsuite.runtime import resolve_device

    resolve_device(device)  # validates the choice; small volumes optimise fastest on the CPU
    folder, report = register_files(fixed, moving, output, _config(pipeline), moving_labels=moving_labels, checkpoint=_checkpoint(model), steps=steps, seed=seed, lesion_mask=lesion_mask)
    console = Console(highlight=False)
    if quiet:
        console.print(str(folder))
        return
    console.print(f"registered in {report['seconds']:.1f} s: folding {report['folding_percent']:.3f} %, lesion: {report['lesion']}")
    console.print(f"results: [bold]{folder}[/bold]  (open with: medsuite view {folder})")


def train_registration(
    pipeline: Path = typer.Option(DEFAULT_PIPELINE, "--pipeline", help="Pipeline YAML."),
    output: Path = typer.Option(..., "-o", "--output", help="Run folder (checkpoints, log)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's checkpoint."),
    iterations: int | None = typer.Option(None, "--iterations", min=1, help="Override the pipeline's iterations."),
    seed: int | None = typer.Option(None, "--seed", help="Override the pipeline's seed."),
    root: Path | None = typer.Option(None, "--root", help="Data folder of the pipeline's data card (default: the card's)."),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Train GIRNet's three modules by co-learning on the pipeline's data card (default: generated MNI152 pathological pairs)."""
    import torch
    from rich.progress import Progress

    from medsuite.registration.train import train

    config = _config(pipeline)
    updates = {k: v for k, v in {"iterations": iterations, "seed": seed}.items() if v is not None}
    config = config.model_copy(update={"train": config.train.model_copy(update=updates)})
    torch.set_num_threads(1)
    with Progress(disable=quiet) as progress:
        task = progress.add_task("co-learning", total=config.train.iterations)
        final = train(config, output, resume=resume, root=root, progress=lambda i, losses: progress.update(task, completed=i, description=" ".join(f"{k} {v:.3f}" for k, v in losses.items())))
    Console(highlight=False).print(f"checkpoint: [bold]{final}[/bold]")


def run_demo(out_dir: Path, console: Console) -> None:
    """The embedded pathological pair (MNI152 + tumour, seed 0) registered into OUT/registration/."""
    import torch

    from medsuite.data.samples import write_pair, make_pathological_pair
    from medsuite.registration.inference import register_files

    torch.set_num_threads(1)
    inputs = write_pair(make_pathological_pair(0), out_dir / "registration_inputs")
    folder, report = register_files(
        inputs["fixed"], inputs["moving"], out_dir / "registration", _config(None), moving_labels=inputs["moving_labels"], checkpoint=_checkpoint("auto"), steps=DEMO_STEPS
    )
    console.print(f"registration: {report['seconds']:.1f} s, folding {report['folding_percent']:.3f} %, lesion {report['lesion_volume_ml']:.1f} ml")
    console.print(f"results in [bold]{folder}[/bold]; open with: medsuite view {out_dir}")


def register(app: typer.Typer) -> None:
    app.command("register")(register_command)
    train_app.command("registration")(train_registration)
