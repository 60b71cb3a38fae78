"""`medsuite pretext targets` and `medsuite pretrain`: anatomy-plane pretext tasks for cardiac MR."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

DEMO_ORDER = 30

pretext_app = typer.Typer(help="Anatomy-plane pretext targets (intersecting lines, slice locations).", no_args_is_help=True)


def make_targets(exam_path: Path, out_dir: Path, sigma_mm: float, min_angle_deg: float) -> dict:
    """Read an exam, write its targets and report.json; return the report."""
    from medsuite.errors import MedsuiteError
    from medsuite.io import ensure_not_input, write_json
    from medsuite.pretext.exams import read_exam
    from medsuite.pretext.export import write_exam_targets
    from medsuite.provenance import new_report

    ensure_not_input(out_dir, [exam_path])
    if out_dir.resolve().is_relative_to(exam_path.resolve()):
        raise MedsuiteError(out_dir, "is inside the input exam folder", "choose an output folder outside the exam with -o")
    exam = read_exam(exam_path)
    report = new_report("pretext", [exam_path], {"sigma_mm": sigma_mm, "min_angle_deg": min_angle_deg})
    report.update(write_exam_targets(exam, out_dir, sigma_mm, min_angle_deg, inputs=[exam_path]))
    write_json(out_dir / "report.json", report)
    return report


def _summary(report: dict) -> str:
    spread = report["long_axis_meeting_spread_mm"]["max"]
    views = ", ".join(f"{name} ({v['kind']}, {v['slices']} slice{'s' if v['slices'] > 1 else ''})" for name, v in report["views"].items())
    extra = f"; long-axis lines meet within {spread:.2f} mm in every SAX slice" if spread is not None else ""
    return f"views: {views}{extra}"


def register(app: typer.Typer) -> None:
    @pretext_app.command("targets")
    def targets(
        exam: Path = typer.Argument(..., help="DICOM exam folder (any depth) or a folder of NIfTI views (sax*.nii.gz, lax_4c*.nii.gz...)."),
        output: Path = typer.Option(..., "-o", "--output", help="Result folder."),
        sigma_mm: float = typer.Option(5.0, "--sigma-mm", min=0.1, help="Gaussian width of the line heatmaps (mm)."),
        min_angle_deg: float = typer.Option(5.0, "--min-angle", min=0.0, help="Planes closer to parallel than this have no line."),
        quiet: bool = typer.Option(False, "--quiet", help="Print nothing on success."),
    ) -> None:
        """Write each view with its line heatmaps (NIfTI), lines.json and PNG overlays."""
        report = make_targets(exam, output, sigma_mm, min_angle_deg)
        if not quiet:
            typer.echo(f"{_summary(report)}\nwrote {output}")

    @app.command("pretrain")
    def pretrain(
        pipeline: str = typer.Option("pretext_cardiac", "--pipeline", help="Pretext pipeline YAML, or a shipped pipeline's name."),
        card: str | None = typer.Option(None, "--card", help="Pretrain on this data card's data instead of the pipeline's sources."),
        root: Path | None = typer.Option(None, "--root", help="Override the card's data folder."),
        output: Path = typer.Option(..., "-o", "--output", help="Run folder (encoder.pt, pretext_model.pt, report.json)."),
        iterations: int | None = typer.Option(None, "--iterations", min=1, help="Override the pipeline's iteration count."),
        device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
        threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for torch, SimpleITK and OpenMP (default: all available cores)."),
        seed: int | None = typer.Option(None, "--seed", help="Override the pipeline's seed."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar; print only the summary."),
    ) -> None:
        """Pretrain the encoder on the pretext tasks and write the encoder checkpoint segmentation --init loads."""
        from rich.progress import Progress

        from medsuite.config import load_pipeline, pipeline_path
        from medsuite.io import write_json
        from medsuite.pretext.pretrain import PretextConfig, run_pretraining
        from medsuite.provenance import new_report
        from medsuite.runtime import configure_runtime

        configure_runtime(threads, device)
        config = load_pipeline(pipeline, PretextConfig)
        updates = {"device": device}
        if card:
            updates["sources"] = [card_source(card, root)]
        if iterations:
            updates["iterations"] = iterations
        if seed is not None:
            updates["seed"] = seed
        config = config.model_copy(update=updates)
        with Progress(disable=quiet, transient=True) as bar:
            task = bar.add_task("pretraining", total=config.iterations)
            figures = run_pretraining(config, output, progress=lambda step, loss: bar.update(task, completed=step + 1, description=f"pretraining loss {loss:.4f}"))
        report = new_report("pretrain", [pipeline_path(pipeline)], config.model_dump(mode="json"))
        report.update({key: value for key, value in figures.items() if key != "history"})
        write_json(output / "report.json", report)
        write_json(output / "history.json", figures["history"])
        if not quiet:
            first, last = figures["loss_first"], figures["loss_last"]
            typer.echo(f"{figures['n_samples']} samples; loss {first['total']:.4f} -> {last['total']:.4f} (orientation {last['orientation']:.4f}, location {last['location']:.4f})\nwrote {output / 'encoder.pt'}")

    app.add_typer(pretext_app, name="pretext")


def card_source(card_id: str, root: Path | None):
    """A pretraining source from a data card: its layout and data folder."""
    from medsuite.data.cards import load_card
    from medsuite.errors import MedsuiteError
    from medsuite.pretext.pretrain import Source

    card = load_card(card_id)
    layouts = {"dicom_exam": "dicom_exam", "cinema_nifti": "cinema_nifti", "acdc_h5": "acdc_h5", "acdc_nifti": "nifti_stacks", "nifti_folders": "nifti_stacks"}
    if card.layout.kind not in layouts:
        raise MedsuiteError(card_id, f"layout {card.layout.kind} holds no cardiac views or short-axis stacks", f"use a card with layout {', '.join(layouts)}")
    data_root = card.data_root(root)
    if data_root is None or not data_root.exists():
        raise MedsuiteError(card_id, f"data folder {data_root} is absent", "pass --root FOLDER or set the card's layout.root")
    return Source(layout=layouts[card.layout.kind], path=str(data_root))


def run_demo(out_dir: Path, console: Console) -> None:
    """Synthetic multi-plane exam -> targets, lines, overlays, and a short pretraining, under OUT/pretext/."""
    from medsuite.io import write_json
    from medsuite.pretext.pretrain import PretextConfig, Source, run_pretraining
    from medsuite.pretext.synthetic import write_synthetic_exam

    folder = Path(out_dir) / "pretext"
    exam = write_synthetic_exam(folder / "synthetic_exam")
    report = make_targets(exam, folder, sigma_mm=4.0, min_angle_deg=5.0)
    config = PretextConfig(sources=[Source(layout="cinema_nifti", path=str(exam))], image_size=64, iterations=30, batch_size=4, device="cpu")
    figures = run_pretraining(config, folder / "pretrain")
    report["pretrain"] = {key: value for key, value in figures.items() if key != "history"}
    report["pretrain"]["folder"] = "pretrain"
    write_json(folder / "report.json", report)
    console.print(f"pretext: {_summary(report)}; pretraining loss {figures['loss_first']['total']:.4f} -> {figures['loss_last']['total']:.4f}")
