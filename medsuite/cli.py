"""The ``medsuite`` command line: thin typer front over the library; one error line, never a traceback."""

from __future__ import annotations

import os
import sys

from typer._click import exceptions as click_errors  # typer 0.29 vendors click: its usage errors are these
import typer
from rich.console import Console

from medsuite import __version__, commands
from medsuite.errors import EXIT_CASE_FAILED, EXIT_OK, EXIT_USAGE, MedsuiteError, user_error_in

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


_built: list[typer.core.TyperGroup] = []  # the click tree of ``app``, made once


def _build() -> typer.Typer:
    """The app with every command module registered, once per process (in-process callers call main often)."""
    if _built:
        return app
    for module in commands.command_modules():
        module.register(app)
    for group, name in ((commands.train_app, "train"), (commands.evaluate_app, "evaluate")):
        if group.registered_commands:
            app.add_typer(group, name=name)
    _built.append(typer.main.get_command(app))
    return app


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
    # Idle OpenMP threads sleep instead of spinning: on shared cores torch's spinning threads made a 2 mm
    # registration 9x slower (issue 16). OpenMP reads this when torch loads, so before any command imports it;
    # a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        _build()
        code = _built[0].main(args=args, prog_name="medsuite", standalone_mode=False)
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
        cause = user_error_in(exc)
        if cause is not None:
            err_console.print(f"error: {cause.line()}", markup=False)
            sys.exit(cause.exit_code)
        err_console.print(f"error: internal error ({type(exc).__name__}: {exc}); rerun with --debug and report it", markup=False)
        sys.exit(EXIT_CASE_FAILED)
    sys.exit(code if isinstance(code, int) else EXIT_OK)  # without standalone mode click returns typer.Exit's code


if __name__ == "__main__":
    main()
