"""The ``medsuite`` command line: thin typer front over the library; one error line, never a traceback."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from types import ModuleType

from typer._click import exceptions as click_errors  # typer 0.29 vendors click: its usage errors are these
import typer
from rich.console import Console

from medsuite import __version__, commands
from medsuite.errors import EXIT_CASE_FAILED, EXIT_OK, EXIT_USAGE, MedsuiteError

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
    context_settings={"help_option_names": ["-h", "--help"]},  # subcommands inherit it
    rich_markup_mode="rich",
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks of errors."),
) -> None:
    _state["debug"] = _state["debug"] or debug


def _command_modules() -> list[ModuleType]:
    modules = [importlib.import_module(f"{commands.__name__}.{info.name}") for info in pkgutil.iter_modules(commands.__path__)]
    rank = {name: i for i, name in enumerate(commands.HELP_ORDER)}
    return sorted(modules, key=lambda m: rank.get(m.__name__.rsplit(".", 1)[-1], len(rank)))


_built: list[typer.core.TyperGroup] = []


def _build() -> typer.core.TyperGroup:
    """The click command tree, built once per process (in-process callers such as tests call main often)."""
    if _built:
        return _built[0]
    for module in _command_modules():
        if hasattr(module, "register"):
            module.register(app)
    for group, name in ((commands.train_app, "train"), (commands.evaluate_app, "evaluate")):
        if group.registered_commands:
            app.add_typer(group, name=name)
    _built.append(typer.main.get_command(app))
    return _built[0]


def _usage_line(exc: click_errors.UsageError) -> str:
    """click's usage error as one line: the message and where to read the command's options."""
    command = exc.ctx.command_path if exc.ctx else "medsuite"
    message = " ".join(exc.format_message().split()).rstrip(".")
    return f"error: {message}; see {command} --help"


def main(argv: list[str] | None = None) -> None:
    """Entry point: typer/click handle usage errors (exit 2); MedsuiteError becomes one line and its
    exit code; anything else (a bug of ours) one line and exit 1, the traceback only with --debug."""
    args = sys.argv[1:] if argv is None else argv
    _state["debug"] = os.environ.get("MEDSUITE_DEBUG") == "1" or "--debug" in args
    try:
        code = _build().main(args=args, prog_name="medsuite", standalone_mode=False)
    except click_errors.NoArgsIsHelpError as exc:  # a bare group prints its help: that is what was asked
        typer.echo(exc.ctx.get_help() if exc.ctx else "")
        sys.exit(EXIT_OK)
    except click_errors.UsageError as exc:
        err_console.print(_usage_line(exc), markup=False)
        sys.exit(EXIT_USAGE)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("error: interrupted", markup=False)
        sys.exit(130)
    except click_errors.ClickException as exc:
        err_console.print(f"error: {' '.join(exc.format_message().split())}", markup=False)
        sys.exit(exc.exit_code)
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
    sys.exit(code if isinstance(code, int) else EXIT_OK)  # without standalone mode click returns typer.Exit's code


if __name__ == "__main__":
    main()
