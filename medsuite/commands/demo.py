"""``medsuite demo``: every pipeline that exists, on embedded or generated data, into one results folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console

from medsuite.commands import THREADS_HELP, demo_modules, example
from medsuite.errors import EXIT_CASE_FAILED, MedsuiteError

console = Console(highlight=False)


def demo(
    output: Path = typer.Option(Path("medsuite_results/demo"), "-o", "--output", help="Results folder."),
    only: list[str] = typer.Option([], "--only", help="Run only these parts (module names, e.g. register)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help=THREADS_HELP),
    quiet: bool = typer.Option(False, "--quiet", help="Print only the results folder (and any part's error)."),
) -> None:
    """Run every pipeline on the embedded samples and write a results folder to open in the viewer.

    The demo runs on the CPU with each part's fixed seed (no --device or --seed), so every machine gets the
    figures the README shows."""
    from medsuite.io import write_json
    from medsuite.provenance import new_report
    from medsuite.runtime import configure_runtime

    modules = {module.__name__.rsplit(".", 1)[-1]: module for module in demo_modules()}
    unknown = sorted(set(only) - set(modules))
    if unknown:
        raise MedsuiteError("--only", f"no demo part named {', '.join(unknown)}", f"use one or more of: {', '.join(modules)}")
    configure_runtime(threads, "cpu")  # the demo's parts are sized for a laptop CPU

    shown = Console(highlight=False, quiet=quiet)  # the parts' progress lines
    output.mkdir(parents=True, exist_ok=True)
    report = new_report("demo", parameters={"only": only})
    report["timings_s"], report["failed"] = {}, {}
    for name, module in modules.items():
        if only and name not in only:
            continue
        shown.rule(f"[bold]{name}")
        start = time.perf_counter()
        try:
            module.run_demo(output, shown)
        except Exception as exc:  # one part failing must not hide the others' results
            report["failed"][name] = f"{type(exc).__name__}: {exc}"
            console.print(f"[red]error: demo part {name} failed: {exc}[/red]")
        report["timings_s"][name] = round(time.perf_counter() - start, 2)
    report["parts"] = _parts(output)
    write_json(output / "report.json", report)
    shown.rule()
    done = len(report["timings_s"]) - len(report["failed"])
    if quiet:
        console.print(str(output.resolve()))
    else:
        console.print(f"demo: {done} of {len(report['timings_s'])} parts done; results in [bold]{output.resolve()}[/bold] (open with: medsuite view {output})")
    if report["failed"]:
        raise typer.Exit(EXIT_CASE_FAILED)


def _parts(output: Path) -> dict[str, str]:
    """Each subfolder holding a report.json, keyed by that report's kind."""
    parts = {}
    for report in sorted(output.glob("*/report.json")):
        try:
            parts[json.loads(report.read_text()).get("kind", report.parent.name)] = report.parent.name
        except ValueError:
            continue
    return parts


def register(app: typer.Typer) -> None:
    app.command("demo", epilog=example("medsuite demo -o results/demo", "medsuite demo --only segment"))(demo)
