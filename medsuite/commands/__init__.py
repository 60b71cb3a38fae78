"""Command modules. Each module here defines ``register(app)`` and is discovered by medsuite.cli.

Modules import heavy libraries (torch, monai) inside their command bodies, so ``medsuite --help``
stays fast. Commands that several pipelines share a verb for attach to the groups below.
A module that contributes to ``medsuite demo`` also defines ``DEMO_ORDER: int`` and
``run_demo(out_dir: Path, console) -> None``.
"""

from __future__ import annotations

import typer

train_app = typer.Typer(help="Train a pipeline's model from a pipeline YAML.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Evaluate a trained run on a data card split.", no_args_is_help=True)

# The order commands appear in --help; a module not listed goes last.
HELP_ORDER = ["demo", "register", "segment", "pretrain", "pretext", "train", "evaluate", "classify", "concepts", "cards", "models", "view"]
