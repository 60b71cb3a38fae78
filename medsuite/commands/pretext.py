"""`medsuite pretext targets` and `medsuite pretrain`: anatomy-plane pretext tasks for cardiac MR."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from medsuite.commands import THREADS_HELP, example

DEMO_ORDER = 30

pretext_app = typer.Typer(help="Anatomy-plane pretext targets (intersecting lines, slice locations).", no_args_is_help=True)


def targets(
    exam: Path = typer.Argument(..., help="DICOM exam folder (any depth) or a folder of NIfTI views (sax*.nii.gz, lax_4c*.nii.gz...)."),
    output: Path = typer.Option(..., "-o", "--output", help="Result folder."),
    sigma_mm: float = typer.Option(5.0, "--sigma-mm", min=0.1, help="Gaussian width of the line heatmaps (mm)."),
    min_angle_deg: float = typer.Option(5.0, "--min-angle", min=0.0, help="Planes closer to parallel than this have no line."),
    quiet: bool = typer.Option(False, "--quiet", help="Print only the results folder."),
) -> None:
    """Write each view with its line heatmaps (NIfTI), lines.json and PNG overlays."""
    from medsuite.pretext.export import targets_summary, write_targets_folder

    report = write_targets_folder(exam, output, sigma_mm, min_angle_deg)
    typer.echo(str(output) if quiet else f"{targets_summary(report)}; results in {output}")


def pretrain(
    pipeline: str = typer.Option("pretext_cardiac", "--pipeline", help="Pretext pipeline YAML, or a shipped pipeline's name."),
    card: str | None = typer.Option(None, "--card", help="Pretrain on this data card's data instead of the pipeline's sources."),
    root: Path | None = typer.Option(None, "--root", help="Data folder overriding the --card's layout.root."),
    output: Path = typer.Option(..., "-o", "--output", help="Run folder (encoder.pt, pretext_model.pt, report.json)."),
    iterations: int | None = typer.Option(None, "--iterations", min=1, help="Override the pipeline's iteration count."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    seed: int | None = typer.Option(None, "--seed", help="Override the pipeline's seed."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar; print only the encoder's path."),
) -> None:
    """Pretrain the encoder on the pretext tasks and write the encoder checkpoint segmentation --init loads."""
    from rich.progress import Progress

    from medsuite.config import load_pipeline, pipeline_path
    from medsuite.errors import MedsuiteError
    from medsuite.pretext.pretrain import PretextConfig, Source, pretrain_to_folder
    from medsuite.runtime import configure_runtime

    if root is not None and card is None:
        raise MedsuiteError("--root", "needs --card (the pipeline's sources each name their own card)", "add --card CARD, or set root: in the pipeline's sources")
    configure_runtime(threads, device)
    config = load_pipeline(pipeline, PretextConfig)
    updates: dict = {"device": device}
    if card:
        updates["sources"] = [Source(card=card, root=str(root) if root else None)]
    if iterations:
        updates["iterations"] = iterations
    if seed is not None:
        updates["seed"] = seed
    config = config.model_copy(update=updates)
    with Progress(disable=quiet, transient=True) as bar:
        task = bar.add_task("pretraining", total=config.iterations)
        figures = pretrain_to_folder(config, output, pipeline_path(pipeline), progress=lambda step, loss: bar.update(task, completed=step + 1, description=f"pretraining loss {loss:.4f}"))
    if quiet:
        typer.echo(str(output / "encoder.pt"))
        return
    first, last = figures["loss_first"], figures["loss_last"]
    tasks = "; ".join(f"{card}: {', '.join(supported) or 'no task'}" for card, supported in figures["tasks_per_source"].items())
    typer.echo(f"tasks per source: {tasks} (task 1 orientation needs intersecting views, task 2 location a stack)")
    typer.echo(f"{figures['n_samples']} samples; loss {first['total']:.4f} -> {last['total']:.4f} (orientation {last['orientation']:.4f}, location {last['location']:.4f}); encoder in {output / 'encoder.pt'}")


def run_demo(out_dir: Path, console: Console) -> None:
    """Synthetic multi-plane exam -> targets, lines, overlays, and a short pretraining, under OUT/pretext/."""
    from medsuite.pretext.export import targets_summary, write_targets_folder
    from medsuite.pretext.pretrain import PretextConfig, Source, run_pretraining
    from medsuite.pretext.synthetic import write_synthetic_exam

    folder = Path(out_dir) / "pretext"
    exam = write_synthetic_exam(Path(out_dir) / "pretext_inputs" / "synthetic_exam")
    # the generated exam has the cinema_nifti layout: the M&Ms card's reader, pointed at it with root
    config = PretextConfig(sources=[Source(card="mnms_multiview", root=str(exam.parent))], image_size=64, iterations=30, batch_size=4, device="cpu")
    figures = run_pretraining(config, folder / "pretrain")
    pretrain = {key: value for key, value in figures.items() if key != "history"} | {"folder": "pretrain"}
    report = write_targets_folder(exam, folder, sigma_mm=4.0, min_angle_deg=5.0, report_extra={"pretrain": pretrain})
    console.print(f"pretext: {targets_summary(report)}; pretraining loss {figures['loss_first']['total']:.4f} -> {figures['loss_last']['total']:.4f}")


def register(app: typer.Typer) -> None:
    pretext_app.command("targets", epilog=example("medsuite pretext targets exam_folder/ -o targets/"))(targets)
    app.command("pretrain", epilog=example("medsuite pretrain -o runs/pretext --iterations 300", "medsuite pretrain --card mnms_multiview --root /data/cinema -o runs/pretext"))(pretrain)
    app.add_typer(pretext_app, name="pretext")
