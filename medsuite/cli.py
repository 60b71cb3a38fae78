"""The ``medsuite`` command line: thin typer front over the library; one error line, never a traceback."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from medsuite import __version__, commands
from medsuite.errors import EXIT_CASE_FAILED, MedsuiteError

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
_state = {"debug": os.environ.get("MEDSUITE_DEBUG") == "1"}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medsuite {__version__}")
        raise typer.Exit()


app = typer.Typer(
    name="medsuite",
    help="Medical imaging suite: pathological registration, segmentation, cardiac pretext pretraining, concept-based classification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks of errors."),
) -> None:
    _state["debug"] = _state["debug"] or debug


def _build() -> typer.Typer:
    for module in commands.command_modules():
        module.register(app)
    for group, name in ((commands.train_app, "train"), (commands.evaluate_app, "evaluate")):
        if group.registered_commands:
            app.add_typer(group, name=name)
    return app


def main(argv: list[str] | None = None) -> None:
    """Entry point: typer/click handle usage errors (exit 2); MedsuiteError becomes one line and its
    exit code; anything else (a bug of ours) one line and exit 1, the traceback only with --debug."""
    args = sys.argv[1:] if argv is None else argv
    _state["debug"] = _state["debug"] or "--debug" in args
    try:
        _build()(args=args, prog_name="medsuite")
    except MedsuiteError as exc:
        if _state["debug"]:
            raise
        err_console.print(f"error: {exc.line()}", markup=False)
        sys.exit(exc.exit_code)
    except Exception as exc:
        if _state["debug"]:
            raise
        err_console.print(f"error: internal error ({type(exc).__name__}: {exc}); rerun with --debug and report it", markup=False)
        sys.exit(EXIT_CASE_FAILED)


if __name__ == "__main__":
    main()
