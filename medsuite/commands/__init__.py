"""Command modules, and their discovery.

One convention: a module here defines its commands as module-level functions (importable and testable)
and one ``register(app)`` that attaches them, each with its example (``epilog=example(...)``). Commands
parse, call one library function, print one summary line and exit. Modules import heavy libraries (torch,
monai) inside their command bodies, so ``medsuite --help`` stays fast. Commands that several pipelines
share a verb for attach to the groups below. A module that contributes to ``medsuite demo`` also defines
``DEMO_ORDER: int`` and ``run_demo(out_dir: Path, console) -> None``.

Every model-running command takes ``--device``, ``--threads``, ``--seed`` and ``--quiet``, and calls
``medsuite.runtime.configure_runtime`` once before any work; every batch command takes ``--continue``.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

import typer

train_app = typer.Typer(help="Train a pipeline's model from a pipeline YAML.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Evaluate a trained run on a data card split.", no_args_is_help=True)

# The order commands appear in --help; a module not listed goes last.
HELP_ORDER = ["demo", "register", "segment", "pretrain", "pretext", "train", "evaluate", "classify", "concepts", "cards", "pipelines", "models", "transform", "merge", "view"]

THREADS_HELP = "CPU threads for torch, SimpleITK and OpenMP (default: all available cores)."


def example(*commands: str) -> str:
    """The last lines of a command's --help: a short example of its use."""
    return "Example: " + "  |  ".join(commands)


def batch_summary(output: Path) -> str:
    """'N cases done, F failed' from a batch run's report.json (read only, for the summary line)."""
    import json

    summary = json.loads((Path(output) / "report.json").read_text()).get("summary", {})
    failed = summary.get("failed", 0)
    return f"{summary.get('cases', 0)} case(s), {failed} failed" + (f" (see {Path(output) / 'errors.tsv'})" if failed else "")


def command_modules() -> list[ModuleType]:
    """Every module of this package, in help order."""
    modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    rank = {name: i for i, name in enumerate(HELP_ORDER)}
    return sorted(modules, key=lambda m: rank.get(m.__name__.rsplit(".", 1)[-1], len(rank)))


def demo_modules() -> list[ModuleType]:
    """The modules that contribute a part to ``medsuite demo``, in demo order."""
    return sorted((m for m in command_modules() if hasattr(m, "run_demo")), key=lambda m: m.DEMO_ORDER)
