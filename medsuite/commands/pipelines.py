"""``medsuite pipelines``: list the shipped pipeline YAMLs and print one, to copy and edit for your data."""

from __future__ import annotations

import typer

from medsuite.commands import example

pipelines_app = typer.Typer(help="The shipped pipeline YAMLs: list them, print one to copy and edit.", no_args_is_help=True)


def list_pipelines() -> None:
    """List the shipped pipelines (names --pipeline accepts)."""
    from medsuite.config import PIPELINES_DIR, shipped_pipelines

    names = shipped_pipelines()
    for name in names:
        typer.echo(name)
    typer.echo(f"{len(names)} shipped pipeline(s) in {PIPELINES_DIR}", err=True)


def show(name: str = typer.Argument(..., help="A shipped pipeline's name (see medsuite pipelines list).")) -> None:
    """Print a shipped pipeline YAML, comments included (redirect it to a file to make your own)."""
    from medsuite.config import pipeline_path

    typer.echo(pipeline_path(name).read_text().rstrip())


def register(app: typer.Typer) -> None:
    pipelines_app.command("list", epilog=example("medsuite pipelines list"))(list_pipelines)
    pipelines_app.command("show", epilog=example("medsuite pipelines show segmentation_neunet_acdc > my_pipeline.yaml"))(show)
    app.add_typer(pipelines_app, name="pipelines")
