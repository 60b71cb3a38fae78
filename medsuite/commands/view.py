"""``medsuite view``: the Streamlit review station for result folders, on localhost by default."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from medsuite.commands import example
from medsuite.config import REPO_ROOT
from medsuite.errors import MedsuiteError
from medsuite.viewer.results import RESULTS_ENV

APP = REPO_ROOT / "apps" / "medsuite_viewer.py"


def streamlit_command(app: Path, port: int, host: str) -> list[str]:
    """``streamlit run`` bound to ``host`` only, telemetry off (no network from a clinic), dark theme."""
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--theme.base", "dark",  # reading-room contrast: dark page around dark images
    ]  # fmt: skip


def check_results_dir(results_dir: Path) -> Path:
    if not results_dir.is_dir():
        raise MedsuiteError(results_dir, "is not a folder", "give the folder that holds your register/segment/classify/demo results")
    return results_dir.resolve()


def view(
    results_dir: Path = typer.Argument(Path("."), help="Folder holding result folders (only paths inside it are opened)."),
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; the default keeps the app on this machine."),
) -> None:
    """Open the review station in the browser: registrations, masks, concept explanations, decisions."""
    root = check_results_dir(results_dir)
    if not APP.is_file():
        raise MedsuiteError(APP, "the viewer app is missing", "reinstall medsuite from its source checkout (pip install -e '.[viewer]')")
    typer.echo(f"medsuite review station on http://{host}:{port} for {root} (Ctrl+C to stop)")
    env = dict(os.environ, **{RESULTS_ENV: str(root)})
    try:
        code = subprocess.call(streamlit_command(APP, port, host), env=env)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("view", epilog=example("medsuite view results/"))(view)
