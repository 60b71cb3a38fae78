"""``medsuite cards``: validate, show and export data cards."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from medsuite.errors import EXIT_USAGE, MedsuiteError

cards_app = typer.Typer(help="Validate, show and export data cards (data_cards/*.yaml).", no_args_is_help=True)
console = Console(highlight=False)


@cards_app.command("validate")
def validate(paths: Optional[list[Path]] = typer.Argument(None, help="Card files or folders (default: data_cards/).")) -> None:
    """Check cards against the schema: one line per problem, exit 2 if any."""
    from medsuite.data.cards import card_files, card_problems

    files = card_files(paths)
    if not files:  # validating nothing is not a success: the folder was probably the wrong one
        raise MedsuiteError(", ".join(map(str, paths or [])) or "data_cards/", "holds no card files (*.yaml)", "give card files or the folder that holds them")
    problems = [line for path in files for line in card_problems(path)]
    for line in problems:
        typer.echo(f"error: {line}", err=True)
    if problems:
        raise typer.Exit(EXIT_USAGE)
    console.print(f"{len(files)} card(s) valid")


@cards_app.command("show")
def show(name: str = typer.Argument(..., help="Card id (file name in data_cards/) or path.")) -> None:
    """Print a card as YAML, with whether its data is found on this machine."""
    import yaml

    from medsuite.data.cards import load_card

    card = load_card(name)
    typer.echo(yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False).rstrip())
    root = card.data_root()
    status = "found" if root and root.is_dir() else "not on this machine"
    typer.echo(f"# data root: {root} ({status})")


@cards_app.command("list")
def list_cards() -> None:
    """List the cards in data_cards/."""
    from medsuite.data.cards import list_card_ids, load_card

    for card_id in list_card_ids():
        typer.echo(f"{card_id}\t{load_card(card_id).name}")


@cards_app.command("export")
def export(
    name: str = typer.Argument(..., help="Card id or path."),
    fmt: str = typer.Option("msd", "--format", help="Export format: msd (Medical Segmentation Decathlon dataset.json)."),
    output: Path = typer.Option(Path("dataset.json"), "-o", "--output", help="Where to write."),
    root: Optional[Path] = typer.Option(None, "--root", help="Data folder, when not where the card says."),
) -> None:
    """Write the dataset description in another format (MSD dataset.json)."""
    from medsuite.data.cards import load_card
    from medsuite.data.export import export_msd
    from medsuite.errors import MedsuiteError

    if fmt != "msd":
        raise MedsuiteError("--format", f"unknown export format {fmt!r}", "use --format msd")
    written = export_msd(load_card(name), output, root=root)
    console.print(f"wrote {written}")


def register(app: typer.Typer) -> None:
    app.add_typer(cards_app, name="cards")
