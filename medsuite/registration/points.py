"""Point sets in world millimetres: ANTs' ``x,y,z,t`` CSV and 3D Slicer's markups ``.fcsv``, read and written.

Conventions, as each tool writes them:

* ANTs CSV (``antsApplyTransformsToPoints``): header ``x,y,z,t`` (``t`` optional, kept), ITK's LPS
  physical coordinates; any further columns (label, comment) pass through unchanged.
* Slicer ``.fcsv``: ``#`` header lines, one of them ``# CoordinateSystem = LPS`` or ``RAS`` (Slicer
  >= 4.11; older files write ``0`` for RAS and ``1`` for LPS), then ``id,x,y,z,...`` rows without a
  header row. A file without the line is RAS (Slicer's own default before 4.11). Written files keep
  the convention and every other column of the file they came from.

Inside medsuite points are (N, 3) LPS arrays, the frame ITK transforms work in. Written by hand: no
library in the stack reads both formats (Slicer's own reader needs Slicer).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medsuite.errors import MedsuiteError
from medsuite.io import atomic_path

FCSV_COLUMNS = ["id", "x", "y", "z", "ow", "ox", "oy", "oz", "vis", "sel", "lock", "label", "desc", "associatedNodeID"]
_FLIP = np.array([-1.0, -1.0, 1.0])  # LPS <-> RAS
_LEGACY_SYSTEMS = {"0": "RAS", "1": "LPS"}


@dataclass
class PointSet:
    """Points (N, 3) in LPS mm, with the other columns of each row so a written file keeps them."""

    lps: np.ndarray
    columns: list[str]  # every column of a row, the coordinates included, in file order
    rows: list[dict[str, str]] = field(default_factory=list)
    coordinate_system: str = "LPS"  # the convention the source file stated (an .fcsv may be RAS)
    header_lines: list[str] = field(default_factory=list)  # an .fcsv's '#' lines, kept on writing

    def with_points(self, lps: np.ndarray) -> PointSet:
        return PointSet(np.asarray(lps, np.float64).reshape(-1, 3), list(self.columns), [dict(r) for r in self.rows], self.coordinate_system, list(self.header_lines))


def _coordinates(path: Path, rows: list[dict[str, str]], names: tuple[str, str, str]) -> np.ndarray:
    try:
        points = np.array([[float(row[n]) for n in names] for row in rows], dtype=np.float64).reshape(-1, 3)
    except (KeyError, TypeError, ValueError) as exc:
        raise MedsuiteError(path, f"has a row whose {'/'.join(names)} are not numbers", "fix that row") from exc
    if not np.all(np.isfinite(points)):
        raise MedsuiteError(path, "has non-finite coordinates", "fix or drop those rows")
    return points


def read_ants_csv(path: Path) -> PointSet:
    text = Path(path).read_text()
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if not {"x", "y", "z"} <= set(columns):
        raise MedsuiteError(path, f"has columns {columns}, not x,y,z", "give an ANTs point CSV (header x,y,z,t; LPS mm) or a Slicer .fcsv")
    rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    return PointSet(_coordinates(path, rows, ("x", "y", "z")), columns, rows, "LPS")


def read_fcsv(path: Path) -> PointSet:
    header, body = [], []
    for line in Path(path).read_text().splitlines():
        (header if line.startswith("#") else body).append(line)
    system, columns = "RAS", list(FCSV_COLUMNS)
    for line in header:
        key, _, value = line.lstrip("#").partition("=")
        key, value = key.strip().lower(), value.strip()
        if key == "coordinatesystem":
            system = _LEGACY_SYSTEMS.get(value, value.upper())
        elif key == "columns":
            columns = [c.strip() for c in value.split(",")]
    if system not in {"LPS", "RAS"}:
        raise MedsuiteError(path, f"states CoordinateSystem {system}", "export the markups in LPS or RAS (IJK points carry no world position)")
    rows = [dict(zip(columns, values)) for values in csv.reader(line for line in body if line.strip())]
    points = _coordinates(path, rows, ("x", "y", "z"))
    return PointSet(points * _FLIP if system == "RAS" else points, columns, rows, system, header)


def read_points(path: str | Path) -> PointSet:
    path = Path(path)
    if not path.is_file():
        raise MedsuiteError(path, "no such file", "check the path")
    suffix = path.suffix.lower()
    if suffix == ".fcsv":
        return read_fcsv(path)
    if suffix == ".csv":
        return read_ants_csv(path)
    raise MedsuiteError(path, "is not a point file", "give an ANTs point CSV (.csv, x,y,z,t in LPS) or a 3D Slicer markups file (.fcsv)")


def _with_coordinates(rows: list[dict[str, str]], values: np.ndarray) -> list[dict[str, str]]:
    base = rows or [{} for _ in values]
    return [row | {axis: f"{v:.6f}" for axis, v in zip("xyz", value)} for row, value in zip(base, values)]


def _new_fcsv_row(index: int, row: dict[str, str]) -> dict[str, str]:
    """A Slicer 4.11+ control point row (visible, unlocked, no orientation) named after its label."""
    defaults = ["0", "0", "0", "1", "1", "1", "0"]
    return dict(zip(FCSV_COLUMNS, [f"vtkMRMLMarkupsFiducialNode_{index}", "", "", "", *defaults, row.get("label") or f"F-{index + 1}", "", ""]))


def write_points(target: str | Path, points: PointSet) -> Path:
    """Write ``points`` as ``.csv`` (ANTs, LPS) or ``.fcsv`` (Slicer, in the set's own convention), atomically."""
    target = Path(target)
    suffix = target.suffix.lower()
    if suffix not in {".csv", ".fcsv"}:
        raise MedsuiteError(target, "has no point-file suffix", "name the output .csv (ANTs, LPS) or .fcsv (3D Slicer)")
    if not np.all(np.isfinite(points.lps)):
        raise MedsuiteError(target, "would hold non-finite coordinates", "a point left the transform's domain; check the input points")
    from_fcsv = bool(points.header_lines)
    buffer = io.StringIO()
    if suffix == ".csv":
        # An ANTs file keeps its own columns; a Slicer file becomes x,y,z,t plus its labels.
        columns = ["x", "y", "z", "t", "label"] if from_fcsv or not points.rows else points.columns
        rows = _with_coordinates(points.rows, points.lps)
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({c: r.get(c, "0" if c == "t" else "") for c in columns} for r in rows)
    else:
        system = points.coordinate_system if from_fcsv else "LPS"
        values = points.lps * _FLIP if system == "RAS" else points.lps
        columns = points.columns if from_fcsv else list(FCSV_COLUMNS)
        header = points.header_lines if from_fcsv else ["# Markups fiducial file version = 4.11", "# CoordinateSystem = LPS", "# columns = " + ",".join(FCSV_COLUMNS)]
        source_rows = points.rows if from_fcsv else [_new_fcsv_row(i, r) for i, r in enumerate(points.rows or [{} for _ in values])]
        buffer.write("\n".join(header) + "\n")
        writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writerows({c: r.get(c, "") for c in columns} for r in _with_coordinates(source_rows, values))
    with atomic_path(target) as tmp:
        tmp.write_text(buffer.getvalue())
    return target
