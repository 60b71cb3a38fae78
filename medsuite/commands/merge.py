"""``medsuite merge OUTDIR``: one report.json / errors.tsv / summary CSV from the parts of a job-array run,
and the ``--num-parts`` / ``--part-id`` options every batch command takes (see docs/cluster.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from medsuite.commands import example

NUM_PARTS = typer.Option(1, "--num-parts", min=1, help="Split the sorted case list into this many parts (one per job-array task); merge them with `medsuite merge`.")
PART_ID = typer.Option(0, "--part-id", min=0, help="Which part this process runs, 0..num-parts-1 (SLURM: $SLURM_ARRAY_TASK_ID).")


def part_of(num_parts: int, part_id: int):
    """The batch runner's part from the two options (a part id out of range is a one-line usage error)."""
    from medsuite.sharding import Part

    return Part(num_parts=num_parts, part_id=part_id)


def merge(
    output: Path = typer.Argument(..., help="The output folder every part wrote into (holds report.part-I-of-K.json files)."),
    quiet: bool = typer.Option(False, "--quiet", help="Print nothing on success."),
) -> None:
    """Merge the parts of a split batch run into report.json, errors.tsv and summary CSVs; refuses parts run with other models or options."""
    from medsuite.errors import EXIT_CASE_FAILED
    from medsuite.sharding import merge_parts

    report = merge_parts(output)
    summary = report["summary"]
    if not quiet:
        typer.echo(f"merged {len(report['merged_from'])} parts: {summary.get('cases', len(report['cases']))} cases, {summary.get('failed', 0)} failed; wrote {output / 'report.json'}")
    raise typer.Exit(EXIT_CASE_FAILED if summary.get("failed") else 0)


def register(app: typer.Typer) -> None:
    app.command("merge", epilog=example("medsuite merge results/archive   # after every --num-parts/--part-id task finished"))(merge)
