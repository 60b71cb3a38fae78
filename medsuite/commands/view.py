"""``medsuite view``: the Streamlit review station for result folders, on localhost by default."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from medsuite.commands import example
from medsuite.config import REPO_ROOT
from medsuite.errors import MedsuiteError
from medsuite.viewer.results import INPUTS_ENV, RESULTS_ENV
from medsuite.viewer.uploads import MAX_UPLOAD_MB

APP = REPO_ROOT / "apps" / "medsuite_viewer.py"
#: Seconds Streamlit gets to exit after SIGTERM / SIGINT before it is killed.
STOP_GRACE_S = 10.0


def streamlit_command(app: Path, port: int, host: str) -> list[str]:
    """``streamlit run`` bound to ``host`` only, telemetry off (no network from a clinic), dark theme."""
    return [
        sys.executable, "-m", "medsuite.viewer.serve", "run", str(app),  # streamlit run, modules pre-imported
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--server.maxUploadSize", str(MAX_UPLOAD_MB),  # MB; declared voxel counts are capped in the app
        "--theme.base", "dark",  # reading-room contrast: dark page around dark images
    ]  # fmt: skip


def check_results_dir(results_dir: Path) -> Path:
    if not results_dir.is_dir():
        raise MedsuiteError(results_dir, "is not a folder", "give the folder that holds your register/segment/classify/demo results")
    return results_dir.resolve()


def check_inputs_dir(folder: Path) -> Path:
    if not folder.is_dir():
        raise MedsuiteError(folder, "is not a folder", "give --inputs the folder holding the images the results were computed from")
    return folder.resolve()


def view(
    results_dir: Path = typer.Argument(Path("."), help="Folder holding result folders (only paths inside it are opened)."),
    port: int = typer.Option(8501, "--port", min=1, max=65535, help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; the default keeps the app on this machine."),
    inputs: list[Path] = typer.Option([], "--inputs", help="Folder of the images the results were computed from, when it is not inside RESULTS_DIR (repeatable; files are only read)."),
) -> None:
    """Open the review station in the browser: registrations, masks, concept explanations, decisions."""
    root = check_results_dir(results_dir)
    if not APP.is_file():
        raise MedsuiteError(APP, "the viewer app is missing", "reinstall medsuite from its source checkout (pip install -e '.[viewer]')")
    typer.echo(f"medsuite review station on http://{host}:{port} for {root} (Ctrl+C to stop)")
    env = dict(os.environ, **{RESULTS_ENV: str(root), INPUTS_ENV: os.pathsep.join(str(check_inputs_dir(folder)) for folder in inputs)})
    raise typer.Exit(run_forwarding_signals(streamlit_command(APP, port, host), env))


def run_forwarding_signals(command: list[str], env: dict[str, str]) -> int:
    """Run ``command``; SIGTERM / SIGINT / SIGHUP sent to us are passed on to it, and we wait for it
    to exit, so stopping ``medsuite view`` never leaves a server listening. Exit 0 when stopped so."""
    process = subprocess.Popen(command, env=env)
    stopped_at: float | None = None

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopped_at
        stopped_at = stopped_at or time.monotonic()
        if process.poll() is None:
            process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        while True:
            try:
                code = process.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                if stopped_at is not None and time.monotonic() - stopped_at > STOP_GRACE_S:
                    process.kill()  # a server that ignores the signal does not outlive us
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopped_at is not None else code


def register(app: typer.Typer) -> None:
    app.command("view", epilog=example("medsuite view results/"))(view)
