"""``medsuite demo``: every pipeline that exists, on embedded or generated data, into one results folder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console

from medsuite.errors import EXIT_CASE_FAILED

console = Console(highlight=False)


def _demo_modules() -> list:
    from medsuite.cli import _command_modules

    return sorted((m for m in _command_modules() if hasattr(m, "run_demo")), key=lambda m: getattr(m, "DEMO_ORDER", 100))


def demo(
    output: Path = typer.Option(Path("medsuite_results/demo"), "-o", "--output", help="Results folder."),
    only: list[str] = typer.Option([], "--only", help="Run only these parts (module names, e.g. register)."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads for torch, SimpleITK and OpenMP (default: all available cores)."),
) -> None:
    """Run every pipeline on the embedded samples and write a results folder to open in the viewer."""
    from medsuite.io import write_json
    from medsuite.provenance import new_report
    from medsuite.runtime import configure_runtime

    configure_runtime(threads, "cpu")  # the demo's parts are sized for a laptop CPU

    output.mkdir(parents=True, exist_ok=True)
    report = new_report("demo", parameters={"only": only})
    report["timings_s"], report["failed"] = {}, {}
    for module in _demo_modules():
        name = module.__name__.rsplit(".", 1)[-1]
        if only and name not in only:
            continue
        console.rule(f"[bold]{name}")
        start = time.perf_counter()
        try:
            module.run_demo(output, console)
        except Exception as exc:  # one part failing must not hide the others' results
            report["failed"][name] = f"{type(exc).__name__}: {exc}"
            console.print(f"[red]error: demo part {name} failed: {exc}[/red]")
        report["timings_s"][name] = round(time.perf_counter() - start, 2)
    report["parts"] = _parts(output)
    write_json(output / "report.json", report)
    console.rule()
    console.print(f"results: [bold]{output.resolve()}[/bold]")
    console.print(f"open them in the viewer: [bold]medsuite view {output}[/bold]")
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
    app.command("demo")(demo)
