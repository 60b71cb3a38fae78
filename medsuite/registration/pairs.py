"""Many registrations in one run, on the shared batch runner: a pairs CSV, or one atlas to a folder of scans.

One results folder (a transform folder) per pair under OUTDIR, the model loaded once, a failing pair
logged to errors.tsv while the others go on, ``--continue`` skipping pairs whose report.json exists,
and ``summary.csv``: every finished pair's figures, read back from the pairs' own folders so a resumed
run summarises the earlier pairs too.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medsuite.batch import Case, case_name, find_cases, run_batch
from medsuite.errors import MedsuiteError
from medsuite.sharding import WHOLE, Part
from medsuite.io import atomic_path, read_3d

REQUIRED_COLUMNS = ("fixed", "moving")
OPTIONAL_COLUMNS = ("moving_labels", "fixed_labels", "lesion_mask", "id")
SUMMARY_COLUMNS = ["id", "status", "fixed", "moving", "dice_mean", "dice_per_label", "folding_percent", "lesion_volume_ml", "seconds", "error"]


@dataclass(frozen=True)
class PairSpec:
    """One registration of a batch; paths as given (relative ones resolved against the pairs CSV's folder)."""

    id: str
    fixed: Path
    moving: Path
    moving_labels: Path | None = None
    fixed_labels: Path | None = None  # with moving_labels: Dice of the warped labels against these
    lesion_mask: Path | None = None  # the moving scan's own lesion mask, for cost-function masking


def _unique_ids(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return unique


def read_pairs_csv(path: str | Path) -> list[PairSpec]:
    """Rows ``fixed,moving[,moving_labels][,fixed_labels][,lesion_mask][,id]``; a bad table is a usage error."""
    path = Path(path)
    if not path.is_file():
        raise MedsuiteError(path, "no such file", "give a CSV with columns fixed,moving[,moving_labels][,fixed_labels][,lesion_mask][,id]")
    reader = csv.DictReader(io.StringIO(path.read_text()))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        problem = f"lacks the column(s) {', '.join(missing)}" if missing else f"has unknown column(s) {', '.join(unknown)}"
        raise MedsuiteError(path, problem, "use the header fixed,moving[,moving_labels][,fixed_labels][,lesion_mask][,id]")
    rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    rows = [row for row in rows if any(row.values())]
    if not rows:
        raise MedsuiteError(path, "lists no pairs", "add one row per registration")
    for number, row in enumerate(rows, start=2):
        if not row.get("fixed") or not row.get("moving"):
            raise MedsuiteError(path, f"row {number} has no fixed or no moving image", "fill both columns of every row")
        if row.get("id") and not re.fullmatch(r"[A-Za-z0-9._-]+", row["id"]):
            raise MedsuiteError(path, f"row {number}: id {row['id']!r} is not a safe folder name", "use letters, digits, '.', '_' and '-'")
    ids = [row.get("id") or case_name(Path(row["moving"])) for row in rows]
    if len({row["id"] for row in rows if row.get("id")}) < sum(1 for row in rows if row.get("id")):
        raise MedsuiteError(path, "repeats an id", "give every pair its own id (it names the pair's folder)")
    resolve = lambda value: (path.parent / value) if value and not Path(value).is_absolute() else (Path(value) if value else None)  # noqa: E731
    return [
        PairSpec(
            id=pair_id,
            fixed=resolve(row["fixed"]),
            moving=resolve(row["moving"]),
            moving_labels=resolve(row.get("moving_labels")),
            fixed_labels=resolve(row.get("fixed_labels")),
            lesion_mask=resolve(row.get("lesion_mask")),
        )
        for pair_id, row in zip(_unique_ids(ids), rows)
    ]


def atlas_pairs(fixed: Path, folder: Path) -> list[PairSpec]:
    """One fixed image (an atlas) paired with every other image or DICOM series in ``folder``."""
    atlas = Path(fixed).resolve()
    pairs = [PairSpec(id=case.name, fixed=Path(fixed), moving=case.path) for case in find_cases([folder]) if case.path.resolve() != atlas]
    if not pairs:
        raise MedsuiteError(folder, "holds no scan besides the fixed image", "give a folder of moving scans")
    return pairs


def is_batch_folder(moving: Path) -> bool:
    """True for a folder of scans; a DICOM series folder is one scan."""
    if not moving.is_dir():
        return False
    cases = find_cases([moving])
    return not (len(cases) == 1 and cases[0].path == moving)


def _label_dice(warped_labels: np.ndarray, fixed_labels: np.ndarray) -> dict[str, float]:
    """Dice per label value present in either map (0 is background), with MONAI's metric."""
    import torch
    from monai.metrics import compute_dice

    values = sorted(int(v) for v in np.union1d(np.unique(warped_labels), np.unique(fixed_labels)) if v != 0)
    if not values:
        return {}
    one_hot = lambda a: torch.from_numpy(np.stack([a == v for v in values])[None].astype(np.float32))  # noqa: E731
    scores = compute_dice(one_hot(warped_labels), one_hot(fixed_labels), include_background=True, ignore_empty=False)[0]
    return {str(v): round(float(s), 4) for v, s in zip(values, scores)}


def _check_fixed_labels(spec: PairSpec) -> None:
    if spec.fixed_labels is None:
        return
    if spec.moving_labels is None:
        raise MedsuiteError(spec.fixed_labels, "fixed_labels without moving_labels cannot be scored", "add the moving image's labels, or drop fixed_labels")
    labels, fixed = read_3d(spec.fixed_labels), read_3d(spec.fixed)
    if labels.spatial_shape != fixed.spatial_shape:
        raise MedsuiteError(spec.fixed_labels, f"has shape {labels.spatial_shape}, the fixed image {fixed.spatial_shape}", "give the label map of the fixed image")


def _pair_figures(spec: PairSpec, folder: Path) -> dict:
    """The summary row of a finished pair, from its own report.json and label maps."""
    import nibabel as nib

    report = json.loads((folder / "report.json").read_text())
    row = {"folding_percent": report["folding_percent"], "lesion_volume_ml": report["lesion_volume_ml"], "seconds": report["seconds"]}
    warped = folder / report["outputs"].get("warped_labels", "warped_labels.nii.gz")
    if spec.fixed_labels is not None and warped.is_file():
        per_label = _label_dice(np.asarray(nib.load(str(warped)).dataobj), np.asarray(read_3d(spec.fixed_labels).array))
        row["dice_per_label"] = per_label
        row["dice_mean"] = round(float(np.mean(list(per_label.values()))), 4) if per_label else float("nan")
    return row


def write_summary(out_dir: Path, pairs: list[PairSpec], failures: dict[str, str], part: Part = WHOLE) -> Path:
    """``summary.csv`` (a job-array part's ``summary.part-I-of-K.csv``): one row per pair of the part (done, or
    failed with its error line); ``medsuite merge`` joins the parts'."""
    target = out_dir / part.file("summary.csv")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for spec in pairs:
        row = {"id": spec.id, "fixed": str(spec.fixed), "moving": str(spec.moving)}
        folder = out_dir / spec.id
        if spec.id in failures or not (folder / "report.json").is_file():
            row |= {"status": "failed", "error": failures.get(spec.id, "no result")}
        else:
            figures = _pair_figures(spec, folder)
            per_label = figures.pop("dice_per_label", None)
            row |= {"status": "done", **figures, "dice_per_label": ";".join(f"{k}:{v}" for k, v in per_label.items()) if per_label else ""}
        writer.writerow(row)
    with atomic_path(target) as tmp:
        tmp.write_text(buffer.getvalue())
    return target


def register_pairs(
    pairs: list[PairSpec],
    out_dir: Path,
    config,
    *,
    checkpoint: Path | None = None,
    steps: int | None = None,
    seed: int = 0,
    resume: bool = False,
    quiet: bool = False,
    part: Part = WHOLE,
    device: str = "cpu",
) -> int:
    """Register every pair (or one job-array ``part`` of them) into OUTDIR/<id>/; returns the exit code (0 all
    done, 1 some pair failed)."""
    from medsuite.registration.inference import load_model, register_files

    out_dir = Path(out_dir)
    loaded = load_model(checkpoint, config)  # once for the whole batch
    by_id = {spec.id: spec for spec in pairs}

    failures: dict[str, str] = {}  # id -> the error line run_batch also logs to errors.tsv

    def process(case: Case) -> dict:
        spec = by_id[case.name]
        try:
            _check_fixed_labels(spec)
            _, report = register_files(spec.fixed, spec.moving, out_dir / spec.id, config, moving_labels=spec.moving_labels, checkpoint=checkpoint, steps=steps, seed=seed, loaded=loaded, lesion_mask=spec.lesion_mask, device=device)
        except MedsuiteError as exc:
            failures[spec.id] = exc.line()
            raise
        except Exception as exc:
            failures[spec.id] = f"internal error ({type(exc).__name__}: {exc})"
            raise
        return {"fixed": str(spec.fixed.resolve()), "folding_percent": report["folding_percent"], "lesion_volume_ml": report["lesion_volume_ml"]}

    parameters = {"pairs": len(pairs), "steps": steps, "seed": seed, "device": str(device), "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None}
    code = run_batch(
        [Case(spec.id, spec.moving) for spec in pairs],
        out_dir,
        process,
        outputs_of=lambda case: [out_dir / case.name / "report.json"],
        command="register",
        parameters=parameters,
        resume=resume,
        quiet=quiet,
        part=part,
    )
    write_summary(out_dir, part.select(pairs, key=lambda spec: spec.id), failures, part)
    return code
