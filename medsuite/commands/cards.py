"""``medsuite cards``: validate, show and export data cards."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from medsuite.commands import example
from medsuite.errors import EXIT_USAGE, MedsuiteError

cards_app = typer.Typer(help="Validate, show and export data cards (the shipped ones, or your own YAML).", no_args_is_help=True)
console = Console(highlight=False)


def validate(paths: list[Path] | None = typer.Argument(None, help="Card files or folders (default: the shipped cards).")) -> None:
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


def show(name: str = typer.Argument(..., help="Card id (see medsuite cards list) or path to a card YAML.")) -> None:
    """Print a card as YAML, with whether its data is found on this machine."""
    import yaml

    from medsuite.data.cards import load_card

    card = load_card(name)
    typer.echo(yaml.safe_dump(card.model_dump(mode="json"), sort_keys=False).rstrip())
    root = card.data_root()
    status = "found" if root and root.is_dir() else "not on this machine"
    typer.echo(f"# data root: {root} ({status})")


def list_cards() -> None:
    """List the shipped cards: id and name."""
    from medsuite.data.cards import CARDS_DIR, list_card_ids, load_card

    ids = list_card_ids()
    for card_id in ids:
        typer.echo(f"{card_id}\t{load_card(card_id).name}")
    typer.echo(f"{len(ids)} shipped card(s) in {CARDS_DIR}", err=True)


def export(
    name: str = typer.Argument(..., help="Card id or path."),
    fmt: str = typer.Option("msd", "--format", help="Export format: msd (Medical Segmentation Decathlon dataset.json)."),
    output: Path = typer.Option(Path("dataset.json"), "-o", "--output", help="Where to write."),
    root: Path | None = typer.Option(None, "--root", help="Data folder, when not where the card says."),
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
    cards_app.command("validate", epilog=example("medsuite cards validate my_card.yaml"))(validate)
    cards_app.command("show", epilog=example("medsuite cards show acdc_h5"))(show)
    cards_app.command("list", epilog=example("medsuite cards list"))(list_cards)
    cards_app.command("export", epilog=example("medsuite cards export acdc_h5 -o dataset.json"))(export)
    app.add_typer(cards_app, name="cards")
