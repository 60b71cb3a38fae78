"""``medsuite models list`` (the shipped models and their cards) and ``medsuite models export`` (MONAI bundle)."""

from __future__ import annotations

import importlib
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from medsuite.commands import example
from medsuite.errors import MedsuiteError

models_app = typer.Typer(help="The shipped models and their cards; export a checkpoint as a MONAI bundle.", no_args_is_help=True)
console = Console(highlight=False)

# --format -> "module:function" taking (checkpoint, out_dir, *, version, changelog) and returning the folder
# written; imported only when chosen.
EXPORTERS = {"bundle": "medsuite.export.bundle:export_bundle", "nir": "medsuite.backbones.nir_export:export_checkpoint_nir"}


@models_app.command("list", epilog=example("medsuite models list", "medsuite models list --card neunet_acdc"))
def list_models(card: str | None = typer.Option(None, "--card", help="Print the full model card of this model (a name from the list).")) -> None:
    """The models inside the package: kind, training data card, sha256 and the title of each model card."""
    from medsuite.export.catalog import shipped_models

    models = shipped_models()
    if card is not None:
        chosen = next((m for m in models if m.name == card), None)
        if chosen is None:
            raise MedsuiteError(card, "is not a shipped model", f"choose one of {', '.join(m.name for m in models)}")
        if chosen.model_card is None:
            raise MedsuiteError(chosen.path, "has no model card", "see the pipeline's documentation instead")
        typer.echo(chosen.model_card.read_text().rstrip())
        return
    table = Table("name", "kind", "data card", "sha256", "model card", title="shipped models (medsuite models list --card NAME prints a card)")
    for m in models:
        table.add_row(m.name, m.kind, m.data_card or "-", m.sha256[:12], m.title)
    console.print(table)


@models_app.command("export", epilog=example("medsuite models export medsuite/assets/segmentation/neunet_acdc.pt -o bundles/neunet_acdc", "medsuite models export runs/snn/best.pt -o nir/ --format nir"))
def export(
    checkpoint: Path = typer.Argument(..., help="A segmentation checkpoint (.pt), e.g. medsuite/assets/segmentation/neunet_acdc.pt or a run's best.pt."),
    output: Path = typer.Option(..., "-o", "--output", help="The bundle folder to write (new or empty, or an earlier bundle to replace)."),
    fmt: str = typer.Option("bundle", "--format", help=f"Export format: {', '.join(EXPORTERS)} (bundle: a MONAI bundle with configs/, models/model.pt and model.ts, docs/; nir: a spiking model's encoder as a NIR graph, encoder.nir, with a round-trip report)."),
    version: str | None = typer.Option(None, "--version", help="The bundle's version (default: medsuite's)."),
    changelog: str | None = typer.Option(None, "--changelog", help="The changelog line of this version (default: where it was exported from)."),
    allow_host_layers: bool = typer.Option(
        False, "--allow-host-layers", help="nir: accept a graph without the layers NIR cannot express (the decoder, run on the host) and exit 0; without it the command names those layers and exits 2, writing nothing."
    ),
) -> None:
    """Export a checkpoint; the bundle runs with `python -m monai.bundle run` and `medsuite segment --model BUNDLE/`."""
    if fmt not in EXPORTERS:
        raise MedsuiteError("--format", f"unknown export format {fmt!r}", f"use one of {', '.join(EXPORTERS)}")
    if allow_host_layers and fmt != "nir":
        raise MedsuiteError("--allow-host-layers", f"is an option of --format nir, not {fmt}", "drop it, or use --format nir")
    module, function = EXPORTERS[fmt].split(":")
    options = {"allow_host_layers": allow_host_layers} if fmt == "nir" else {}
    written = getattr(importlib.import_module(module), function)(checkpoint, output, version=version, changelog=changelog, **options)
    console.print(f"wrote {written}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
