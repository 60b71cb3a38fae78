"""``medsuite register`` (GIRNet pathological registration), ``medsuite train registration``, and its demo part."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from medsuite.commands import train_app

DEMO_ORDER = 10
DEMO_STEPS = 40  # a shorter instance optimisation keeps the demo near a minute on a laptop CPU
DEFAULT_PIPELINE = "registration_girnet"  # the shipped YAML: the one source of registration defaults
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "registration" / "girnet_mni152.pt"


def _config(pipeline: Path | str | None):
    from medsuite.config import load_pipeline
    from medsuite.registration.config import RegistrationConfig

    return load_pipeline(pipeline or DEFAULT_PIPELINE, RegistrationConfig)


def _checkpoint(model: str) -> Path | None:
    """'auto': the shipped checkpoint when present; 'none': instance optimisation alone; else a path."""
    if model == "none":
        return None
    if model == "auto":
        return SHIPPED_CHECKPOINT if SHIPPED_CHECKPOINT.is_file() else None
    return Path(model)


def register_command(
    fixed: Path = typer.Argument(..., help="Fixed image (healthy scan or atlas): NIfTI, MHA/NRRD or a DICOM folder."),
    moving: Path = typer.Argument(..., help="Moving image (the scan with a lesion)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Results folder (default: <moving>_registered beside the moving image)."),
    moving_labels: Path | None = typer.Option(None, "--moving-labels", help="Label map of the moving image to carry into fixed space."),
    model: str = typer.Option("auto", "--model", help="Checkpoint: 'auto' (shipped), 'none' (instance optimisation only) or a path."),
    steps: int | None = typer.Option(None, "--steps", min=0, help="Instance-optimisation steps in total (default from the pipeline)."),
    pipeline: Path | None = typer.Option(None, "--pipeline", help="Pipeline YAML, or a shipped pipeline's name (default: registration_girnet)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda (the optimisation runs on the CPU)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the pre-alignment sampling and optimisation."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for torch, SimpleITK and OpenMP (default: all available cores)."),
    quiet: bool = typer.Option(False, "--quiet", help="Print only the results folder."),
) -> None:
    """Register a scan with a lesion to a healthy scan or atlas (GIRNet); writes warped, lesion mask, ddf, Jacobian."""
    from medsuite.registration.inference import register_files
    from medsuite.runtime import configure_runtime

    configure_runtime(threads, device)  # validates the device; small volumes optimise fastest on the CPU
    folder, report = register_files(fixed, moving, output, _config(pipeline), moving_labels=moving_labels, checkpoint=_checkpoint(model), steps=steps, seed=seed)
    console = Console(highlight=False)
    if quiet:
        console.print(str(folder))
        return
    console.print(f"registered in {report['seconds']:.1f} s: folding {report['folding_percent']:.3f} %, lesion {report['lesion_volume_ml']:.1f} ml")
    console.print(f"results: [bold]{folder}[/bold]  (open with: medsuite view {folder})")


def train_registration(
    pipeline: str = typer.Option(DEFAULT_PIPELINE, "--pipeline", help="Pipeline YAML, or a shipped pipeline's name."),
    output: Path = typer.Option(..., "-o", "--output", help="Run folder (checkpoints, log)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's checkpoint."),
    iterations: int | None = typer.Option(None, "--iterations", min=1, help="Override the pipeline's iterations."),
    seed: int | None = typer.Option(None, "--seed", help="Override the pipeline's seed."),
    root: Path | None = typer.Option(None, "--root", help="Data folder of the pipeline's data card (default: the card's)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for torch, SimpleITK and OpenMP (default: all available cores)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train GIRNet's three modules by co-learning on the pipeline's data card (default: generated MNI152 pathological pairs)."""
    from rich.progress import Progress

    from medsuite.registration.train import train
    from medsuite.runtime import configure_runtime

    config = _config(pipeline)
    updates = {k: v for k, v in {"iterations": iterations, "seed": seed}.items() if v is not None}
    config = config.model_copy(update={"train": config.train.model_copy(update=updates)})
    configure_runtime(threads)
    with Progress(disable=quiet) as progress:
        task = progress.add_task("co-learning", total=config.train.iterations)
        final = train(config, output, resume=resume, root=root, progress=lambda i, losses: progress.update(task, completed=i, description=" ".join(f"{k} {v:.3f}" for k, v in losses.items())))
    Console(highlight=False).print(f"checkpoint: [bold]{final}[/bold]")


def run_demo(out_dir: Path, console: Console) -> None:
    """The embedded pathological pair (MNI152 + tumour, seed 0) registered into OUT/registration/."""
    from medsuite.data.samples import make_pathological_pair, write_pair
    from medsuite.registration.inference import register_files

    inputs = write_pair(make_pathological_pair(0), out_dir / "registration_inputs")
    folder, report = register_files(
        inputs["fixed"], inputs["moving"], out_dir / "registration", _config(None), moving_labels=inputs["moving_labels"], checkpoint=_checkpoint("auto"), steps=DEMO_STEPS
    )
    console.print(f"registration: {report['seconds']:.1f} s, folding {report['folding_percent']:.3f} %, lesion {report['lesion_volume_ml']:.1f} ml")
    console.print(f"results in [bold]{folder}[/bold]; open with: medsuite view {out_dir}")


def register(app: typer.Typer) -> None:
    app.command("register")(register_command)
    train_app.command("registration")(train_registration)
