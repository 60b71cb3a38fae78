"""``medsuite transform apply``: a saved registration applied later to images, label maps and points."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.console import Console

from medsuite.commands import example

transform_app = typer.Typer(help="Apply a saved registration (a 'medsuite register' results folder) to images, label maps and points.", no_args_is_help=True)


class InterpolationChoice(str, Enum):
    linear = "linear"
    nearest = "nearest"
    bspline = "bspline"


@transform_app.command("apply", epilog=example("medsuite transform apply results/patient atlas_labels.nii.gz -o labels_in_patient.nii.gz --inverse", "medsuite transform apply results/patient --points landmarks.fcsv -o landmarks_in_atlas.fcsv"))
def apply_command(
    transform_dir: Path = typer.Argument(..., help="Results folder of 'medsuite register' (composite.h5, inverse_composite.h5, ddf.nii.gz, inverse_ddf.nii.gz)."),
    input_path: Path | None = typer.Argument(None, metavar="INPUT", help="Image or label map in moving space (fixed space with --inverse); omit with --points."),
    output: Path = typer.Option(..., "-o", "--output", help="Output image (.nii.gz) or point file (.csv ANTs LPS, .fcsv 3D Slicer)."),
    inverse: bool = typer.Option(False, "--inverse", help="Map fixed space -> moving space (atlas labels into the patient) instead of moving -> fixed."),
    reference: Path | None = typer.Option(None, "--reference", help="Image whose grid the output takes (default: the fixed grid, or the moving grid with --inverse)."),
    interpolation: InterpolationChoice | None = typer.Option(None, "--interpolation", help="linear | nearest | bspline (default: nearest for integer label maps, keeping their dtype; linear otherwise)."),
    points: Path | None = typer.Option(None, "--points", help="Points to map instead of an image: ANTs CSV (x,y,z,t, LPS mm) or Slicer .fcsv (its CoordinateSystem line)."),
    quiet: bool = typer.Option(False, "--quiet", help="Print only the output path."),
) -> None:
    """Map an image, label map or point set through a saved registration: moving -> fixed, or fixed -> moving with --inverse."""
    from medsuite.errors import MedsuiteError
    from medsuite.registration.transforms import apply_transform_to_image, apply_transform_to_points

    if (input_path is None) == (points is None):
        raise MedsuiteError("transform apply", "needs exactly one of INPUT (an image) or --points FILE", "give an image or --points, not both")
    if points is not None:
        if reference is not None or interpolation is not None:
            raise MedsuiteError("--points", "takes no --reference or --interpolation (points carry no grid)", "drop those options")
        summary = apply_transform_to_points(transform_dir, points, output, inverse=inverse)
        line = f"{summary['count']} points mapped {summary['direction']} -> {output}"
    else:
        summary = apply_transform_to_image(transform_dir, input_path, output, inverse=inverse, reference=reference, interpolation=interpolation.value if interpolation else None)
        line = f"{input_path} warped {summary['direction']} ({summary['interpolation']}) -> {output}"
    Console(highlight=False).print(str(output) if quiet else line)


def register(app: typer.Typer) -> None:
    app.add_typer(transform_app, name="transform")
