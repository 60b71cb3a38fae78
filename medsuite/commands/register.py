"""``medsuite register`` (GIRNet pathological registration), ``medsuite train registration``, and its demo part."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from medsuite.commands import THREADS_HELP, example, train_app
from medsuite.commands.merge import NUM_PARTS, PART_ID, part_of
from medsuite.export.formats import OUTPUT_FORMAT_HELP, OutputFormat

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
    fixed: Path | None = typer.Argument(None, help="Fixed image (healthy scan or atlas): NIfTI, MHA/NRRD or a DICOM folder."),
    moving: Path | None = typer.Argument(None, help="Moving image (the scan with a lesion), or a folder of them, each registered to FIXED (batch)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Results folder (default: <moving>_registered beside the moving image); a batch writes one folder per pair in it."),
    pairs: Path | None = typer.Option(None, "--pairs", help="Batch: CSV with columns fixed,moving[,moving_labels][,fixed_labels][,lesion_mask][,id] (paths relative to the CSV)."),
    resume: bool = typer.Option(False, "--continue", help="Batch: skip pairs whose results folder is complete."),
    num_parts: int = NUM_PARTS,
    part_id: int = PART_ID,
    moving_labels: Path | None = typer.Option(None, "--moving-labels", help="Label map of the moving image to carry into fixed space."),
    lesion_mask: Path | None = typer.Option(None, "--lesion-mask", help="Known lesion mask on the moving image's grid: left out of the cost function (as ANTs/elastix masks); no mask is generated."),
    model: str = typer.Option("none", "--model", help="Checkpoint: 'none' (default: instance optimisation from the identity), 'auto' (the shipped checkpoint's start) or a path."),
    steps: int | None = typer.Option(None, "--steps", min=0, help="Instance-optimisation steps in total (default from the pipeline)."),
    pipeline: Path | None = typer.Option(None, "--pipeline", help="Pipeline YAML, or a shipped pipeline's name (default: registration_girnet)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda: where the networks and the instance optimisation run (auto: CUDA when available)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the pre-alignment sampling and optimisation."),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP + " Outputs are the same bytes for any value."),
    quiet: bool = typer.Option(False, "--quiet", help="Print only the results folder."),
    output_format: list[OutputFormat] = typer.Option([OutputFormat.nifti], "--output-format", help=f"The lesion mask's formats. {OUTPUT_FORMAT_HELP}"),
) -> None:
    """Register a scan with a lesion to a healthy scan or atlas (GIRNet); writes warped, lesion mask, Jacobian and the transform set
    (forward and inverse fields, affine.mat, composite.h5). Many pairs: --pairs CSV, or FIXED and a folder of moving scans."""
    from medsuite.errors import MedsuiteError
    from medsuite.registration.inference import register_files
    from medsuite.registration.pairs import atlas_pairs, is_batch_folder, read_pairs_csv, register_pairs
    from medsuite.runtime import configure_runtime

    batch = pairs is not None or (moving is not None and is_batch_folder(moving))
    if pairs is not None and (fixed is not None or moving is not None):
        raise MedsuiteError("--pairs", "lists the pairs itself", "give either --pairs CSV or FIXED MOVING, not both")
    if pairs is None and (fixed is None or moving is None):
        raise MedsuiteError("register", "needs FIXED and MOVING (an image or a folder of images), or --pairs CSV", "see medsuite register --help")
    if batch and (output is None or moving_labels is not None or lesion_mask is not None):
        raise MedsuiteError("register", "a batch needs -o OUTDIR and takes labels and lesion masks from the pairs CSV", "give -o, and moving_labels/lesion_mask columns in --pairs")
    if resume and not batch:
        raise MedsuiteError("--continue", "only applies to a batch", "drop --continue, or give --pairs or a folder of moving scans")
    chosen = str(configure_runtime(threads, device))
    if batch:
        specs = read_pairs_csv(pairs) if pairs is not None else atlas_pairs(fixed, moving)
        raise typer.Exit(register_pairs(specs, output, _config(pipeline), checkpoint=_checkpoint(model), steps=steps, seed=seed, resume=resume, quiet=quiet, part=part_of(num_parts, part_id), device=chosen))
    folder, report = register_files(fixed, moving, output, _config(pipeline), moving_labels=moving_labels, checkpoint=_checkpoint(model), steps=steps, seed=seed, output_formats=output_format, lesion_mask=lesion_mask, device=chosen)
    console = Console(highlight=False)
    if quiet:
        console.print(str(folder))
        return
    console.print(f"registered in {report['seconds']:.1f} s: folding {report['folding_percent']:.3f} %, lesion: {report['lesion']}; results in [bold]{folder}[/bold] (open with: medsuite view {folder})")


def train_registration(
    pipeline: str = typer.Option(DEFAULT_PIPELINE, "--pipeline", help="Pipeline YAML, or a shipped pipeline's name."),
    output: Path = typer.Option(..., "-o", "--output", help="Run folder (checkpoints, log)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's checkpoint."),
    iterations: int | None = typer.Option(None, "--iterations", min=1, help="Override the pipeline's iterations."),
    seed: int | None = typer.Option(None, "--seed", help="Override the pipeline's seed."),
    root: Path | None = typer.Option(None, "--root", help="Data folder of the pipeline's data card (default: the card's)."),
    device: str = typer.Option("cpu", "--device", help="auto | cpu | cuda (default cpu: where the shipped model trained; the 4 mm networks are small)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Train GIRNet's three modules in two stages (the velocity net, then the inpainter and mask generator on its guides) on the pipeline's data card (default: generated MNI152 pathological pairs)."""
    from rich.progress import Progress

    from medsuite.distributed import is_main_process
    from medsuite.registration.train import train
    from medsuite.runtime import configure_runtime

    config = _config(pipeline)
    updates = {k: v for k, v in {"iterations": iterations, "seed": seed}.items() if v is not None}
    config = config.model_copy(update={"train": config.train.model_copy(update=updates)})
    chosen = configure_runtime(threads, device)
    with Progress(disable=quiet or not is_main_process()) as progress:  # torchrun: rank 0 shows it
        task = progress.add_task("training", total=config.train.iterations)
        final = train(config, output, resume=resume, root=root, device=str(chosen), progress=lambda i, losses: progress.update(task, completed=i, description=" ".join(f"{k} {v:.3f}" for k, v in losses.items())))
    if is_main_process():
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
    app.command("register", epilog=example("medsuite register atlas.nii.gz patient.nii.gz -o results/patient"))(register_command)
    train_app.command("registration", epilog=example("medsuite train registration -o runs/girnet --iterations 100"))(train_registration)
